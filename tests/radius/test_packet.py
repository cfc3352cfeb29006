"""The RADIUS packet codec and its integrity checks (RFC 2865 §3, RFC 2866 §3, RFC 3579 §3)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.radius import dictionary as rd
from eapkit.radius.hiding import hide_password, unhide_password
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    check_request,
    decode,
    eap_message_attributes,
    encode,
    encode_reply,
    encode_request,
    hmac_md5,
    verify_reply,
)
from eapkit.rand import DeterministicRandom
from tests.vectorlib import Case, hexbytes, ids, load

SECRET = b"testing123"
AUTH = bytes(range(16))

RFC2865 = load("radius_rfc2865")


# -- RFC 2865 §7 ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", RFC2865, ids=ids(RFC2865))
def test_rfc2865_example_decodes(case: Case) -> None:
    raw = hexbytes(case["packet"])
    p = decode(raw)
    assert p.code == case["code"]
    assert p.identifier == case["identifier"]
    assert p.authenticator == raw[4:20]
    assert p.attributes == [(t, hexbytes(v)) for t, v in case["attributes"]]
    for name, expected in case["values"].items():
        d = rd.lookup(name)
        value = rd.decode_value(d, p.get(d.number) or b"")
        if d.type is rd.DataType.OCTETS:
            assert value == hexbytes(expected)
        elif d.type is rd.DataType.IPADDR:
            assert str(value) == expected
        else:
            assert value == expected
    # the plain encoder lays the same fields out to the same octets
    assert encode(p.code, p.identifier, p.authenticator, p.attributes) == raw


@pytest.mark.parametrize("case", RFC2865, ids=ids(RFC2865))
def test_rfc2865_example_integrity(case: Case) -> None:
    raw = hexbytes(case["packet"])
    secret = case["secret"].encode()
    p = decode(raw)
    if "request_authenticator" in case:
        request_authenticator = hexbytes(case["request_authenticator"])
        assert p.verify_response_authenticator(secret, request_authenticator)
        assert not p.verify_response_authenticator(secret + b"x", request_authenticator)
        # these replies predate Message-Authenticator
        assert verify_reply(p, request_authenticator, secret) == "missing Message-Authenticator"
        assert (
            verify_reply(p, request_authenticator, secret, require_message_authenticator=False)
            is None
        )
    if "user_password" in case:
        hidden = p.get(rd.Attr.USER_PASSWORD)
        assert hidden is not None
        password = case["user_password"].encode()
        assert unhide_password(hidden, secret, p.authenticator) == password
        assert hide_password(password, secret, p.authenticator) == hidden


# -- requests ------------------------------------------------------------------------------


def _access_request(**kw: object) -> bytes:
    attrs: list[Attribute] = [
        (rd.Attr.USER_NAME, b"alice"),
        (rd.Attr.NAS_IP_ADDRESS, bytes([127, 0, 0, 1])),
        *eap_message_attributes(b"\x02\x01\x00\x0a\x01alice"),
    ]
    return encode_request(Code.ACCESS_REQUEST, 7, attrs, SECRET, authenticator=AUTH, **kw)  # type: ignore[arg-type]


def test_access_request_has_message_authenticator_first_and_verifies() -> None:
    raw = _access_request()
    p = decode(raw)
    assert p.attributes[0][0] == rd.Attr.MESSAGE_AUTHENTICATOR
    assert p.authenticator == AUTH
    assert check_request(p, SECRET) is None
    assert p.verify_message_authenticator(SECRET)
    assert check_request(p, b"wrong") == "bad Message-Authenticator"
    # the MAC is HMAC-MD5 over the packet with the field zeroed (RFC 3579 §3.2)
    zeroed = raw[:22] + bytes(16) + raw[38:]
    assert p.message_authenticator == hmac.digest(SECRET, zeroed, "md5")


def test_hmac_md5_matches_the_standard_library() -> None:
    for secret in (b"", b"s", b"x" * 64, b"y" * 65, b"z" * 200):
        for data in (b"", b"abc", bytes(1000)):
            assert hmac_md5(secret, data) == hmac.digest(secret, data, "md5")


def test_random_request_authenticator_comes_from_the_random_source() -> None:
    raw1 = encode_request(Code.ACCESS_REQUEST, 1, [], SECRET, rng=DeterministicRandom(5))
    raw2 = encode_request(Code.ACCESS_REQUEST, 1, [], SECRET, rng=DeterministicRandom(5))
    raw3 = encode_request(Code.ACCESS_REQUEST, 1, [], SECRET, rng=DeterministicRandom(6))
    assert raw1 == raw2 != raw3
    assert decode(raw1).authenticator == DeterministicRandom(5).random_bytes(16)


def test_access_request_without_message_authenticator() -> None:
    bare = encode_request(
        Code.ACCESS_REQUEST,
        1,
        [(1, b"bob")],
        SECRET,
        authenticator=AUTH,
        message_authenticator=False,
    )
    p = decode(bare)
    assert p.message_authenticator is None
    assert not p.verify_message_authenticator(SECRET)
    assert check_request(p, SECRET) == "missing Message-Authenticator"
    assert check_request(p, SECRET, require_message_authenticator=False) is None
    with_eap = _access_request(message_authenticator=False)
    # RFC 3579 §3.3: EAP-Message without Message-Authenticator is dropped, whatever the policy
    assert (
        check_request(decode(with_eap), SECRET, require_message_authenticator=False)
        == "EAP-Message without Message-Authenticator"
    )


def test_accounting_request_authenticator() -> None:
    attrs: list[Attribute] = [
        (rd.Attr.ACCT_STATUS_TYPE, rd.encode_integer(rd.AcctStatusType.START)),
        (rd.Attr.ACCT_SESSION_ID, b"0001"),
        (rd.Attr.USER_NAME, b"alice"),
    ]
    raw = encode_request(Code.ACCOUNTING_REQUEST, 3, attrs, SECRET)
    p = decode(raw)
    # RFC 2866 §3: MD5(Code+Identifier+Length+16 zero octets+attributes+secret)
    assert raw[4:20] == hashlib.md5(raw[:4] + bytes(16) + raw[20:] + SECRET).digest()
    assert p.message_authenticator is None
    assert p.verify_request_authenticator(SECRET)
    assert check_request(p, SECRET) is None
    assert check_request(p, b"other") == "bad Request Authenticator"
    with pytest.raises(ValueError, match="computed"):
        encode_request(Code.ACCOUNTING_REQUEST, 3, attrs, SECRET, authenticator=AUTH)


def test_accounting_request_with_message_authenticator() -> None:
    raw = encode_request(
        Code.ACCOUNTING_REQUEST, 3, [(44, b"s")], SECRET, message_authenticator=True
    )
    p = decode(raw)
    assert p.attributes[0][0] == rd.Attr.MESSAGE_AUTHENTICATOR
    # computed with 16 zero octets in the Authenticator field
    zeroed = raw[:4] + bytes(16) + raw[20:22] + bytes(16) + raw[38:]
    assert p.message_authenticator == hmac.digest(SECRET, zeroed, "md5")
    assert check_request(p, SECRET) is None


def test_status_server_requires_message_authenticator() -> None:
    raw = encode_request(Code.STATUS_SERVER, 9, [], SECRET, authenticator=AUTH)
    assert check_request(decode(raw), SECRET) is None
    bare = encode_request(
        Code.STATUS_SERVER, 9, [], SECRET, authenticator=AUTH, message_authenticator=False
    )
    assert check_request(decode(bare), SECRET) == "Status-Server without Message-Authenticator"


def test_a_reply_is_not_a_request() -> None:
    request = decode(_access_request())
    reply = decode(encode_reply(Code.ACCESS_ACCEPT, request, [], SECRET))
    assert check_request(reply, SECRET) == "code 2 is not a request"


# -- replies -------------------------------------------------------------------------------


def test_reply_authenticators() -> None:
    request = decode(_access_request())
    eap = bytes(range(256)) * 3
    raw = encode_reply(
        Code.ACCESS_CHALLENGE,
        request,
        [*eap_message_attributes(eap), (rd.Attr.STATE, b"s" * 16)],
        SECRET,
    )
    reply = decode(raw)
    assert reply.identifier == request.identifier
    assert reply.attributes[0][0] == rd.Attr.MESSAGE_AUTHENTICATOR
    assert reply.eap_message() == eap
    assert verify_reply(reply, request.authenticator, SECRET) is None
    # Message-Authenticator with the Request Authenticator in the field (RFC 3579 §3.2)
    signed = raw[:4] + request.authenticator + raw[20:22] + bytes(16) + raw[38:]
    assert reply.message_authenticator == hmac.digest(SECRET, signed, "md5")
    # Response Authenticator over the finished packet (RFC 2865 §3)
    assert raw[4:20] == hashlib.md5(raw[:4] + request.authenticator + raw[20:] + SECRET).digest()
    assert verify_reply(reply, bytes(16), SECRET) == "bad Response Authenticator"
    assert verify_reply(reply, request.authenticator, b"other") == "bad Response Authenticator"


def test_reply_with_good_response_but_bad_message_authenticator() -> None:
    request = decode(_access_request())
    raw = bytearray(encode_reply(Code.ACCESS_ACCEPT, request, [(18, b"hi")], SECRET))
    raw[25] ^= 1  # inside the Message-Authenticator value
    # recompute the Response Authenticator so only the MAC is wrong
    raw[4:20] = hashlib.md5(
        bytes(raw[:4]) + request.authenticator + bytes(raw[20:]) + SECRET
    ).digest()
    assert (
        verify_reply(decode(bytes(raw)), request.authenticator, SECRET)
        == "bad Message-Authenticator"
    )


def test_reply_copies_proxy_state_in_order() -> None:
    attrs: list[Attribute] = [(33, b"first"), (1, b"u"), (33, b"second")]
    request = decode(encode_request(Code.ACCESS_REQUEST, 1, attrs, SECRET, authenticator=AUTH))
    reply = decode(encode_reply(Code.ACCESS_REJECT, request, [(18, b"no")], SECRET))
    assert reply.attributes[1:] == [(18, b"no"), (33, b"first"), (33, b"second")]
    plain = decode(
        encode_reply(Code.ACCESS_REJECT, request, [(18, b"no")], SECRET, copy_proxy_state=False)
    )
    assert plain.get_all(33) == []


def test_accounting_response() -> None:
    request = decode(encode_request(Code.ACCOUNTING_REQUEST, 4, [(44, b"x")], SECRET))
    raw = encode_reply(Code.ACCOUNTING_RESPONSE, request, [], SECRET)
    reply = decode(raw)
    assert reply.message_authenticator is None
    assert (
        verify_reply(reply, request.authenticator, SECRET, request_code=Code.ACCOUNTING_REQUEST)
        is None
    )
    signed = decode(
        encode_reply(Code.ACCOUNTING_RESPONSE, request, [], SECRET, message_authenticator=True)
    )
    # zeros in the field for an Accounting-Response (as FreeRADIUS and pyrad compute it)
    assert signed.verify_message_authenticator(
        SECRET, request.authenticator, Code.ACCOUNTING_REQUEST
    )
    assert verify_reply(signed, request.authenticator, SECRET, request_code=4) is None


def test_reply_to_status_server() -> None:
    request = decode(encode_request(Code.STATUS_SERVER, 2, [], SECRET, authenticator=AUTH))
    for code in (Code.ACCESS_ACCEPT, Code.ACCOUNTING_RESPONSE):
        reply = decode(encode_reply(code, request, [], SECRET))
        assert reply.message_authenticator is not None
        assert verify_reply(reply, AUTH, SECRET, request_code=Code.STATUS_SERVER) is None


def test_encoders_refuse_what_cannot_be_sent() -> None:
    request = decode(_access_request())
    with pytest.raises(ValueError, match="253"):
        encode(1, 1, AUTH, [(79, bytes(254))])
    with pytest.raises(ValueError, match="Message-Authenticator"):
        encode_reply(2, request, [(80, bytes(16))], SECRET)
    with pytest.raises(ValueError, match="Message-Authenticator"):
        encode_request(1, 1, [(80, bytes(16))], SECRET)
    with pytest.raises(ValueError, match="identifier"):
        encode(1, 256, AUTH, [])
    with pytest.raises(ValueError, match="code"):
        encode(-1, 1, AUTH, [])
    with pytest.raises(ValueError, match="authenticator"):
        encode(1, 1, b"short", [])
    with pytest.raises(ValueError, match="authenticator"):
        encode_request(1, 1, [], SECRET, authenticator=b"short")
    with pytest.raises(ValueError, match="4096"):
        encode(1, 1, AUTH, eap_message_attributes(bytes(4100)))
    with pytest.raises(ValueError, match="4096"):
        encode_reply(11, request, eap_message_attributes(bytes(4050)), SECRET)
    with pytest.raises(ValueError, match="4096"):
        encode_request(1, 1, eap_message_attributes(bytes(4050)), SECRET)


# -- EAP-Message (RFC 3579 §3.1) -------------------------------------------------------------


@given(st.binary(max_size=3000))
def test_eap_message_split_and_join(eap: bytes) -> None:
    attrs = eap_message_attributes(eap)
    assert all(t == rd.Attr.EAP_MESSAGE for t, _ in attrs)
    assert all(len(v) == 253 for _, v in attrs[:-1])
    assert 0 < len(attrs[-1][1]) <= 253 or eap == b""
    p = Packet(1, 0, AUTH, [(1, b"u"), *attrs, (24, b"s")])
    assert p.eap_message() == eap


def test_eap_message_absent_and_empty() -> None:
    assert Packet(1, 0, AUTH, [(1, b"u")]).eap_message() is None
    assert eap_message_attributes(b"") == [(79, b"")]
    assert decode(encode(1, 0, AUTH, [(79, b"")])).eap_message() == b""


# -- decoder strictness --------------------------------------------------------------------


def _raw(attrs: bytes, length: int | None = None) -> bytes:
    n = 20 + len(attrs) if length is None else length
    return bytes([1, 0]) + n.to_bytes(2, "big") + AUTH + attrs


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "header truncated"),
        (_raw(b"")[:19], "header truncated"),
        (_raw(b"", 19), "Length 19"),
        (_raw(b"", 4097) + bytes(4077), "Length 4097"),
        (_raw(b"", 24), "beyond"),
        (_raw(b"\x01\x01"), "attribute length 1"),
        (_raw(b"\x01\x00"), "attribute length 0"),
        (_raw(b"\x01\x05ab"), "attribute length 5"),
        (_raw(b"\x01"), "truncated attribute header"),
        (_raw(b"\x01\x03a\x01"), "truncated attribute header"),
        (_raw(b"\x50\x11" + bytes(15)), "Message-Authenticator length"),
        (_raw(b"\x50\x12" + bytes(16) + b"\x50\x12" + bytes(16)), "second Message-Authenticator"),
    ],
)
def test_decode_refuses(data: bytes, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        decode(data)


def test_decode_ignores_padding_and_accepts_buffers() -> None:
    raw = _access_request()
    p = decode(raw + b"\x00\xff" * 10)
    assert p.raw == raw
    assert check_request(p, SECRET) is None
    assert decode(bytearray(raw)) == decode(memoryview(raw)) == decode(raw)


def test_packet_accessors() -> None:
    p = Packet(
        1,
        0,
        AUTH,
        [
            (1, b"alice"),
            (5, b"\x00\x00\x00\x07"),
            (1, b"again"),
            rd.vsa(311, 26, b"S=00"),
            rd.vsa(9, 1, b"cisco"),
            (26, b"\x00\x00\x01\x37\x01"),  # Microsoft, but malformed
        ],
    )
    assert p.get(1) == b"alice"
    assert p.get(2) is None
    assert p.get_all(1) == [b"alice", b"again"]
    assert p.get_text(1) == "alice"
    assert p.get_text(2) is None
    assert p.get_integer(5) == 7
    assert p.get_integer(6) is None
    assert p.get_vendor(9, 1) == b"cisco"
    assert p.get_vendor(9, 2) is None
    assert p.vendor_attributes(12345) == []
    with pytest.raises(DecodeError):
        p.vendor_attributes(311)
    with pytest.raises(DecodeError):
        Packet(1, 0, AUTH, [(1, b"\xff")]).get_text(1)
    with pytest.raises(DecodeError):
        Packet(1, 0, AUTH, [(5, b"\x01")]).get_integer(5)
    # no attribute values in the repr: they can be secrets
    assert "alice" not in repr(p)
    assert p != Packet(1, 0, AUTH, [])
    assert p != "packet"


# -- properties ----------------------------------------------------------------------------

_values = st.binary(max_size=253)
_attributes = st.lists(
    st.tuples(st.integers(0, 255).filter(lambda t: t != 80), _values), max_size=12
)


@given(st.integers(0, 255), st.integers(0, 255), st.binary(min_size=16, max_size=16), _attributes)
def test_plain_codec_round_trips(
    code: int, identifier: int, authenticator: bytes, attributes: list[Attribute]
) -> None:
    raw = encode(code, identifier, authenticator, attributes)
    p = decode(raw)
    assert (p.code, p.identifier, p.authenticator, p.attributes) == (
        code,
        identifier,
        authenticator,
        attributes,
    )
    assert p.raw == raw


@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        p = decode(data)
    except DecodeError:
        return
    # whatever decodes can be checked without any other exception
    check_request(p, SECRET)
    verify_reply(p, AUTH, SECRET)
    p.eap_message()
    with contextlib.suppress(DecodeError):
        p.vendor_attributes(311)


@given(st.binary(min_size=20, max_size=300), st.integers(0, 0xFFFF))
def test_any_length_field_decodes_or_raises_decode_error(data: bytes, length: int) -> None:
    data = data[:2] + length.to_bytes(2, "big") + data[4:]
    with contextlib.suppress(DecodeError):
        decode(data)


@given(
    st.sampled_from([Code.ACCESS_REQUEST, Code.STATUS_SERVER, Code.ACCOUNTING_REQUEST]),
    _attributes.filter(lambda a: sum(len(v) + 2 for _, v in a) < 3000),
    st.data(),
)
def test_any_change_to_a_signed_request_is_detected(
    code: Code, attributes: list[Attribute], data: st.DataObject
) -> None:
    raw = encode_request(code, 5, attributes, SECRET, rng=DeterministicRandom(1))
    assert check_request(decode(raw), SECRET) is None
    i = data.draw(st.integers(0, len(raw) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(raw)
    changed[i] ^= flip
    try:
        p = decode(bytes(changed))
    except DecodeError:
        return
    assert check_request(p, SECRET) is not None


@given(
    st.sampled_from([Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE]),
    _attributes.filter(lambda a: sum(len(v) + 2 for _, v in a) < 3000),
    st.data(),
)
def test_any_change_to_a_signed_reply_is_detected(
    code: Code, attributes: list[Attribute], data: st.DataObject
) -> None:
    request = decode(_access_request())
    raw = encode_reply(code, request, attributes, SECRET)
    assert verify_reply(decode(raw), AUTH, SECRET) is None
    i = data.draw(st.integers(0, len(raw) - 1), label="index")
    changed = bytearray(raw)
    changed[i] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        p = decode(bytes(changed))
    except DecodeError:
        return
    assert verify_reply(p, AUTH, SECRET) is not None
