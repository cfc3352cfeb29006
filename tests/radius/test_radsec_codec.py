"""The RADIUS/1.1 codec (RFC 9765 §4, §5): Token in place of the Identifier and
Request Authenticator, no MD5, nothing obfuscated; property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password, salt_decrypt, salt_encrypt, unhide_password
from eapkit.radius.packet import Code, decode
from eapkit.radius.radius11 import RADIUS_1_1, encode, encode_reply
from eapkit.radius.radius11 import decode as decode_1_1

attribute = st.tuples(
    st.integers(1, 255).filter(lambda t: t != Attr.MESSAGE_AUTHENTICATOR),
    st.binary(max_size=40),
)
codes = st.sampled_from([Code.ACCESS_REQUEST, Code.ACCOUNTING_REQUEST, Code.STATUS_SERVER])


@given(codes, st.binary(min_size=4, max_size=4), st.lists(attribute, max_size=10))
def test_request_and_reply_round_trip(
    code: int, token: bytes, attrs: list[tuple[int, bytes]]
) -> None:
    data = encode(code, token, attrs)
    assert data[4:8] == token and data[8:20] == bytes(12)  # Token, reserved zeros
    request = decode_1_1(data)
    assert (request.code, request.attributes) == (code, attrs)
    assert request.message_authenticator is None  # none added: no MD5 (RFC 9765 §5.2)
    reply = decode_1_1(encode_reply(Code.ACCESS_ACCEPT, request, attrs))
    assert reply.raw[4:8] == token and reply.raw[8:20] == bytes(12)
    proxy_state = [(t, v) for t, v in attrs if t == Attr.PROXY_STATE]  # copied (RFC 2865 §5.33)
    assert reply.identifier == request.identifier and reply.attributes == attrs + proxy_state


@given(st.binary(max_size=200))
def test_decode_1_1_raises_only_decode_error(data: bytes) -> None:
    try:
        packet = decode_1_1(data)
    except DecodeError:
        return
    assert all(t != Attr.MESSAGE_AUTHENTICATOR for t, _ in packet.attributes)
    assert packet.message_authenticator is None


def test_a_received_message_authenticator_is_discarded() -> None:
    """RFC 9765 §5.2: silently discarded, the packet still processed."""
    body = bytes((80, 18)) + bytes(16) + bytes((1, 7)) + b"alice"
    data = bytes((1, 3)) + (20 + len(body)).to_bytes(2) + b"TOKN" + bytes(12) + body
    packet = decode_1_1(data)
    assert packet.attributes == [(1, b"alice")] and packet.message_authenticator is None
    assert decode(data).message_authenticator is not None  # 1.0 keeps it


@given(st.binary(max_size=128))
def test_nothing_is_obfuscated(password: bytes) -> None:
    auth = bytes(16)
    assert hide_password(password, RADIUS_1_1, auth) == password
    assert unhide_password(password, RADIUS_1_1, auth) == password
    assert salt_encrypt(password, RADIUS_1_1, auth, b"\x80\x01") == password
    assert salt_decrypt(password, RADIUS_1_1, auth) == password


def test_token_must_be_four_octets() -> None:
    with pytest.raises(ValueError, match="4 octets"):
        encode(Code.ACCESS_REQUEST, bytes(16), [])
    with pytest.raises(DecodeError):
        unhide_password(bytes(129), RADIUS_1_1, bytes(16))


def test_a_malformed_message_authenticator_is_discarded_too() -> None:
    """RFC 9765 §5.2 asks to discard it, whatever its length: the server used to refuse
    the packet (RADIUS/1.0's decoder: "Message-Authenticator length") and close the
    connection; one decoder now serves both sides."""
    body = bytes((80, 4)) + bytes(2) + bytes((80, 18)) + bytes(16) + bytes((1, 7)) + b"alice"
    data = bytes((1, 0)) + (20 + len(body)).to_bytes(2) + b"TOKN" + bytes(12) + body
    with pytest.raises(DecodeError):
        decode(data)
    assert decode_1_1(data).attributes == [(1, b"alice")]
