"""AES-GCM sealing of secrets at rest, with key ids for rotation."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import ConfigError
from eapkit.rand import DeterministicRandom
from eapkit.store.sealing import Sealer, SealError

K1 = bytes(range(32))
K2 = bytes(range(100, 116))
SECRET = b"12345678901234567890"


def sealer(**keys: bytes) -> Sealer:
    return Sealer(keys, rand=DeterministicRandom(1))


def test_round_trip_and_binding_to_the_record_key() -> None:
    s = sealer(k1=K1)
    blob = s.seal(SECRET, b"otp:cred:alice")
    assert SECRET not in blob
    assert s.key_id(blob) == "k1"
    assert s.open(blob, b"otp:cred:alice") == SECRET
    with pytest.raises(SealError):
        s.open(blob, b"otp:cred:mallory")


def test_fresh_nonce_per_seal() -> None:
    s = sealer(k1=K1)
    assert s.seal(SECRET, b"a") != s.seal(SECRET, b"a")


def test_tampering_is_detected_and_error_text_has_no_secret() -> None:
    s = sealer(k1=K1)
    blob = bytearray(s.seal(SECRET, b"a"))
    blob[-1] ^= 1
    with pytest.raises(SealError) as info:
        s.open(bytes(blob), b"a")
    assert SECRET.hex() not in str(info.value) and "1234567890" not in str(info.value)


def test_rotation() -> None:
    old = sealer(k1=K1)
    blob = old.seal(SECRET, b"a")
    new = Sealer({"k2": K2, "k1": K1}, rand=DeterministicRandom(2))
    assert new.current == "k2"
    assert new.needs_reseal(blob)
    assert new.open(blob, b"a") == SECRET
    fresh = new.reseal(blob, b"a")
    assert not new.needs_reseal(fresh)
    assert new.key_id(fresh) == "k2"
    only_new = sealer(k2=K2)
    with pytest.raises(SealError, match="unknown key id"):
        only_new.open(blob, b"a")
    assert only_new.open(fresh, b"a") == SECRET


def test_config_and_environment() -> None:
    spec = f"k2:{base64.b64encode(K2).decode()}, k1:{base64.b64encode(K1).decode()}"
    s = Sealer.from_config(spec)
    assert s.current == "k2"
    s = Sealer.from_env(environ={"EAPKIT_STORE_KEYS": spec})
    assert s.open(s.seal(b"x", b""), b"") == b"x"
    for bad in ["", "nokid", "k:!!!", f"k:{base64.b64encode(b'short').decode()}"]:
        with pytest.raises(ConfigError):
            Sealer.from_config(bad)
    with pytest.raises(ConfigError):
        Sealer.from_env(environ={})
    with pytest.raises(ConfigError):
        Sealer({"k1": K1}, current="k9")


def test_a_key_id_listed_twice_is_refused() -> None:
    """``k1:<new>,k1:<old>`` (a rotation that reused the id) kept one key and dropped the
    other unseen; rekey --verify then called the store rotated."""
    spec = f"k1:{base64.b64encode(K2).decode()},k1:{base64.b64encode(K1).decode()}"
    with pytest.raises(ConfigError, match="listed twice"):
        Sealer.from_config(spec)


@given(st.binary(max_size=200))
def test_arbitrary_blob_opens_or_raises_seal_error(blob: bytes) -> None:
    s = sealer(k1=K1)
    with contextlib.suppress(SealError):
        s.open(blob, b"a")
