"""The RADIUS attributes eapkit speaks, and their value types.

A RADIUS attribute is Type (one octet), Length (one octet, header included) and Value
(RFC 2865 §5).  eapkit's codec keeps attributes as ``(type, value_bytes)`` pairs: this
module is the small built-in dictionary that gives the numbers names and says how to
turn a value into a Python value and back:

==========  ==========================================  ===========================
DataType    Python value                                RFC 2865 §5 (and RFC 8044)
==========  ==========================================  ===========================
TEXT        ``str`` (UTF-8, 1-253 octets)               "text"
OCTETS      ``bytes``                                   "string"
INTEGER     ``int`` (32-bit unsigned, big-endian)       "integer" / "enum"
DATE        ``int`` (seconds since 1970, 32-bit)        "time"
IPADDR      :class:`ipaddress.IPv4Address`              "address"
IPV6ADDR    :class:`ipaddress.IPv6Address`              RFC 3162 §2.4
VSA         ``bytes`` (see :func:`decode_vsa`)          §5.26 Vendor-Specific
==========  ==========================================  ===========================

Vendor-Specific (type 26) carries a 4-octet Vendor-Id and, in the format RFC 2865 §5.26
recommends, one or more ``vendor-type, vendor-length, value`` sub-attributes.  eapkit
uses Microsoft's (vendor 311, RFC 2548): the MS-MPPE keys that carry the MSK to the NAS,
and the MS-CHAP attributes; and names Cisco's Cisco-AVPair (vendor 9, type 1, text), which
a ``[[policy.groups]]`` entry may put in an Accept (:mod:`eapkit.directory.groups`).

Value decoders take untrusted bytes and raise only :class:`~eapkit.errors.DecodeError`;
value encoders raise ``ValueError`` for values that cannot be sent (a programming error).
"""

from __future__ import annotations

import struct
from enum import Enum, IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

from eapkit.errors import DecodeError

__all__ = [
    "BY_NAME",
    "BY_NUMBER",
    "CISCO_AVPAIR",
    "DICTIONARY",
    "MAX_VALUE_LENGTH",
    "VENDOR_CISCO",
    "VENDOR_MICROSOFT",
    "AcctStatusType",
    "AcctTerminateCause",
    "Attr",
    "AttributeDef",
    "DataType",
    "Hiding",
    "MsAttr",
    "NasPortType",
    "ServiceType",
    "Value",
    "decode_date",
    "decode_integer",
    "decode_ipv4",
    "decode_ipv6",
    "decode_text",
    "decode_value",
    "decode_vsa",
    "encode_date",
    "encode_integer",
    "encode_ipv4",
    "encode_ipv6",
    "encode_text",
    "encode_value",
    "encode_vsa",
    "lookup",
    "vsa",
]

MAX_VALUE_LENGTH = 253
"""Longest value one attribute can carry: 255 minus the Type and Length octets."""

VENDOR_MICROSOFT = 311
"""SMI Network Management Private Enterprise Code of Microsoft (RFC 2548 §2)."""

VENDOR_CISCO = 9
"""SMI Private Enterprise Code of Cisco (its RADIUS dictionary: Cisco-AVPair is type 1)."""
CISCO_AVPAIR = 1

_U32 = struct.Struct("!I")
_VSA_HEADER = struct.Struct("!IBB")


