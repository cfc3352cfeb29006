"""The ppolicy response control's codec (draft-behera-ldap-password-policy §6.2):
round trips, the bytes slapd 2.5 really sends, and nothing but DecodeError on junk."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.directory.ppolicy import (
    ACCOUNT_LOCKED,
    CHANGE_AFTER_RESET,
    PASSWORD_EXPIRED,
    PpolicyResponse,
    decode_response,
    encode_response,
    refusal_reason,
)
from eapkit.errors import DecodeError

counts = st.integers(0, 2**31 - 1)
responses = st.builds(
    PpolicyResponse,
    st.none(),
    st.none() | counts,
    st.none() | st.integers(0, 8),
) | st.builds(PpolicyResponse, counts, st.none(), st.none() | st.integers(0, 8))


@given(responses)
def test_round_trip(response: PpolicyResponse) -> None:
    assert decode_response(encode_response(response)) == response


@given(st.binary(max_size=40))
def test_junk_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_response(data)


@given(responses, st.data())
def test_truncation_is_a_decode_error(response: PpolicyResponse, data: st.DataObject) -> None:
    encoded = encode_response(response)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_response(encoded[:cut])


@pytest.mark.parametrize(
    ("wire", "reason"),
    [  # what slapd 2.5.13 sent in tests/interop/ldap_server.py's directory
        (b"0\x03\x81\x01\x01", "account_locked"),
        (b"0\x03\x81\x01\x00", "password_expired"),
        (b"0\x03\x81\x01\x02", "password_must_change"),
        (b"0\x00", None),  # the control, no error: a plain success or a wrong password
        (b"0\x05\xa0\x03\x80\x01\x00", None),  # a warning is not a refusal
    ],
)
def test_slapd_bytes(wire: bytes, reason: str | None) -> None:
    assert refusal_reason(decode_response(wire)) == reason


def test_error_codes_named() -> None:
    assert (PASSWORD_EXPIRED, ACCOUNT_LOCKED, CHANGE_AFTER_RESET) == (0, 1, 2)
    assert refusal_reason(PpolicyResponse(error=5)) is None  # insufficientPasswordQuality
    assert refusal_reason(None) is None


@pytest.mark.parametrize(
    "wire",
    [
        b"1\x00",  # not a SEQUENCE
        b"0\x03\x81\x01\x01\x00",  # a byte after it
        b"0\x06\x81\x01\x01\xa0\x01\x00",  # warning after error
        b"0\x06\x81\x01\x01\x81\x01\x01",  # error twice
        b"0\x03\x82\x01\x01",  # unknown element
        b"0\x03\x81\x01\xff",  # negative
        b"0\x02\x81\x00",  # empty integer
        b"0\x80",  # indefinite length
    ],
)
def test_malformed(wire: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_response(wire)


# -- hostile BER (issue 18's attack list): each is refused with DecodeError, quickly


def _nested(depth: int) -> bytes:
    """``depth`` [0] constructed elements inside each other, in a SEQUENCE."""
    inner = b"\x80\x01\x05"
    for _ in range(depth):
        n = len(inner)
        size = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
        inner = (
            b"\xa0" + bytes([n]) if n < 0x80 else b"\xa0" + bytes([0x80 | len(size)]) + size
        ) + inner
    n = len(inner)
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(size)]) + size + inner


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x84\xff\xff\xff\xff",  # 4 GiB announced, nothing there
        b"\x30\x85\x01\x00\x00\x00\x00",  # a 5-octet length
        b"\x30\x80\x81\x01\x01\x00\x00",  # indefinite length (X.690 §8.1.3.6): not in LDAP
        b"\x30\x06\x81\x84\xff\xff\xff\xff",  # the error element overruns
        b"\x30\x03\x81\x01\xff",  # error -1
        b"\x30\x08\x81\x06\x00\x00\x00\x00\x00\x01",  # a 6-octet INTEGER
        b"\x30\x06\x81\x01\x01\x81\x01\x01",  # error twice
        b"\x30\x0a\x81\x01\x01\xa0\x03\x80\x01\x05",  # warning after error
        b"\x30\x07\xa0\x05\xa0\x03\x80\x01\x05",  # a warning inside the warning
        b"\x30\x05\xa0\x03\x82\x01\x05",  # an unknown warning
        b"\x30\x03\x81\x01\x01\x00",  # a byte after the SEQUENCE
        b"\x31\x03\x81\x01\x01",  # a SET
        _nested(10_000),  # deep nesting: no recursion to exhaust
        b"\x30\x84\x00\x10\x00\x00" + b"\x00" * 0x100000,  # 1 MiB of zeros
    ],
)
def test_hostile_ber_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_response(data)


@given(responses, st.data())
def test_mutated_encodings_decode_or_raise_decode_error(
    response: PpolicyResponse, data: st.DataObject
) -> None:
    encoded = bytearray(encode_response(response))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decoded = decode_response(bytes(encoded))
        assert refusal_reason(decoded) in (None, *REASONS)


REASONS = ("password_expired", "account_locked", "password_must_change")
