"""Diameter AVP codec of EAP-TTLS (RFC 5281 §10)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.diameter import (
    MICROSOFT,
    Avp,
    AvpCode,
    decode_avps,
    encode_avps,
    find,
    unknown_mandatory,
)
from eapkit.errors import DecodeError

avps = st.builds(
    Avp,
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=70),
    st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    st.booleans(),
)


@given(st.lists(avps, max_size=8))
def test_avps_round_trip_on_4_byte_boundaries(items: list[Avp]) -> None:
    wire = encode_avps(items)
    assert len(wire) % 4 == 0
    assert decode_avps(wire) == items


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_avps(data)


def test_user_name_avp_layout() -> None:
    """RFC 5281 §10.1: code 1, M set, length 8 + 5 = 13, padded to 16."""
    wire = Avp(AvpCode.USER_NAME, b"alice").encode()
    assert wire == bytes.fromhex("00000001 4000000d") + b"alice" + b"\x00\x00\x00"


def test_vendor_avp_layout() -> None:
    wire = Avp(AvpCode.MS_CHAP_CHALLENGE, b"\x01" * 16, MICROSOFT).encode()
    assert wire[:12] == bytes.fromhex("0000000b c000001c 00000137")


def test_last_avp_may_lack_padding() -> None:
    wire = Avp(1, b"alice").encode()[:13]
    assert decode_avps(wire) == [Avp(1, b"alice")]


@pytest.mark.parametrize(
    ("wire", "offset"),
    [
        (bytes.fromhex("000000014000"), 0),
        (bytes.fromhex("0000000140000007"), 5),
        (bytes.fromhex("000000018000000b00000137"), 5),
        (bytes.fromhex("0000000140000010616263"), 5),
    ],
)
def test_malformed_avps(wire: bytes, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_avps(wire)
    assert info.value.offset == offset


def test_find_and_mandatory_check() -> None:
    items = [Avp(1, b"u"), Avp(2, b"p"), Avp(999, b"x", mandatory=False), Avp(25, b"r", MICROSOFT)]
    assert find(items, 2) == Avp(2, b"p")
    assert find(items, 25, MICROSOFT) == items[3]
    assert find(items, 25) is None
    assert unknown_mandatory(items, {(0, 1), (0, 2), (MICROSOFT, 25)}) is None
    assert unknown_mandatory(items, {(0, 1), (0, 2)}) == items[3]
