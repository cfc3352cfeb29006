"""User-Password hiding (RFC 2865 §5.2), salt encryption (RFC 2548 §2.4.2) and MPPE keys."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.radius.dictionary import VENDOR_MICROSOFT, MsAttr, decode_vsa, vsa
from eapkit.radius.hiding import hide_password, salt_decrypt, salt_encrypt, unhide_password
from eapkit.radius.mppe import (
    MppeKeys,
    mppe_key_attributes,
    mppe_keys_from_msk,
    recover_mppe_keys,
)
from eapkit.radius.packet import Code, Packet, decode, encode_reply, encode_request
from eapkit.rand import DeterministicRandom

SECRET = b"s3cret"
AUTH = bytes.fromhex("0f403f9473978057bd83d5cb98f4227a")
MSK = bytes(range(64))

_secret = st.binary(min_size=1, max_size=64)
_auth = st.binary(min_size=16, max_size=16)


# -- User-Password -------------------------------------------------------------------------


def test_password_hiding_is_the_rfc_construction() -> None:
    # RFC 2865 §5.2 written out for a 20-octet password (two blocks)
    password = b"correct horse battery"
    p = password + bytes(32 - len(password))
    b1 = hashlib.md5(SECRET + AUTH).digest()
    c1 = bytes(x ^ y for x, y in zip(p[:16], b1, strict=True))
    b2 = hashlib.md5(SECRET + c1).digest()
    c2 = bytes(x ^ y for x, y in zip(p[16:], b2, strict=True))
    assert hide_password(password, SECRET, AUTH) == c1 + c2


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 127, 128])
def test_password_lengths(n: int) -> None:
    password = b"p" * n
    hidden = hide_password(password, SECRET, AUTH)
    assert len(hidden) == max(16, -(-n // 16) * 16)
    assert unhide_password(hidden, SECRET, AUTH) == password


def test_password_limits() -> None:
    with pytest.raises(ValueError, match="128"):
        hide_password(bytes(129), SECRET, AUTH)
    for n in (0, 15, 17, 144):
        with pytest.raises(DecodeError):
            unhide_password(bytes(n), SECRET, AUTH)


def test_wrong_secret_gives_another_password() -> None:
    hidden = hide_password(b"hunter2", SECRET, AUTH)
    assert unhide_password(hidden, b"other", AUTH) != b"hunter2"


@given(st.binary(max_size=128).map(lambda b: b.rstrip(b"\x00")), _secret, _auth)
def test_password_round_trip(password: bytes, secret: bytes, auth: bytes) -> None:
    assert unhide_password(hide_password(password, secret, auth), secret, auth) == password


@given(st.binary(max_size=200), _secret, _auth)
def test_unhide_arbitrary_bytes(hidden: bytes, secret: bytes, auth: bytes) -> None:
    try:
        result = unhide_password(hidden, secret, auth)
    except DecodeError:
        return
    assert len(result) <= 128


# -- salt encryption (RFC 2548 §2.4.2) -------------------------------------------------------


def test_salt_encryption_is_the_rfc_construction() -> None:
    key = bytes(range(32))
    salt = b"\x81\x02"
    plain = bytes([32]) + key + bytes(15)  # Key-Length, key, padding to 48
    b1 = hashlib.md5(SECRET + AUTH + salt).digest()
    c1 = bytes(x ^ y for x, y in zip(plain[:16], b1, strict=True))
    b2 = hashlib.md5(SECRET + c1).digest()
    c2 = bytes(x ^ y for x, y in zip(plain[16:32], b2, strict=True))
    b3 = hashlib.md5(SECRET + c2).digest()
    c3 = bytes(x ^ y for x, y in zip(plain[32:], b3, strict=True))
    assert salt_encrypt(key, SECRET, AUTH, salt) == salt + c1 + c2 + c3


def test_salt_rules() -> None:
    with pytest.raises(ValueError, match="high bit"):
        salt_encrypt(b"k", SECRET, AUTH, b"\x01\x02")
    with pytest.raises(ValueError, match="high bit"):
        salt_encrypt(b"k", SECRET, AUTH, b"\x81")
    with pytest.raises(ValueError, match="fit"):
        salt_encrypt(bytes(240), SECRET, AUTH, b"\x80\x00")
    good = salt_encrypt(b"key", SECRET, AUTH, b"\x80\x00")
    with pytest.raises(DecodeError, match="high bit"):
        salt_decrypt(b"\x00" + good[1:], SECRET, AUTH)
    for n in (0, 2, 17, 19, 33):
        with pytest.raises(DecodeError):
            salt_decrypt(b"\x80" * n, SECRET, AUTH)


def test_salt_decrypt_with_a_wrong_secret_is_caught_by_key_length() -> None:
    # A 32-octet key pads to 48: a wrong secret leaves a random Key-Length octet, which
    # points past the 47 octets of data 208 times in 256.  Check that it is refused
    # at least sometimes, and never raises anything but DecodeError.
    refused = 0
    for i in range(64):
        value = salt_encrypt(bytes(32), SECRET, AUTH, bytes([0x80, i]))
        try:
            salt_decrypt(value, b"wrong", AUTH)
        except DecodeError:
            refused += 1
    assert refused > 20


@given(st.binary(max_size=239), _secret, _auth, st.integers(0x8000, 0xFFFF))
def test_salt_round_trip(plain: bytes, secret: bytes, auth: bytes, salt: int) -> None:
    value = salt_encrypt(plain, secret, auth, salt.to_bytes(2, "big"))
    assert (len(value) - 2) % 16 == 0
    assert len(value) <= 247  # fits a vendor attribute
    assert salt_decrypt(value, secret, auth) == plain


@given(st.binary(max_size=300), _secret, _auth)
def test_salt_decrypt_arbitrary_bytes(value: bytes, secret: bytes, auth: bytes) -> None:
    with contextlib.suppress(DecodeError):
        salt_decrypt(value, secret, auth)


# -- MPPE keys -----------------------------------------------------------------------------


def test_msk_split_as_hostapd_does() -> None:
    keys = mppe_keys_from_msk(MSK)
    assert keys.recv == MSK[:32]
    assert keys.send == MSK[32:64]
    assert keys.msk() == MSK
    assert mppe_keys_from_msk(MSK + bytes(64)) == keys  # only the first 64 octets
    assert mppe_keys_from_msk(bytes(range(40))) == MppeKeys(
        send=bytes(range(20, 40)), recv=bytes(range(20))
    )
    with pytest.raises(ValueError):
        mppe_keys_from_msk(b"x")


def test_mppe_attributes_in_an_access_accept() -> None:
    request = decode(encode_request(Code.ACCESS_REQUEST, 1, [], SECRET, authenticator=AUTH))
    attrs = mppe_key_attributes(MSK, SECRET, request.authenticator, DeterministicRandom(1))
    assert [decode_vsa(v)[0] for _, v in attrs] == [VENDOR_MICROSOFT] * 2
    subs = [decode_vsa(v)[1][0] for _, v in attrs]
    assert [t for t, _ in subs] == [MsAttr.MS_MPPE_SEND_KEY, MsAttr.MS_MPPE_RECV_KEY]
    salts = [value[:2] for _, value in subs]
    assert salts[0] != salts[1]
    assert all(s[0] & 0x80 for s in salts)
    assert all(len(value) == 2 + 48 for _, value in subs)
    reply = decode(encode_reply(Code.ACCESS_ACCEPT, request, attrs, SECRET))
    assert recover_mppe_keys(reply, SECRET, request.authenticator) == mppe_keys_from_msk(MSK)


def test_salts_stay_unique_when_the_random_source_repeats() -> None:
    class Repeating:
        def __init__(self) -> None:
            self.calls = 0

        def random_bytes(self, n: int) -> bytes:
            # twice octets that make two equal salts, then distinct ones
            self.calls += 1
            return bytes([7] * n) if self.calls <= 2 else bytes(range(self.calls, self.calls + n))

    rng = Repeating()
    attrs = mppe_key_attributes(MSK, SECRET, AUTH, rng)
    salts = [decode_vsa(v)[1][0][1][:2] for _, v in attrs]
    assert salts[0] != salts[1]
    assert rng.calls == 3


def test_recover_mppe_keys_without_or_with_one_key() -> None:
    assert recover_mppe_keys(Packet(2, 0, AUTH, [(18, b"hi")]), SECRET, AUTH) is None
    only_recv = vsa(
        VENDOR_MICROSOFT,
        MsAttr.MS_MPPE_RECV_KEY,
        salt_encrypt(b"r" * 32, SECRET, AUTH, b"\x90\x01"),
    )
    got = recover_mppe_keys(Packet(2, 0, AUTH, [only_recv]), SECRET, AUTH)
    assert got == MppeKeys(send=b"", recv=b"r" * 32)
    broken = vsa(VENDOR_MICROSOFT, MsAttr.MS_MPPE_SEND_KEY, b"\x80\x00\x01")
    with pytest.raises(DecodeError):
        recover_mppe_keys(Packet(2, 0, AUTH, [broken]), SECRET, AUTH)


@given(st.binary(min_size=64, max_size=64), _secret, _auth, st.integers(0, 2**32))
def test_mppe_round_trip(msk: bytes, secret: bytes, auth: bytes, seed: int) -> None:
    attrs = mppe_key_attributes(msk, secret, auth, DeterministicRandom(seed))
    keys = recover_mppe_keys(Packet(2, 0, auth, attrs), secret, auth)
    assert keys is not None
    assert keys.msk() == msk


@given(
    st.lists(
        st.tuples(st.sampled_from([16, 17, 1, 26]), st.binary(max_size=60)),
        max_size=4,
    ),
    st.lists(st.binary(max_size=30), max_size=2),
)
def test_recover_mppe_keys_from_arbitrary_vendor_attributes(
    subs: list[tuple[int, bytes]], raw_vsas: list[bytes]
) -> None:
    attrs = [vsa(VENDOR_MICROSOFT, t, v) for t, v in subs]
    attrs += [(26, b"\x00\x00\x01\x37" + v) for v in raw_vsas]  # possibly malformed
    try:
        keys = recover_mppe_keys(Packet(2, 0, AUTH, attrs), SECRET, AUTH)
    except DecodeError:
        return
    if keys is not None:
        assert isinstance(keys.send, bytes) and isinstance(keys.recv, bytes)