class Attr(IntEnum):
    """Attribute types (IANA "RADIUS Attribute Types"), the ones eapkit sends or reads."""

    USER_NAME = 1  # RFC 2865 §5.1
    USER_PASSWORD = 2  # RFC 2865 §5.2
    CHAP_PASSWORD = 3  # RFC 2865 §5.3
    NAS_IP_ADDRESS = 4  # RFC 2865 §5.4
    NAS_PORT = 5  # RFC 2865 §5.5
    SERVICE_TYPE = 6  # RFC 2865 §5.6
    FRAMED_PROTOCOL = 7  # RFC 2865 §5.7
    FRAMED_IP_ADDRESS = 8  # RFC 2865 §5.8
    FRAMED_IP_NETMASK = 9  # RFC 2865 §5.9
    FILTER_ID = 11  # RFC 2865 §5.11
    FRAMED_MTU = 12  # RFC 2865 §5.12
    REPLY_MESSAGE = 18  # RFC 2865 §5.18
    STATE = 24  # RFC 2865 §5.24
    CLASS = 25  # RFC 2865 §5.25
    VENDOR_SPECIFIC = 26  # RFC 2865 §5.26
    SESSION_TIMEOUT = 27  # RFC 2865 §5.27
    IDLE_TIMEOUT = 28  # RFC 2865 §5.28
    TERMINATION_ACTION = 29  # RFC 2865 §5.29
    CALLED_STATION_ID = 30  # RFC 2865 §5.30
    CALLING_STATION_ID = 31  # RFC 2865 §5.31
    NAS_IDENTIFIER = 32  # RFC 2865 §5.32
    PROXY_STATE = 33  # RFC 2865 §5.33
    ACCT_STATUS_TYPE = 40  # RFC 2866 §5.1
    ACCT_DELAY_TIME = 41  # RFC 2866 §5.2
    ACCT_INPUT_OCTETS = 42  # RFC 2866 §5.3
    ACCT_OUTPUT_OCTETS = 43  # RFC 2866 §5.4
    ACCT_SESSION_ID = 44  # RFC 2866 §5.5
    ACCT_AUTHENTIC = 45  # RFC 2866 §5.6
    ACCT_SESSION_TIME = 46  # RFC 2866 §5.7
    ACCT_INPUT_PACKETS = 47  # RFC 2866 §5.8
    ACCT_OUTPUT_PACKETS = 48  # RFC 2866 §5.9
    ACCT_TERMINATE_CAUSE = 49  # RFC 2866 §5.10
    ACCT_MULTI_SESSION_ID = 50  # RFC 2866 §5.11
    ACCT_LINK_COUNT = 51  # RFC 2866 §5.12
    ACCT_INPUT_GIGAWORDS = 52  # RFC 2869 §5.1
    ACCT_OUTPUT_GIGAWORDS = 53  # RFC 2869 §5.2
    EVENT_TIMESTAMP = 55  # RFC 2869 §5.3
    CHAP_CHALLENGE = 60  # RFC 2865 §5.40
    NAS_PORT_TYPE = 61  # RFC 2865 §5.41
    CONNECT_INFO = 77  # RFC 2869 §5.11
    EAP_MESSAGE = 79  # RFC 3579 §3.1
    MESSAGE_AUTHENTICATOR = 80  # RFC 3579 §3.2
    ACCT_INTERIM_INTERVAL = 85  # RFC 2869 §5.16
    NAS_PORT_ID = 87  # RFC 2869 §5.17
    FRAMED_POOL = 88  # RFC 2869 §5.18
    CHARGEABLE_USER_IDENTITY = 89  # RFC 4372 §2
    NAS_IPV6_ADDRESS = 95  # RFC 3162 §2.1
    ERROR_CAUSE = 101  # RFC 5176 §3.5
    EAP_KEY_NAME = 102  # RFC 4072 §6.2 (the EAP Session-Id, RFC 5247)


class MsAttr(IntEnum):
    """Microsoft vendor-specific attribute types (vendor 311, RFC 2548 §2)."""

    MS_CHAP_RESPONSE = 1  # RFC 2548 §2.1.3
    MS_CHAP_ERROR = 2  # RFC 2548 §2.1.5
    MS_MPPE_ENCRYPTION_POLICY = 7  # RFC 2548 §2.4.4
    MS_MPPE_ENCRYPTION_TYPES = 8  # RFC 2548 §2.4.5
    MS_CHAP_CHALLENGE = 11  # RFC 2548 §2.1.2
    MS_MPPE_SEND_KEY = 16  # RFC 2548 §2.4.2
    MS_MPPE_RECV_KEY = 17  # RFC 2548 §2.4.3
    MS_CHAP2_RESPONSE = 25  # RFC 2548 §2.3.2
    MS_CHAP2_SUCCESS = 26  # RFC 2548 §2.3.3


