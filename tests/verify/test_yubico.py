"""Yubico OTP: published vectors, codec properties, and the local validator."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import ConfigError, DecodeError
from eapkit.store import MemoryStore, SqliteStore
from eapkit.verify.yubico import (
    MODHEX,
    YubicoVerifier,
    YubikeyCredential,
    YubikeyToken,
    crc16,
    decode_otp,
    encode_otp,
    modhex_decode,
    modhex_encode,
    parse_token,
    split_otp,
)
from tests.vectorlib import Case, hexbytes, ids, load
from tests.verify.helpers import NOW, DownStore, sealer

VECTORS = load("yubico_otp")
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
UID = bytes.fromhex("a1a2a3a4a5a6")
PUBLIC = "vvccccfiluij"


def crc16_bitwise(data: bytes) -> int:
    """ISO 13239 CRC-16 the slow, obvious way: the reference for the fast one."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def make(
    usage: int, session: int, *, key: bytes = KEY, uid: bytes = UID, public: str = PUBLIC
) -> str:
    return encode_otp(YubikeyToken(uid, usage, 0x123456, session, 0xBEEF), key, public)


@pytest.mark.parametrize("case", VECTORS, ids=ids(VECTORS))
def test_published_vectors(case: Case) -> None:
    if case["kind"] == "modhex":
        assert modhex_decode(case["modhex"]) == hexbytes(case["hex"])
        assert modhex_encode(hexbytes(case["hex"])) == case["modhex"]
    elif case["kind"] == "aes":
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        dec = Cipher(algorithms.AES(hexbytes(case["aes_key"])), modes.ECB()).decryptor()
        assert dec.update(hexbytes(case["ciphertext"])).hex() == case["plaintext"]
    else:
        public, token = decode_otp(case["otp"], hexbytes(case["aes_key"]))
        assert public == case["public_id"]
        assert token.private_id.hex() == case["private_id"]
        assert (token.usage_counter, token.session_counter) == (
            case["usage_counter"],
            case["session_counter"],
        )
        assert (token.timestamp, token.random, token.flag) == (
            case["timestamp"],
            case["random"],
            False,
        )
        plaintext = hexbytes(case["plaintext"])
        assert crc16(plaintext) == crc16_bitwise(plaintext) == 0xF0B8
        assert ~crc16(plaintext[:14]) & 0xFFFF == case["crc"]
        assert encode_otp(token, hexbytes(case["aes_key"]), public) == case["otp"]


@given(st.binary(max_size=64))
def test_fast_crc_equals_bitwise_crc(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)


@given(
    uid=st.binary(min_size=6, max_size=6),
    usage=st.integers(0, 0x7FFF),
    timestamp=st.integers(0, 0xFFFFFF),
    session=st.integers(0, 0xFF),
    rnd=st.integers(0, 0xFFFF),
    flag=st.booleans(),
    key=st.binary(min_size=16, max_size=16),
    public=st.binary(max_size=8).map(modhex_encode),
    upper=st.booleans(),
)
def test_encode_decode_round_trip(
    uid: bytes,
    usage: int,
    timestamp: int,
    session: int,
    rnd: int,
    flag: bool,
    key: bytes,
    public: str,
    upper: bool,
) -> None:
    token = YubikeyToken(uid, usage, timestamp, session, rnd, flag)
    otp = encode_otp(token, key, public)
    assert len(otp) == 32 + len(public)
    assert decode_otp(otp.upper() if upper else otp, key) == (public, token)


@given(st.text(max_size=60) | st.text(alphabet=MODHEX + "aA0 x", max_size=60))
def test_arbitrary_text_decodes_or_raises_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        modhex_decode(text)
    with contextlib.suppress(DecodeError):
        decode_otp(text, KEY)


@given(st.binary(max_size=40))
def test_arbitrary_block_parses_or_raises_decode_error(block: bytes) -> None:
    try:
        token = parse_token(block)
    except DecodeError:
        return
    assert len(block) == 16 and crc16(block) == 0xF0B8 and token.private_id == block[:6]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c" * 31, "32 to 48"),
        ("c" * 49, "32 to 48"),
        ("c" * 33, "odd"),
        ("c" * 30 + "ca", "not modhex"),
        ("c" * 30 + "é" * 2, "not ASCII"),
    ],
)
def test_split_otp_errors(text: str, expected: str) -> None:
    with pytest.raises(DecodeError, match=expected):
        split_otp(text)


def verifier() -> YubicoVerifier:
    v = YubicoVerifier(MemoryStore())
    v.enroll("alice", YubikeyCredential(PUBLIC, UID, KEY), 0.0)
    return v


