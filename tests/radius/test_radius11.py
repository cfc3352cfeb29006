"""The RADIUS/1.1 codec of the NAS side (RFC 9765, :mod:`eapkit.radius.radius11`)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.radius import radius11
from eapkit.radius.dictionary import Attr
from eapkit.radius.mppe import recover_mppe_keys
from eapkit.radius.packet import Code, encode_request

attributes = st.lists(
    st.tuples(st.integers(1, 255).filter(lambda t: t != 80), st.binary(max_size=253)),
    max_size=10,
)


@given(st.sampled_from(list(Code)), st.binary(min_size=4, max_size=4), attributes)
def test_round_trip(code: int, token: bytes, attrs: list[tuple[int, bytes]]) -> None:
    wire = radius11.encode(code, token, attrs)
    assert wire[1] == 0 and wire[8:20] == bytes(12)  # Reserved-1, Reserved-2 (§4.1)
    packet = radius11.decode(wire)
    assert packet.code == code and radius11.token_of(packet) == token
    assert packet.attributes == attrs


@given(st.binary(max_size=80))
def test_garbage_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        radius11.decode(data)


def test_message_authenticator_never_sent_and_dropped_when_received() -> None:
    with pytest.raises(ValueError, match="Message-Authenticator"):
        radius11.encode(Code.ACCESS_REQUEST, bytes(4), [(Attr.MESSAGE_AUTHENTICATOR, bytes(16))])
    # a RADIUS/1.0 packet carries one; read as RADIUS/1.1 it is gone (§5.2), even a
    # malformed one the RADIUS/1.0 decoder would refuse
    legacy = encode_request(Code.ACCESS_REQUEST, 7, [(Attr.USER_NAME, b"bob")], b"s")
    packet = radius11.decode(legacy)
    assert [t for t, _ in packet.attributes] == [Attr.USER_NAME]
    odd = radius11.encode(Code.ACCESS_ACCEPT, b"tokn", [(Attr.USER_NAME, b"x")])
    odd = odd[:2] + (len(odd) + 3).to_bytes(2, "big") + odd[4:] + bytes((80, 3, 0))
    assert radius11.decode(odd).attributes == [(Attr.USER_NAME, b"x")]


def test_ignores_reserved_fields_on_receipt() -> None:
    wire = bytearray(radius11.encode(Code.ACCESS_ACCEPT, b"\x00\x00\x01\x02", []))
    wire[1], wire[10] = 9, 0xFF
    assert radius11.token_of(radius11.decode(bytes(wire))) == b"\x00\x00\x01\x02"


def test_mppe_keys_travel_in_clear() -> None:
    send, recv = bytes(range(32)), bytes(range(32, 64))
    vsa = [
        (26, (311).to_bytes(4, "big") + bytes((16, 34)) + send),
        (26, (311).to_bytes(4, "big") + bytes((17, 34)) + recv),
    ]
    packet = radius11.decode(radius11.encode(Code.ACCESS_ACCEPT, bytes(4), vsa))
    keys = recover_mppe_keys(packet, radius11.RADIUS_1_1, bytes(16))
    assert keys is not None and keys.send == send and keys.recv == recv
    empty = radius11.decode(radius11.encode(2, bytes(4), []))
    assert recover_mppe_keys(empty, radius11.RADIUS_1_1, bytes(16)) is None


def test_token_counter_wraps() -> None:
    counter = radius11.TokenCounter()
    counter._value = 0xFFFFFFFF
    assert counter.next() == b"\xff\xff\xff\xff" and counter.next() == bytes(4)


@pytest.mark.parametrize("bad", [b"abc", b"abcde"])
def test_token_is_four_octets(bad: bytes) -> None:
    with pytest.raises(ValueError):
        radius11.encode(Code.ACCESS_REQUEST, bad, [])