class AcctStatusType(IntEnum):
    """Acct-Status-Type values (RFC 2866 §5.1)."""

    START = 1
    STOP = 2
    INTERIM_UPDATE = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


class AcctTerminateCause(IntEnum):
    """A few Acct-Terminate-Cause values (RFC 2866 §5.10)."""

    USER_REQUEST = 1
    LOST_CARRIER = 2
    IDLE_TIMEOUT = 4
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    NAS_REBOOT = 11


class ServiceType(IntEnum):
    """Service-Type values (RFC 2865 §5.6)."""

    LOGIN = 1
    FRAMED = 2
    CALLBACK_LOGIN = 3
    CALLBACK_FRAMED = 4
    OUTBOUND = 5
    ADMINISTRATIVE = 6
    NAS_PROMPT = 7
    AUTHENTICATE_ONLY = 8
    CALLBACK_NAS_PROMPT = 9
    CALL_CHECK = 10
    CALLBACK_ADMINISTRATIVE = 11


class NasPortType(IntEnum):
    """A few NAS-Port-Type values (RFC 2865 §5.41, RFC 4603)."""

    ASYNC = 0
    VIRTUAL = 5
    ETHERNET = 15
    WIRELESS_802_11 = 19


class DataType(Enum):
    """How an attribute's value is laid out (RFC 2865 §5, RFC 8044 names in comments)."""

    TEXT = "text"
    OCTETS = "octets"  # "string"
    INTEGER = "integer"
    DATE = "date"  # "time"
    IPADDR = "ipaddr"  # "ipv4addr"
    IPV6ADDR = "ipv6addr"
    VSA = "vsa"


class Hiding(Enum):
    """Values that travel encrypted with the shared secret."""

    NONE = 0
    USER_PASSWORD = 1  # RFC 2865 §5.2 (eapkit.radius.hiding.hide_password)
    SALTED = 2  # RFC 2548 §2.4.2 (eapkit.radius.hiding.salt_encrypt)


class AttributeDef(NamedTuple):
    """One dictionary entry: ``vendor`` 0 is the standard attribute space."""

    name: str
    number: int
    type: DataType
    vendor: int = 0
    hiding: Hiding = Hiding.NONE


_T, _O, _I, _D, _A, _A6 = (
    DataType.TEXT,
    DataType.OCTETS,
    DataType.INTEGER,
    DataType.DATE,
    DataType.IPADDR,
    DataType.IPV6ADDR,
)
_MS = VENDOR_MICROSOFT