def test_counters_must_increase() -> None:
    v = verifier()
    first = v.verify("alice", make(5, 0), NOW)
    assert (first.ok, first.step, first.user) == (True, 5 << 8, "alice")
    assert v.verify("alice", make(5, 0), NOW).reason == "replayed"
    assert v.verify("alice", make(5, 1), NOW).ok  # next press, same power-up
    assert v.verify("alice", make(5, 1), NOW).reason == "replayed"
    assert v.verify(None, make(4, 200), NOW).reason == "replayed"  # older power-up
    assert v.verify(None, make(6, 0), NOW).ok  # new power-up, session counter restarts
    # the flag bit is not part of the count
    flagged = encode_otp(YubikeyToken(UID, 6, 1, 0, 7, flag=True), KEY, PUBLIC)
    assert v.verify(None, flagged, NOW).reason == "replayed"


def test_wrong_key_private_id_user_and_unknown_key() -> None:
    v = verifier()
    assert v.verify("alice", make(1, 0, key=bytes(16)), NOW).reason == "bad_code"
    wrong_uid = v.verify("alice", make(1, 0, uid=bytes(6)), NOW)
    assert (wrong_uid.reason, wrong_uid.detail) == ("bad_code", "private id mismatch")
    assert v.verify("bob", make(1, 0), NOW).reason == "bad_code"
    assert v.verify("alice", make(1, 0, public="cccccccccccb"), NOW).reason == "unknown_user"
    # none of the failures above moved the counter
    assert v.verify("alice", make(1, 0), NOW).ok


def test_input_forms() -> None:
    v = verifier()
    assert v.verify("alice", make(1, 0).upper() + "\r\n", NOW).ok  # Caps Lock, Enter
    assert v.verify("alice", "not an otp", NOW).reason == "malformed"
    assert v.verify("alice", make(1, 1)[:-1] + "a", NOW).reason == "malformed"


def test_enroll_from_an_otp_then_that_otp_is_spent() -> None:
    case = next(c for c in VECTORS if c["kind"] == "otp")
    v = YubicoVerifier(MemoryStore())
    cred, token = YubikeyCredential.from_otp(case["otp"], hexbytes(case["aes_key"]))
    assert (cred.public_id, cred.private_id.hex()) == (case["public_id"], case["private_id"])
    v.enroll("alice", cred, 0.0, seen=token)
    assert v.verify("alice", case["otp"], NOW).reason == "replayed"
    with pytest.raises(DecodeError):
        YubikeyCredential.from_otp(case["otp"], bytes(16))


def test_sealed_at_rest_and_fail_closed(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "yk.db"
    with pytest.raises(ConfigError):
        YubicoVerifier(SqliteStore(path))
    store = SqliteStore(path)
    YubicoVerifier(store, sealer()).enroll("alice", YubikeyCredential(PUBLIC, UID, KEY), 0.0)
    store.close()
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert KEY not in raw and UID not in raw
    store = SqliteStore(path)
    assert YubicoVerifier(store, sealer()).verify("alice", make(1, 0), NOW).ok
    store.close()
    down = DownStore()
    v = YubicoVerifier(down)
    v.enroll("alice", YubikeyCredential(PUBLIC, UID, KEY), 0.0)
    down.down = True
    assert v.verify("alice", make(1, 0), NOW).reason == "store_unavailable"
    down.down = False
    assert v.verify("alice", make(1, 0), NOW).ok
    down.down = True
    assert v.verify("alice", make(1, 1), NOW).reason == "store_unavailable"


def test_cache_ttl_and_batch() -> None:
    v = verifier()
    items: list[tuple[str | None, str]] = [
        ("alice", make(1, 0)),
        ("alice", make(1, 0)),
        (None, make(1, 1)),
        ("alice", "x"),
    ]
    assert [r.reason for r in v.verify_many(items, NOW)] == ["ok", "replayed", "ok", "malformed"]
    other = YubicoVerifier(v.store)
    other.enroll("bob", YubikeyCredential(PUBLIC, UID, KEY), NOW)  # key handed to bob
    assert v.verify("bob", make(2, 0), NOW + 1).reason == "bad_code"  # cached: still alice's
    assert v.verify("bob", make(2, 0), NOW + 31).ok


@given(user=st.none() | st.sampled_from(["alice", "bob"]), text=st.text(max_size=60))
def test_verifier_answers_any_input_with_a_verdict(user: str | None, text: str) -> None:
    verdict = verifier().verify(user, text, NOW)
    assert not verdict.ok
    assert verdict.reason in {"malformed", "bad_code", "unknown_user"}
