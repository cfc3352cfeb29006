"""pyrad 2.6 as an independent oracle for eapkit's RADIUS codec.

What eapkit encodes, pyrad decodes to the same values and accepts as authentic; what
pyrad encodes, eapkit decodes to the same values and accepts as authentic.  pyrad reads
the hand-written dictionary next to this file, not eapkit's.  Every attribute of
eapkit's dictionary goes through both directions.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pyrad_packet = pytest.importorskip("pyrad.packet")
pyrad_dictionary = pytest.importorskip("pyrad.dictionary")

from eapkit.radius import dictionary as rd  # noqa: E402
from eapkit.radius.hiding import hide_password, unhide_password  # noqa: E402
from eapkit.radius.mppe import (  # noqa: E402
    mppe_key_attributes,
    mppe_keys_from_msk,
    recover_mppe_keys,
)
from eapkit.radius.packet import (  # noqa: E402
    Attribute,
    Code,
    Packet,
    check_request,
    decode,
    eap_message_attributes,
    encode_reply,
    encode_request,
    verify_reply,
)
from eapkit.rand import DeterministicRandom  # noqa: E402

DICT = pyrad_dictionary.Dictionary(str(Path(__file__).with_name("dictionary.pyrad")))
SECRET = b"oracle-secret"
AUTH = bytes.fromhex("00112233445566778899aabbccddeeff")
MSK = bytes(range(100, 164))

# Carried by the codec itself, not as values: tested on their own below.
_SPECIAL = {"Vendor-Specific", "Message-Authenticator", "User-Password"}
PLAIN = [d for d in rd.DICTIONARY if d.name not in _SPECIAL and d.hiding is rd.Hiding.NONE]


def test_the_oracle_dictionary_agrees_on_numbers_and_types() -> None:
    pyrad_type = {
        rd.DataType.TEXT: "string",
        rd.DataType.OCTETS: "octets",
        rd.DataType.INTEGER: "integer",
        rd.DataType.DATE: "date",
        rd.DataType.IPADDR: "ipaddr",
        rd.DataType.IPV6ADDR: "ipv6addr",
    }
    for d in rd.DICTIONARY:
        if d.type is rd.DataType.VSA:
            continue  # pyrad has no such type; it reads VENDOR blocks
        a = DICT.attributes[d.name]
        assert a.code == d.number, d.name
        assert a.type == pyrad_type[d.type], d.name
        assert (DICT.vendors.GetForward(a.vendor) if a.vendor else 0) == d.vendor, d.name
        assert a.encrypt == d.hiding.value, d.name


# -- values ------------------------------------------------------------------------------


def _value(d: rd.AttributeDef) -> st.SearchStrategy[Any]:
    if d.type is rd.DataType.TEXT:
        return st.text(min_size=1, max_size=40)
    if d.type in (rd.DataType.INTEGER, rd.DataType.DATE):
        return st.integers(0, 2**32 - 1)
    if d.type is rd.DataType.IPADDR:
        return st.integers(0, 2**32 - 1).map(IPv4Address)
    if d.type is rd.DataType.IPV6ADDR:
        return st.integers(0, 2**128 - 1).map(IPv6Address)
    # pyrad reads octets that start with "0x" and hex digits as hex: keep clear of that
    return st.binary(min_size=1, max_size=80).filter(lambda b: not b.startswith(b"0x"))


def _as_pyrad(d: rd.AttributeDef, value: Any) -> Any:
    """The Python value pyrad uses for ``value`` (addresses are strings there)."""
    return str(value) if isinstance(value, IPv4Address | IPv6Address) else value


def _eapkit_attribute(d: rd.AttributeDef, value: Any) -> Attribute:
    raw = rd.encode_value(d, value)
    return rd.vsa(d.vendor, d.number, raw) if d.vendor else (d.number, raw)


def _eapkit_values(d: rd.AttributeDef, attributes: list[Attribute]) -> list[Any]:
    if d.vendor:
        subs = Packet(1, 0, AUTH, attributes).vendor_attributes(d.vendor)
        return [rd.decode_value(d, v) for t, v in subs if t == d.number]
    return [rd.decode_value(d, v) for t, v in attributes if t == d.number]


@settings(max_examples=40)
@pytest.mark.parametrize("d", PLAIN, ids=[d.name for d in PLAIN])
@given(data=st.data())
def test_every_attribute_eapkit_to_pyrad(d: rd.AttributeDef, data: st.DataObject) -> None:
    values = data.draw(st.lists(_value(d), min_size=1, max_size=3), label="values")
    attrs = [_eapkit_attribute(d, v) for v in values]
    raw = encode_request(Code.ACCESS_REQUEST, 9, attrs, SECRET, authenticator=AUTH)
    pkt = pyrad_packet.AuthPacket(packet=raw, secret=SECRET, dict=DICT)
    assert pkt.verify_message_authenticator()
    assert pkt[d.name] == [_as_pyrad(d, v) for v in values]


@settings(max_examples=40)
@pytest.mark.parametrize("d", PLAIN, ids=[d.name for d in PLAIN])
@given(data=st.data())
def test_every_attribute_pyrad_to_eapkit(d: rd.AttributeDef, data: st.DataObject) -> None:
    values = data.draw(st.lists(_value(d), min_size=1, max_size=3), label="values")
    pkt = pyrad_packet.AuthPacket(code=1, id=9, secret=SECRET, authenticator=AUTH, dict=DICT)
    for v in values:
        pkt.AddAttribute(d.name, _as_pyrad(d, v))
    pkt.add_message_authenticator()
    p = decode(pkt.RequestPacket())
    assert check_request(p, SECRET) is None
    assert _eapkit_values(d, p.attributes) == values


# -- Access-Request / Access-Challenge / Access-Accept, both ways ----------------------------


def test_eapkit_access_request_to_pyrad() -> None:
    eap = bytes(range(256)) * 2  # 512 octets: three EAP-Message attributes
    attrs: list[Attribute] = [
        (rd.Attr.USER_NAME, b"alice@example.org"),
        (rd.Attr.USER_PASSWORD, hide_password(b"p\xc3\xa4ssword", SECRET, AUTH)),
        (rd.Attr.NAS_IP_ADDRESS, rd.encode_ipv4("10.1.2.3")),
        *eap_message_attributes(eap),
        (rd.Attr.STATE, b"\x00" * 16),
        (rd.Attr.PROXY_STATE, b"proxy"),
    ]
    raw = encode_request(Code.ACCESS_REQUEST, 200, attrs, SECRET, authenticator=AUTH)
    pkt = pyrad_packet.AuthPacket(packet=raw, secret=SECRET, dict=DICT)
    assert (pkt.code, pkt.id, pkt.authenticator) == (1, 200, AUTH)
    assert pkt.verify_message_authenticator()
    assert not pkt.verify_message_authenticator(secret=b"other")
    assert next(iter(pkt.keys())) == "Message-Authenticator"
    assert b"".join(pkt["EAP-Message"]) == eap
    assert pkt.PwDecrypt(pkt["User-Password"][0]) == "pässword"
    assert pkt["NAS-IP-Address"] == ["10.1.2.3"]


def test_pyrad_access_request_to_eapkit() -> None:
    pkt = pyrad_packet.AuthPacket(code=1, id=17, secret=SECRET, authenticator=AUTH, dict=DICT)
    pkt.AddAttribute("User-Name", "bob")
    pkt["User-Password"] = pkt.PwCrypt("x" * 128)
    pkt.AddAttribute("EAP-Message", b"\x02\x05\x00\x08\x01bob")
    pkt.AddAttribute("Calling-Station-Id", "02-00-00-00-00-01")
    pkt.add_message_authenticator()
    p = decode(pkt.RequestPacket())
    assert check_request(p, SECRET) is None
    assert check_request(p, b"other") == "bad Message-Authenticator"
    assert p.identifier == 17
    assert p.eap_message() == b"\x02\x05\x00\x08\x01bob"
    hidden = p.get(rd.Attr.USER_PASSWORD)
    assert hidden is not None
    assert unhide_password(hidden, SECRET, p.authenticator) == b"x" * 128
    assert p.get_text(rd.Attr.CALLING_STATION_ID) == "02-00-00-00-00-01"


def _pyrad_request() -> Any:
    pkt = pyrad_packet.AuthPacket(code=1, id=33, secret=SECRET, authenticator=AUTH, dict=DICT)
    pkt.AddAttribute("User-Name", "carol")
    pkt.AddAttribute("Proxy-State", b"ps1")
    pkt.AddAttribute("Proxy-State", b"ps2")
    pkt.add_message_authenticator()
    return pkt


def test_eapkit_access_challenge_verified_by_pyrad() -> None:
    request_pkt = _pyrad_request()
    request = decode(request_pkt.RequestPacket())
    eap = bytes(range(200))
    raw = encode_reply(
        Code.ACCESS_CHALLENGE,
        request,
        [
            *eap_message_attributes(eap),
            (rd.Attr.STATE, b"S" * 16),
            (rd.Attr.REPLY_MESSAGE, b"Enter code"),
        ],
        SECRET,
    )
    reply = request_pkt.CreateReply(packet=raw)
    assert request_pkt.VerifyReply(reply, raw, enforce_ma=True)
    assert reply.code == 11
    assert reply["EAP-Message"] == [eap]
    assert reply["State"] == [b"S" * 16]
    assert reply["Reply-Message"] == ["Enter code"]
    assert reply["Proxy-State"] == [b"ps1", b"ps2"]
    # a forged byte is caught by pyrad too
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    assert not request_pkt.VerifyReply(request_pkt.CreateReply(packet=forged), forged)


def test_eapkit_access_accept_with_keys_to_pyrad() -> None:
    request_pkt = _pyrad_request()
    request = decode(request_pkt.RequestPacket())
    attrs: list[Attribute] = [
        (rd.Attr.USER_NAME, b"carol@inner"),
        (rd.Attr.CLASS, b"class-1"),
        (rd.Attr.SESSION_TIMEOUT, rd.encode_integer(3600)),
        (rd.Attr.FRAMED_IP_ADDRESS, rd.encode_ipv4("10.9.8.7")),
        (rd.Attr.FRAMED_POOL, b"pool-a"),
        (rd.Attr.EAP_KEY_NAME, b"\x0d" + bytes(64)),
        *eap_message_attributes(b"\x03\x05\x00\x04"),
        *mppe_key_attributes(MSK, SECRET, request.authenticator, DeterministicRandom(3)),
    ]
    raw = encode_reply(Code.ACCESS_ACCEPT, request, attrs, SECRET)
    reply = request_pkt.CreateReply(packet=raw)
    reply.request_authenticator = request_pkt.authenticator  # pyrad needs it to unsalt
    assert request_pkt.VerifyReply(reply, raw, enforce_ma=True)
    keys = mppe_keys_from_msk(MSK)
    assert reply["MS-MPPE-Send-Key"] == [keys.send]
    assert reply["MS-MPPE-Recv-Key"] == [keys.recv]
    assert reply["Session-Timeout"] == [3600]
    assert reply["Framed-IP-Address"] == ["10.9.8.7"]
    assert reply["Framed-Pool"] == ["pool-a"]
    assert reply["EAP-Key-Name"] == [b"\x0d" + bytes(64)]
    assert reply["User-Name"] == ["carol@inner"]
    assert reply["Class"] == [b"class-1"]


def test_pyrad_access_accept_with_keys_to_eapkit() -> None:
    request_pkt = _pyrad_request()
    raw_request = request_pkt.RequestPacket()
    reply_pkt = request_pkt.CreateReply()
    reply_pkt.code = 2
    keys = mppe_keys_from_msk(MSK)
    reply_pkt.AddAttribute("MS-MPPE-Send-Key", keys.send)
    reply_pkt.AddAttribute("MS-MPPE-Recv-Key", keys.recv)
    reply_pkt.AddAttribute("EAP-Message", b"\x03\x05\x00\x04")
    reply_pkt.AddAttribute("Reply-Message", "welcome")
    raw = reply_pkt.ReplyPacket()
    reply = decode(raw)
    request = decode(raw_request)
    assert verify_reply(reply, request.authenticator, SECRET) is None
    assert verify_reply(reply, request.authenticator, b"other") == "bad Response Authenticator"
    assert recover_mppe_keys(reply, SECRET, request.authenticator) == keys
    assert reply.eap_message() == b"\x03\x05\x00\x04"
    assert reply.get_text(rd.Attr.REPLY_MESSAGE) == "welcome"
    assert reply.get_all(rd.Attr.PROXY_STATE) == [b"ps1", b"ps2"]


def test_pyrad_access_reject_to_eapkit() -> None:
    request_pkt = _pyrad_request()
    request = decode(request_pkt.RequestPacket())
    reply_pkt = request_pkt.CreateReply()
    reply_pkt.code = 3
    reply_pkt.AddAttribute("Reply-Message", "no")
    reply = decode(reply_pkt.ReplyPacket())
    assert verify_reply(reply, request.authenticator, SECRET) is None
    assert reply.code == Code.ACCESS_REJECT


# -- accounting and Status-Server ----------------------------------------------------------


def _accounting_attributes(status: rd.AcctStatusType) -> list[Attribute]:
    return [
        (rd.Attr.ACCT_STATUS_TYPE, rd.encode_integer(status)),
        (rd.Attr.ACCT_SESSION_ID, b"sess-0001"),
        (rd.Attr.USER_NAME, b"alice"),
        (rd.Attr.ACCT_INPUT_OCTETS, rd.encode_integer(123456)),
        (rd.Attr.ACCT_OUTPUT_OCTETS, rd.encode_integer(654321)),
        (rd.Attr.ACCT_INPUT_GIGAWORDS, rd.encode_integer(1)),
        (rd.Attr.ACCT_SESSION_TIME, rd.encode_integer(60)),
        (rd.Attr.EVENT_TIMESTAMP, rd.encode_date(1_700_000_000)),
    ]


@pytest.mark.parametrize("status", list(rd.AcctStatusType)[:3])
def test_eapkit_accounting_request_to_pyrad(status: rd.AcctStatusType) -> None:
    raw = encode_request(Code.ACCOUNTING_REQUEST, 4, _accounting_attributes(status), SECRET)
    pkt = pyrad_packet.AcctPacket(packet=raw, secret=SECRET, dict=DICT)
    assert pkt.VerifyAcctRequest()
    assert pkt["Acct-Status-Type"] == [int(status)]
    assert pkt["Acct-Session-Id"] == ["sess-0001"]
    assert pkt["Acct-Output-Octets"] == [654321]
    assert pkt["Event-Timestamp"] == [1_700_000_000]
    # and eapkit's Accounting-Response is verified by pyrad
    response = encode_reply(Code.ACCOUNTING_RESPONSE, decode(raw), [], SECRET)
    assert pkt.VerifyReply(pkt.CreateReply(packet=response), response)


def test_pyrad_accounting_request_to_eapkit() -> None:
    pkt = pyrad_packet.AcctPacket(code=4, id=8, secret=SECRET, dict=DICT)
    pkt.AddAttribute("Acct-Status-Type", 3)
    pkt.AddAttribute("Acct-Session-Id", "s-2")
    pkt.AddAttribute("Acct-Input-Octets", 42)
    raw = pkt.RequestPacket()
    p = decode(raw)
    assert check_request(p, SECRET) is None
    assert check_request(p, b"other") == "bad Request Authenticator"
    assert p.get_integer(rd.Attr.ACCT_STATUS_TYPE) == rd.AcctStatusType.INTERIM_UPDATE
    assert p.get_integer(rd.Attr.ACCT_INPUT_OCTETS) == 42
    reply_pkt = pkt.CreateReply()
    reply = decode(reply_pkt.ReplyPacket())
    assert (
        verify_reply(reply, p.authenticator, SECRET, request_code=Code.ACCOUNTING_REQUEST) is None
    )
    # pyrad with a Message-Authenticator in the Accounting-Request
    signed = pyrad_packet.AcctPacket(code=4, id=9, secret=SECRET, dict=DICT)
    signed.AddAttribute("Acct-Session-Id", "s-3")
    signed.add_message_authenticator()
    q = decode(signed.RequestPacket())
    assert q.message_authenticator is not None
    assert check_request(q, SECRET) is None


def test_status_server_both_ways() -> None:
    raw = encode_request(Code.STATUS_SERVER, 1, [], SECRET, authenticator=AUTH)
    pkt = pyrad_packet.AuthPacket(packet=raw, secret=SECRET, dict=DICT)
    assert pkt.code == 12
    assert pkt.verify_message_authenticator()
    theirs = pyrad_packet.AcctPacket(code=12, id=2, secret=SECRET, dict=DICT)
    request = decode(theirs.RequestPacket())
    assert check_request(request, SECRET) is None
    reply = encode_reply(Code.ACCOUNTING_RESPONSE, request, [], SECRET)
    assert theirs.VerifyReply(theirs.CreateReply(packet=reply), reply, enforce_ma=True)