DICTIONARY: tuple[AttributeDef, ...] = (
    AttributeDef("User-Name", Attr.USER_NAME, _T),
    AttributeDef("User-Password", Attr.USER_PASSWORD, _O, hiding=Hiding.USER_PASSWORD),
    AttributeDef("CHAP-Password", Attr.CHAP_PASSWORD, _O),
    AttributeDef("NAS-IP-Address", Attr.NAS_IP_ADDRESS, _A),
    AttributeDef("NAS-Port", Attr.NAS_PORT, _I),
    AttributeDef("Service-Type", Attr.SERVICE_TYPE, _I),
    AttributeDef("Framed-Protocol", Attr.FRAMED_PROTOCOL, _I),
    AttributeDef("Framed-IP-Address", Attr.FRAMED_IP_ADDRESS, _A),
    AttributeDef("Framed-IP-Netmask", Attr.FRAMED_IP_NETMASK, _A),
    AttributeDef("Filter-Id", Attr.FILTER_ID, _T),
    AttributeDef("Framed-MTU", Attr.FRAMED_MTU, _I),
    AttributeDef("Reply-Message", Attr.REPLY_MESSAGE, _T),
    AttributeDef("State", Attr.STATE, _O),
    AttributeDef("Class", Attr.CLASS, _O),
    AttributeDef("Vendor-Specific", Attr.VENDOR_SPECIFIC, DataType.VSA),
    AttributeDef("Session-Timeout", Attr.SESSION_TIMEOUT, _I),
    AttributeDef("Idle-Timeout", Attr.IDLE_TIMEOUT, _I),
    AttributeDef("Termination-Action", Attr.TERMINATION_ACTION, _I),
    AttributeDef("Called-Station-Id", Attr.CALLED_STATION_ID, _T),
    AttributeDef("Calling-Station-Id", Attr.CALLING_STATION_ID, _T),
    AttributeDef("NAS-Identifier", Attr.NAS_IDENTIFIER, _T),
    AttributeDef("Proxy-State", Attr.PROXY_STATE, _O),
    AttributeDef("Acct-Status-Type", Attr.ACCT_STATUS_TYPE, _I),
    AttributeDef("Acct-Delay-Time", Attr.ACCT_DELAY_TIME, _I),
    AttributeDef("Acct-Input-Octets", Attr.ACCT_INPUT_OCTETS, _I),
    AttributeDef("Acct-Output-Octets", Attr.ACCT_OUTPUT_OCTETS, _I),
    AttributeDef("Acct-Session-Id", Attr.ACCT_SESSION_ID, _T),
    AttributeDef("Acct-Authentic", Attr.ACCT_AUTHENTIC, _I),
    AttributeDef("Acct-Session-Time", Attr.ACCT_SESSION_TIME, _I),
    AttributeDef("Acct-Input-Packets", Attr.ACCT_INPUT_PACKETS, _I),
    AttributeDef("Acct-Output-Packets", Attr.ACCT_OUTPUT_PACKETS, _I),
    AttributeDef("Acct-Terminate-Cause", Attr.ACCT_TERMINATE_CAUSE, _I),
    AttributeDef("Acct-Multi-Session-Id", Attr.ACCT_MULTI_SESSION_ID, _T),
    AttributeDef("Acct-Link-Count", Attr.ACCT_LINK_COUNT, _I),
    AttributeDef("Acct-Input-Gigawords", Attr.ACCT_INPUT_GIGAWORDS, _I),
    AttributeDef("Acct-Output-Gigawords", Attr.ACCT_OUTPUT_GIGAWORDS, _I),
    AttributeDef("Event-Timestamp", Attr.EVENT_TIMESTAMP, _D),
    AttributeDef("CHAP-Challenge", Attr.CHAP_CHALLENGE, _O),
    AttributeDef("NAS-Port-Type", Attr.NAS_PORT_TYPE, _I),
    AttributeDef("Connect-Info", Attr.CONNECT_INFO, _T),
    AttributeDef("EAP-Message", Attr.EAP_MESSAGE, _O),
    AttributeDef("Message-Authenticator", Attr.MESSAGE_AUTHENTICATOR, _O),
    AttributeDef("Acct-Interim-Interval", Attr.ACCT_INTERIM_INTERVAL, _I),
    AttributeDef("NAS-Port-Id", Attr.NAS_PORT_ID, _T),
    AttributeDef("Framed-Pool", Attr.FRAMED_POOL, _T),
    AttributeDef("Chargeable-User-Identity", Attr.CHARGEABLE_USER_IDENTITY, _O),
    AttributeDef("NAS-IPv6-Address", Attr.NAS_IPV6_ADDRESS, _A6),
    AttributeDef("Error-Cause", Attr.ERROR_CAUSE, _I),
    AttributeDef("EAP-Key-Name", Attr.EAP_KEY_NAME, _O),
    AttributeDef("MS-CHAP-Response", MsAttr.MS_CHAP_RESPONSE, _O, _MS),
    AttributeDef("MS-CHAP-Error", MsAttr.MS_CHAP_ERROR, _T, _MS),
    AttributeDef("MS-MPPE-Encryption-Policy", MsAttr.MS_MPPE_ENCRYPTION_POLICY, _I, _MS),
    AttributeDef("MS-MPPE-Encryption-Types", MsAttr.MS_MPPE_ENCRYPTION_TYPES, _I, _MS),
    AttributeDef("MS-CHAP-Challenge", MsAttr.MS_CHAP_CHALLENGE, _O, _MS),
    AttributeDef("MS-MPPE-Send-Key", MsAttr.MS_MPPE_SEND_KEY, _O, _MS, Hiding.SALTED),
    AttributeDef("MS-MPPE-Recv-Key", MsAttr.MS_MPPE_RECV_KEY, _O, _MS, Hiding.SALTED),
    AttributeDef("MS-CHAP2-Response", MsAttr.MS_CHAP2_RESPONSE, _O, _MS),
    AttributeDef("MS-CHAP2-Success", MsAttr.MS_CHAP2_SUCCESS, _O, _MS),
    AttributeDef("Cisco-AVPair", CISCO_AVPAIR, _T, VENDOR_CISCO),
)

