"""MS-CHAPv2 primitives (RFC 2759) and MPPE keys (RFC 3079) through the public functions."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.crypto import mschap
from eapkit.crypto.mschap import (
    challenge_hash,
    challenge_response,
    check_authenticator_response,
    decrypt_pw_block_with_password_hash,
    des_encrypt,
    encrypt_pw_block_with_password_hash,
    generate_authenticator_response,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    get_new_key_from_sha,
    hash_nt_password_hash,
    mschapv2_msk,
    new_password_encrypted_with_old_nt_password_hash,
    nt_hash_keys,
    nt_password_hash,
    old_nt_password_hash_encrypted_with_new_nt_password_hash,
    reduce_session_key,
    strip_domain,
)
from eapkit.errors import DecodeError
from tests.vectorlib import Case, hexbytes, ids, load

CASES = load("mschap_rfc")
RFC2759 = next(c for c in CASES if c["name"] == "rfc2759-9.2")
RFC3079 = [c for c in CASES if c["name"].startswith("rfc3079")]


def test_rfc2759_every_step() -> None:
    c = RFC2759
    ac, pc = hexbytes(c["authenticator_challenge"]), hexbytes(c["peer_challenge"])
    assert c["password"].encode("utf-16-le") == hexbytes(c["password_utf16le"])
    assert challenge_hash(pc, ac, c["username"]) == hexbytes(c["challenge"])
    nt_hash = nt_password_hash(c["password"])
    assert nt_hash == hexbytes(c["password_hash"])
    assert challenge_response(hexbytes(c["challenge"]), nt_hash) == hexbytes(c["nt_response"])
    assert generate_nt_response(ac, pc, c["username"], password=c["password"]) == hexbytes(
        c["nt_response"]
    )
    assert generate_nt_response(ac, pc, c["username"], nt_hash=nt_hash) == hexbytes(
        c["nt_response"]
    )
    assert hash_nt_password_hash(nt_hash) == hexbytes(c["password_hash_hash"])
    nt_response = hexbytes(c["nt_response"])
    response = generate_authenticator_response(nt_hash, nt_response, pc, ac, c["username"])
    assert response == c["authenticator_response"]
    assert len(response) == 42
    for text in (response, response.lower().replace("s=", "S="), response.encode()):
        assert check_authenticator_response(nt_hash, nt_response, pc, ac, c["username"], text)


def test_rfc2759_domain_prefix_is_not_hashed() -> None:
    c = RFC2759
    ac, pc = hexbytes(c["authenticator_challenge"]), hexbytes(c["peer_challenge"])
    assert challenge_hash(pc, ac, "CORP\\User") == hexbytes(c["challenge"])
    assert challenge_hash(pc, ac, b"CORP\\User") == hexbytes(c["challenge"])
    assert strip_domain("A\\B\\C") == b"B\\C"  # only the first backslash separates
    assert strip_domain("user") == b"user"


@pytest.mark.parametrize("case", RFC3079, ids=ids(RFC3079))
def test_rfc3079_keys(case: Case) -> None:
    master = get_master_key(hexbytes(case["password_hash_hash"]), hexbytes(case["nt_response"]))
    assert master == hexbytes(case["master_key"])
    start = get_asymmetric_start_key(master, case["key_length"], is_send=True, is_server=True)
    assert start == hexbytes(case["send_start_key"])
    session = get_new_key_from_sha(start, start, case["key_length"])
    assert reduce_session_key(session, case["bits"]) == hexbytes(case["send_session_key"])


def test_send_and_receive_keys_mirror_between_roles() -> None:
    master = hexbytes(RFC3079[0]["master_key"])
    for length in (8, 16):
        peer_send = get_asymmetric_start_key(master, length, is_send=True, is_server=False)
        server_recv = get_asymmetric_start_key(master, length, is_send=False, is_server=True)
        peer_recv = get_asymmetric_start_key(master, length, is_send=False, is_server=False)
        server_send = get_asymmetric_start_key(master, length, is_send=True, is_server=True)
        assert peer_send == server_recv
        assert peer_recv == server_send
        assert peer_send != peer_recv


def test_msk_layout() -> None:
    master = hexbytes(RFC3079[0]["master_key"])
    msk = mschapv2_msk(master)
    assert len(msk) == 64
    assert msk[:16] == get_asymmetric_start_key(master, 16, is_send=False, is_server=True)
    assert msk[16:32] == get_asymmetric_start_key(master, 16, is_send=True, is_server=True)
    assert msk[32:] == bytes(32)


def test_wrong_authenticator_response_is_refused() -> None:
    c = RFC2759
    ac, pc = hexbytes(c["authenticator_challenge"]), hexbytes(c["peer_challenge"])
    nt_hash, nt_response = hexbytes(c["password_hash"]), hexbytes(c["nt_response"])
    good = c["authenticator_response"]
    flipped = good[:-1] + ("7" if good[-1] != "7" else "8")
    for bad in (flipped, good[:-2], good + "0", "X" + good[1:], "S=" + "zz" * 20, "", "S=é"):
        assert not check_authenticator_response(nt_hash, nt_response, pc, ac, "User", bad)


def test_lengths_are_checked_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="peer_challenge must be 16 bytes"):
        challenge_hash(b"x" * 15, bytes(16), "u")
    with pytest.raises(ValueError, match="authenticator_challenge must be 16 bytes"):
        challenge_hash(bytes(16), b"x" * 17, "u")
    with pytest.raises(ValueError, match="nt_hash must be 16 bytes"):
        challenge_response(bytes(8), bytes(15))
    with pytest.raises(ValueError, match="challenge must be 8 bytes"):
        challenge_response(bytes(7), bytes(16))
    with pytest.raises(ValueError, match="exactly one"):
        generate_nt_response(bytes(16), bytes(16), "u")
    with pytest.raises(ValueError, match="exactly one"):
        generate_nt_response(bytes(16), bytes(16), "u", password="p", nt_hash=bytes(16))
    with pytest.raises(ValueError, match="at most 256"):
        nt_password_hash("x" * 257)
    with pytest.raises(ValueError, match="at most 256"):
        challenge_hash(bytes(16), bytes(16), "u" * 257)
    with pytest.raises(ValueError, match="key_length"):
        get_asymmetric_start_key(bytes(16), 5, True, True)
    with pytest.raises(ValueError, match="bits"):
        reduce_session_key(bytes(8), 64)
    with pytest.raises(ValueError, match="not UTF-8"):
        nt_password_hash(b"\xff")
    with pytest.raises(TypeError):
        challenge_response("12345678", bytes(16))  # type: ignore[arg-type]
    nt_password_hash("x" * 256)  # the limit itself is fine


def test_password_is_utf16le_including_non_ascii() -> None:
    # bytes are UTF-8 text; str and bytes of the same text hash alike
    assert nt_password_hash("pässwörd") == nt_password_hash("pässwörd".encode())
    assert nt_password_hash("pässwörd") != nt_password_hash("passwoerd")
    assert nt_password_hash("") == bytes.fromhex("31d6cfe0d16ae931b73c59d7e0c089c0")


def test_des_encrypt_parity_bits_do_not_matter() -> None:
    # §8.6: the 7-byte key is spread over 8 bytes; DES of a known block under a known key.
    # Key 0x00..00 -> 8-byte key 01 01 .. 01 (odd parity): the DES weak key, whose
    # encryption of 0 is the well-known 8CA64DE9C1B123A7.
    assert des_encrypt(bytes(8), bytes(7)).hex() == "8ca64de9c1b123a7"


def test_cached_schedule_matches_fresh_computation() -> None:
    nt_hash = hexbytes(RFC2759["password_hash"])
    keys = nt_hash_keys(nt_hash)
    assert nt_hash_keys(nt_hash) is keys
    assert "44eb" not in repr(keys).lower()
    challenge = hexbytes(RFC2759["challenge"])
    z = nt_hash + bytes(5)
    fresh = des_encrypt(challenge, z[:7]) + des_encrypt(challenge, z[7:14])
    fresh += des_encrypt(challenge, z[14:])
    assert keys.challenge_response(challenge) == fresh == hexbytes(RFC2759["nt_response"])
    ac, pc = hexbytes(RFC2759["authenticator_challenge"]), hexbytes(RFC2759["peer_challenge"])
    assert keys.verify_nt_response(ac, pc, "User", hexbytes(RFC2759["nt_response"]))
    assert not keys.verify_nt_response(ac, pc, "user", hexbytes(RFC2759["nt_response"]))


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mschap, "_CACHE_SIZE", 3)
    for i in range(10):
        nt_hash_keys(i.to_bytes(16, "big"))
    assert len(mschap._cache) <= 3


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.text(max_size=40).filter(lambda s: len(s.encode()) <= 256),
    st.text(max_size=64),
)
def test_roles_agree_on_random_inputs(ac: bytes, pc: bytes, user: str, password: str) -> None:
    nt_hash = nt_password_hash(password)
    nt_response = generate_nt_response(ac, pc, user, password=password)
    assert nt_hash_keys(nt_hash).verify_nt_response(ac, pc, user, nt_response)
    response = generate_authenticator_response(nt_hash, nt_response, pc, ac, user)
    assert check_authenticator_response(nt_hash, nt_response, pc, ac, user, response)
    other = nt_password_hash(password + "x")
    assert not check_authenticator_response(other, nt_response, pc, ac, user, response)


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except (ValueError, TypeError) as exc:
        return type(exc), str(exc)


@given(
    st.binary(min_size=15, max_size=17) | st.just(bytearray(16)),
    st.binary(min_size=16, max_size=16),
    st.one_of(
        st.text(max_size=40),
        st.text(alphabet="ab\\", max_size=8),
        st.text(alphabet="a", min_size=250, max_size=260),
        st.binary(max_size=40),
    ),
    st.binary(min_size=23, max_size=25),
    st.binary(min_size=16, max_size=16),
)
def test_verify_nt_response_agrees_with_the_rfc_functions(
    ac: bytes, pc: bytes, user: str | bytes, nt_response: bytes, nt_hash: bytes
) -> None:
    # verify_nt_response inlines §8.2/§8.5 with a fast argument check: same answer (or the
    # same error) as ChallengeHash + ChallengeResponse for any user name and lengths.
    def reference() -> bool:
        expected = challenge_response(challenge_hash(pc, ac, user), nt_hash)
        return expected == mschap._check_len(nt_response, 24, "nt_response")

    got = _outcome(nt_hash_keys(nt_hash).verify_nt_response, ac, pc, user, nt_response)
    assert got == _outcome(reference)
    if len(ac) == 16 and (isinstance(user, bytes) or len(user.encode()) <= 256):
        right = challenge_response(challenge_hash(pc, ac, user), nt_hash)
        assert nt_hash_keys(nt_hash).verify_nt_response(ac, pc, user, right)


# -- Change-Password (§8.9-8.13) ----------------------------------------------------------


def test_change_password_block_layout_and_round_trip() -> None:
    old_hash = nt_password_hash("oldPass")
    filler = bytes(range(256)) * 2
    block = new_password_encrypted_with_old_nt_password_hash(
        "newPass", old_nt_hash=old_hash, filler=filler
    )
    assert len(block) == 516
    assert block == new_password_encrypted_with_old_nt_password_hash(
        "newPass", "oldPass", filler=filler
    )
    # RC4 is its own inverse: decrypting by hand shows §8.10's layout
    assert encrypt_pw_block_with_password_hash("newPass", old_hash, filler) == block
    assert decrypt_pw_block_with_password_hash(block, old_hash) == "newPass"
    pw = "newPass".encode("utf-16-le")
    raw = mschap._rc4(old_hash, block)
    assert raw[:512] == filler[: 512 - len(pw)] + pw
    assert raw[512:] == len(pw).to_bytes(4, "little")


def test_change_password_with_wrong_old_hash_is_a_decode_error_or_garbage() -> None:
    block = new_password_encrypted_with_old_nt_password_hash("newPass", "oldPass")
    try:
        got = decrypt_pw_block_with_password_hash(block, nt_password_hash("other"))
    except DecodeError:
        return
    assert got != "newPass"


@given(st.binary(max_size=600), st.binary(min_size=16, max_size=16))
def test_decrypt_pw_block_raises_only_decode_error(block: bytes, key: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decrypt_pw_block_with_password_hash(block, key)


def test_old_hash_encrypted_with_new_hash() -> None:
    old, new = nt_password_hash("oldPass"), nt_password_hash("newPass")
    enc = old_nt_password_hash_encrypted_with_new_nt_password_hash("newPass", "oldPass")
    assert enc == old_nt_password_hash_encrypted_with_new_nt_password_hash(
        new_nt_hash=new, old_nt_hash=old
    )
    assert enc == des_encrypt(old[:8], new[:7]) + des_encrypt(old[8:], new[7:14])
    assert len(enc) == 16
