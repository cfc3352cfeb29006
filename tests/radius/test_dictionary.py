"""The built-in attribute dictionary and value codecs (RFC 2865 §5, RFC 2548)."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import DecodeError
from eapkit.radius import dictionary as rd


def test_dictionary_is_consistent() -> None:
    assert len(rd.BY_NAME) == len(rd.DICTIONARY)
    assert len(rd.BY_NUMBER) == len(rd.DICTIONARY)
    standard = {d.number for d in rd.DICTIONARY if d.vendor == 0}
    assert standard == {a.value for a in rd.Attr}
    microsoft = {d.number for d in rd.DICTIONARY if d.vendor == rd.VENDOR_MICROSOFT}
    assert microsoft == {a.value for a in rd.MsAttr}
    assert rd.lookup("EAP-Message").number == 79
    assert rd.lookup("Message-Authenticator").number == 80
    assert rd.lookup("EAP-Key-Name").number == 102
    assert rd.lookup("Framed-Pool").number == 88
    assert rd.lookup("MS-MPPE-Send-Key") == rd.AttributeDef(
        "MS-MPPE-Send-Key", 16, rd.DataType.OCTETS, 311, rd.Hiding.SALTED
    )
    assert rd.lookup("User-Password").hiding is rd.Hiding.USER_PASSWORD
    with pytest.raises(KeyError):
        rd.lookup("No-Such-Attribute")


def test_value_codecs() -> None:
    assert rd.encode_integer(0x01020304) == b"\x01\x02\x03\x04"
    assert rd.decode_integer(b"\xff\xff\xff\xff") == 0xFFFFFFFF
    assert rd.encode_ipv4("192.168.1.16") == b"\xc0\xa8\x01\x10"
    assert rd.decode_ipv4(b"\xc0\xa8\x01\x10") == IPv4Address("192.168.1.16")
    assert rd.decode_ipv6(rd.encode_ipv6("2001:db8::1")) == IPv6Address("2001:db8::1")
    assert rd.decode_text("héllo".encode()) == "héllo"
    assert rd.encode_value("Session-Timeout", 3600) == b"\x00\x00\x0e\x10"
    assert rd.encode_value("Framed-IP-Address", "10.0.0.7") == b"\x0a\x00\x00\x07"
    assert rd.encode_value("NAS-IPv6-Address", "::1") == bytes(15) + b"\x01"
    assert rd.encode_value("User-Name", "alice") == b"alice"
    assert rd.encode_value(rd.lookup("Class"), b"\x00\x01") == b"\x00\x01"
    assert rd.decode_value("Event-Timestamp", b"\x65\x00\x00\x00") == 0x65000000
    assert rd.decode_value("State", b"\x01") == b"\x01"
    for bad in (-1, 2**32):
        with pytest.raises(ValueError):
            rd.encode_integer(bad)
    with pytest.raises(ValueError, match="cannot hold"):
        rd.encode_value("Session-Timeout", "3600")
    with pytest.raises(ValueError, match="cannot hold"):
        rd.encode_value("User-Name", b"bytes")
    with pytest.raises(ValueError):
        rd.encode_text("x" * 254)
    with pytest.raises(ValueError):
        rd.encode_value("State", bytes(254))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("NAS-Port", b"\x00\x01"),
        ("NAS-IP-Address", b"\x01\x02\x03"),
        ("NAS-IPv6-Address", bytes(4)),
        ("User-Name", b"\xc3\x28"),
        ("Event-Timestamp", bytes(5)),
    ],
)
def test_value_decoders_refuse(name: str, data: bytes) -> None:
    with pytest.raises(DecodeError):
        rd.decode_value(name, data)


def test_vsa_layout() -> None:
    # RFC 2865 §5.26: Vendor-Id, then vendor-type, vendor-length (itself included), value
    assert rd.encode_vsa(311, 26, b"S=1") == b"\x00\x00\x01\x37\x1a\x05S=1"
    assert rd.vsa(311, 26, b"S=1") == (26, b"\x00\x00\x01\x37\x1a\x05S=1")
    assert rd.decode_vsa(b"\x00\x00\x01\x37\x1a\x05S=1\x02\x02") == (311, [(26, b"S=1"), (2, b"")])
    assert rd.decode_vsa(b"\x00\x00\x00\x09\x01\x02") == (9, [(1, b"")])
    for bad_args in ((2**24, 1, b""), (311, 256, b""), (311, 1, bytes(248))):
        with pytest.raises(ValueError):
            rd.encode_vsa(*bad_args)
    assert len(rd.encode_vsa(311, 1, bytes(247))) == 253


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x01\x37",  # no sub-attribute
        b"\x01\x00\x01\x37\x01\x02",  # high octet of Vendor-Id not 0
        b"\x00\x00\x01\x37\x01",  # truncated sub-attribute header
        b"\x00\x00\x01\x37\x01\x01",  # sub-attribute length 1
        b"\x00\x00\x01\x37\x01\x04a",  # runs past the end
    ],
)
def test_decode_vsa_refuses(data: bytes) -> None:
    with pytest.raises(DecodeError):
        rd.decode_vsa(data)


@given(
    st.integers(0, 0xFFFFFF),
    st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), min_size=1, max_size=5),
)
def test_vsa_round_trip(vendor: int, subs: list[tuple[int, bytes]]) -> None:
    data = vendor.to_bytes(4, "big") + b"".join(bytes((t, len(v) + 2)) + v for t, v in subs)
    assert rd.decode_vsa(data) == (vendor, subs)
    t, v = subs[0]
    assert rd.decode_vsa(rd.encode_vsa(vendor, t, v)) == (vendor, [(t, v)])


@given(st.binary(max_size=300))
def test_decode_vsa_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        rd.decode_vsa(data)


@given(st.sampled_from(rd.DICTIONARY), st.binary(max_size=253))
def test_decode_value_arbitrary_bytes(d: rd.AttributeDef, data: bytes) -> None:
    try:
        value = rd.decode_value(d, data)
    except DecodeError:
        return
    # what decodes encodes back to the same octets
    assert rd.encode_value(d, value) == data


@given(st.data())
def test_value_round_trip(data: st.DataObject) -> None:
    d = data.draw(st.sampled_from(rd.DICTIONARY))
    value: rd.Value
    if d.type is rd.DataType.TEXT:
        value = data.draw(st.text(max_size=60))
    elif d.type in (rd.DataType.INTEGER, rd.DataType.DATE):
        value = data.draw(st.integers(0, 2**32 - 1))
    elif d.type is rd.DataType.IPADDR:
        value = IPv4Address(data.draw(st.integers(0, 2**32 - 1)))
    elif d.type is rd.DataType.IPV6ADDR:
        value = IPv6Address(data.draw(st.integers(0, 2**128 - 1)))
    else:
        value = data.draw(st.binary(max_size=253))
    assert rd.decode_value(d, rd.encode_value(d, value)) == value