BY_NAME: dict[str, AttributeDef] = {d.name: d for d in DICTIONARY}
BY_NUMBER: dict[tuple[int, int], AttributeDef] = {(d.vendor, d.number): d for d in DICTIONARY}


def lookup(name: str) -> AttributeDef:
    """The dictionary entry called ``name`` (``KeyError`` if eapkit does not know it)."""
    return BY_NAME[name]


# -- value codecs (RFC 2865 §5: "text", "string", "address", "integer", "time") ---------


def encode_text(value: str) -> bytes:
    """UTF-8 text, at most 253 octets (RFC 2865 §5)."""
    data = value.encode("utf-8")
    if len(data) > MAX_VALUE_LENGTH:
        raise ValueError(f"text of {len(data)} octets does not fit an attribute")
    return data


def decode_text(data: bytes) -> str:
    """RFC 2865 §5 "text": UTF-8; anything else is a :class:`DecodeError`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("text is not UTF-8", offset=exc.start, expected="UTF-8") from None


def encode_integer(value: int) -> bytes:
    """32-bit unsigned big-endian (RFC 2865 §5 "integer")."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"integer {value} does not fit 32 bits")
    return _U32.pack(value)


def decode_integer(data: bytes) -> int:
    """32-bit unsigned big-endian; any other length is a :class:`DecodeError`."""
    if len(data) != 4:
        raise DecodeError(f"integer of {len(data)} octets", expected="4 octets")
    value: int = _U32.unpack(data)[0]
    return value


encode_date = encode_integer
"""RFC 2865 §5 "time": seconds since 1970-01-01 00:00 UTC, 32-bit unsigned."""
decode_date = decode_integer


def encode_ipv4(value: IPv4Address | str) -> bytes:
    """RFC 2865 §5 "address": four octets."""
    return IPv4Address(value).packed


def decode_ipv4(data: bytes) -> IPv4Address:
    if len(data) != 4:
        raise DecodeError(f"IPv4 address of {len(data)} octets", expected="4 octets")
    return IPv4Address(data)


def encode_ipv6(value: IPv6Address | str) -> bytes:
    """RFC 3162 §2.4: sixteen octets."""
    return IPv6Address(value).packed


def decode_ipv6(data: bytes) -> IPv6Address:
    if len(data) != 16:
        raise DecodeError(f"IPv6 address of {len(data)} octets", expected="16 octets")
    return IPv6Address(data)


# -- Vendor-Specific (RFC 2865 §5.26) --------------------------------------------------


def encode_vsa(vendor_id: int, vendor_type: int, value: bytes) -> bytes:
    """The value of a Vendor-Specific attribute holding one sub-attribute (RFC 2865 §5.26).

    Layout: Vendor-Id (4 octets, high octet 0), vendor-type, vendor-length (its own two
    octets included), value.  A sub-attribute value can be at most 247 octets.
    """
    if not 0 <= vendor_id <= 0xFFFFFF:
        raise ValueError(f"vendor id {vendor_id} is not a 24-bit SMI code")
    if not 0 <= vendor_type <= 255:
        raise ValueError(f"vendor type {vendor_type} does not fit one octet")
    if len(value) > MAX_VALUE_LENGTH - 6:
        raise ValueError(f"vendor attribute value of {len(value)} octets is too long")
    return _VSA_HEADER.pack(vendor_id, vendor_type, len(value) + 2) + value


def vsa(vendor_id: int, vendor_type: int, value: bytes) -> tuple[int, bytes]:
    """A whole ``(26, value)`` attribute pair, ready for the encoder."""
    return (Attr.VENDOR_SPECIFIC, encode_vsa(vendor_id, vendor_type, value))


def decode_vsa(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """Vendor-Id and ``(vendor_type, value)`` sub-attributes of a Vendor-Specific value.

    RFC 2865 §5.26: at least 5 octets, Vendor-Id's high octet 0.  The sub-attribute
    layout is only a recommendation of the RFC, so a vendor may use another; eapkit
    reads the recommended one, and a value that does not follow it is a
    :class:`DecodeError` (callers skip VSAs of vendors they do not read).
    """
    n = len(data)
    if n < 5:
        raise DecodeError(f"Vendor-Specific of {n} octets", expected="at least 5 octets")
    if data[0] != 0:
        raise DecodeError("Vendor-Id high octet is not 0", offset=0, expected="0")
    vendor_id: int = _U32.unpack_from(data)[0]
    subs: list[tuple[int, bytes]] = []
    pos = 4
    while pos < n:
        if pos + 2 > n:
            raise DecodeError("truncated vendor sub-attribute", offset=pos, expected="2 octets")
        vtype = data[pos]
        vlen = data[pos + 1]
        if vlen < 2 or pos + vlen > n:
            raise DecodeError(
                f"vendor sub-attribute length {vlen}", offset=pos + 1, expected=f"2..{n - pos}"
            )
        subs.append((vtype, data[pos + 2 : pos + vlen]))
        pos += vlen
    return vendor_id, subs


# -- by dictionary entry ---------------------------------------------------------------

Value = str | int | bytes | IPv4Address | IPv6Address
"""A decoded attribute value, by :class:`DataType`."""


def encode_value(attr: AttributeDef | str, value: Value) -> bytes:
    """``value`` laid out as ``attr``'s data type says (hidden values: see ``hiding``)."""
    d = BY_NAME[attr] if isinstance(attr, str) else attr
    t = d.type
    if t is DataType.TEXT and isinstance(value, str):
        return encode_text(value)
    if t in (DataType.INTEGER, DataType.DATE) and isinstance(value, int):
        return encode_integer(value)
    if t is DataType.IPADDR and isinstance(value, IPv4Address | str):
        return encode_ipv4(value)
    if t is DataType.IPV6ADDR and isinstance(value, IPv6Address | str):
        return encode_ipv6(value)
    if t in (DataType.OCTETS, DataType.VSA) and isinstance(value, bytes):
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"{d.name}: {len(value)} octets do not fit an attribute")
        return value
    raise ValueError(f"{d.name} ({t.value}) cannot hold a {type(value).__name__}")


def decode_value(attr: AttributeDef | str, data: bytes) -> Value:
    """The Python value of ``data`` for ``attr``; malformed values raise DecodeError."""
    d = BY_NAME[attr] if isinstance(attr, str) else attr
    t = d.type
    if t is DataType.TEXT:
        return decode_text(data)
    if t is DataType.INTEGER or t is DataType.DATE:
        return decode_integer(data)
    if t is DataType.IPADDR:
        return decode_ipv4(data)
    if t is DataType.IPV6ADDR:
        return decode_ipv6(data)
    return bytes(data)
