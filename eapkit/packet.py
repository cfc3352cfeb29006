"""The EAP packet codec (RFC 3748 §4 and §5).

Every EAP packet starts with the same four bytes::

     0                   1                   2                   3
    |     Code      |  Identifier   |            Length             |
    |     Type      |  Type-Data ...                                   (Request/Response)

Code 1 and 2 (Request, Response) carry a Type; code 3 and 4 (Success, Failure) carry
nothing.  :func:`decode` picks the message class from Code and Type:

=================  =============================================  ==================
Type               class                                          RFC 3748
=================  =============================================  ==================
1 Identity         :class:`Identity`                              §5.1
2 Notification     :class:`Notification`                          §5.2
3 Nak              :class:`Nak` (Response only)                   §5.3.1
254 Expanded       :class:`Expanded`, or :class:`ExpandedNak` for  §5.7, §5.3.2
                   a Response with Vendor-Id 0 / Vendor-Type 3
255 Experimental   :class:`Experimental`                          §5.8
anything else      :class:`MethodData` (the method owns Type-Data) §5.4 ff.
=================  =============================================  ==================

The Length field is trusted only as far as the buffer goes: fewer bytes than Length, or
a Length below the header's size, is a :class:`~eapkit.errors.DecodeError`.  Bytes
beyond Length are link-layer padding and are ignored (§4: "Octets outside the range of
the Length field should be treated as Data Link Layer padding and MUST be ignored");
:func:`decode_frame` reports how many bytes the packet used.

Messages are immutable; each has ``encode()``.  Constructors check their own fields and
raise ``ValueError`` (a programming error); only the decoder deals with untrusted input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from eapkit.errors import DecodeError

__all__ = [
    "HEADER_SIZE",
    "MAX_LENGTH",
    "Code",
    "EapType",
    "Expanded",
    "ExpandedNak",
    "Experimental",
    "Failure",
    "Identity",
    "Message",
    "MethodData",
    "MethodId",
    "Nak",
    "Notification",
    "Success",
    "decode",
    "decode_frame",
]

HEADER_SIZE = 4
MAX_LENGTH = 0xFFFF
_HEADER = struct.Struct("!BBH")
_VENDOR_ID_MAX = 0xFFFFFF
_VENDOR_TYPE_MAX = 0xFFFFFFFF


class Code(IntEnum):
    """RFC 3748 §4: the Code field."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    """IANA EAP method types (RFC 3748 §5, and the RFCs of each method)."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    OTP = 5
    GTC = 6
    TLS = 13
    TTLS = 21
    PEAP = 25
    MSCHAPV2 = 26
    TLV = 33
    FAST = 43
    TEAP = 55  # RFC 9930
    EXPANDED = 254
    EXPERIMENTAL = 255


@dataclass(frozen=True, slots=True, order=True)
class MethodId:
    """A method's identity in the expanded space of RFC 3748 §5.7.

    Vendor-Id 0 is the IETF: ``MethodId(0, 13)`` is EAP-TLS whether it is sent as the
    legacy Type 13 or as an Expanded Type.
    """

    vendor_id: int
    vendor_type: int

    def __post_init__(self) -> None:
        if not 0 <= self.vendor_id <= _VENDOR_ID_MAX:
            raise ValueError(f"Vendor-Id {self.vendor_id} is not a 24-bit number")
        if not 0 <= self.vendor_type <= _VENDOR_TYPE_MAX:
            raise ValueError(f"Vendor-Type {self.vendor_type} is not a 32-bit number")

    @classmethod
    def legacy(cls, eap_type: int) -> MethodId:
        return cls(0, eap_type)

    @property
    def is_legacy(self) -> bool:
        """True when the method fits the one-octet Type field (IETF, below 254)."""
        return self.vendor_id == 0 and self.vendor_type < EapType.EXPANDED

    def __str__(self) -> str:
        if self.is_legacy:
            try:
                return EapType(self.vendor_type).name
            except ValueError:
                return f"type {self.vendor_type}"
        return f"expanded {self.vendor_id}:{self.vendor_type}"


def _check_identifier(identifier: int) -> None:
    if not 0 <= identifier <= 0xFF:
        raise ValueError(f"identifier {identifier} is not an octet")


def _check_request_or_response(code: Code) -> None:
    if code != 1 and code != 2:  # Code.REQUEST, Code.RESPONSE (ints: cheaper than the enum)
        raise ValueError(f"{code!r} carries no Type")


def _frame(code: int, identifier: int, body: bytes) -> bytes:
    length = HEADER_SIZE + len(body)
    if length > MAX_LENGTH:
        raise ValueError(f"EAP packet of {length} bytes exceeds the 16-bit Length field")
    return _HEADER.pack(code, identifier, length) + body


@dataclass(frozen=True, slots=True)
class Success:
    """RFC 3748 §4.2: Success, four bytes, no data."""

    identifier: int
    code: ClassVar[Code] = Code.SUCCESS

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)

    def encode(self) -> bytes:
        return _frame(Code.SUCCESS, self.identifier, b"")


@dataclass(frozen=True, slots=True)
class Failure:
    """RFC 3748 §4.2: Failure, four bytes, no data."""

    identifier: int
    code: ClassVar[Code] = Code.FAILURE

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)

    def encode(self) -> bytes:
        return _frame(Code.FAILURE, self.identifier, b"")


@dataclass(frozen=True, slots=True)
class Identity:
    """RFC 3748 §5.1: Identity.  ``data`` is the identity (Response) or an optional
    displayable message (Request); UTF-8 is recommended but not required, so it stays bytes.
    """

    code: Code
    identifier: int
    data: bytes = b""
    type: ClassVar[EapType] = EapType.IDENTITY

    def __post_init__(self) -> None:
        _check_request_or_response(self.code)
        _check_identifier(self.identifier)

    def encode(self) -> bytes:
        return _frame(self.code, self.identifier, bytes((EapType.IDENTITY,)) + self.data)


@dataclass(frozen=True, slots=True)
class Notification:
    """RFC 3748 §5.2: Notification.  The Request carries a displayable message; the
    Response carries none."""

    code: Code
    identifier: int
    data: bytes = b""
    type: ClassVar[EapType] = EapType.NOTIFICATION

    def __post_init__(self) -> None:
        _check_request_or_response(self.code)
        _check_identifier(self.identifier)

    def encode(self) -> bytes:
        return _frame(self.code, self.identifier, bytes((EapType.NOTIFICATION,)) + self.data)


@dataclass(frozen=True, slots=True)
class Nak:
    """RFC 3748 §5.3.1: legacy Nak, sent only in a Response.

    ``desired`` lists the authentication types the peer would accept; ``(0,)`` means it
    accepts none, and 254 means it wants Expanded Types.
    """

    identifier: int
    desired: tuple[int, ...]
    code: ClassVar[Code] = Code.RESPONSE
    type: ClassVar[EapType] = EapType.NAK

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)
        if not self.desired:
            raise ValueError("a Nak lists at least one type (0: none acceptable)")
        for t in self.desired:
            if not 0 <= t <= 0xFF:
                raise ValueError(f"type {t} is not an octet")

    def encode(self) -> bytes:
        return _frame(Code.RESPONSE, self.identifier, bytes((EapType.NAK, *self.desired)))


@dataclass(frozen=True, slots=True)
class ExpandedNak:
    """RFC 3748 §5.3.2: Expanded Nak (Type 254, Vendor-Id 0, Vendor-Type 3), Response only.

    Each desired method is an 8-byte Expanded Type entry; ``MethodId(0, 0)`` means none.
    """

    identifier: int
    desired: tuple[MethodId, ...]
    code: ClassVar[Code] = Code.RESPONSE
    type: ClassVar[EapType] = EapType.EXPANDED

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)
        if not self.desired:
            raise ValueError("an Expanded Nak lists at least one method")

    def encode(self) -> bytes:
        body = _expanded_header(0, EapType.NAK) + b"".join(
            _expanded_header(m.vendor_id, m.vendor_type) for m in self.desired
        )
        return _frame(Code.RESPONSE, self.identifier, body)


def _expanded_header(vendor_id: int, vendor_type: int) -> bytes:
    """Type 254 || Vendor-Id (3 bytes) || Vendor-Type (4 bytes)."""
    return bytes((EapType.EXPANDED,)) + vendor_id.to_bytes(3) + vendor_type.to_bytes(4)


@dataclass(frozen=True, slots=True)
class Expanded:
    """RFC 3748 §5.7: Expanded Type (254): a vendor's method, or an IETF one in the
    expanded space.  ``data`` is the method's Vendor-Data."""

    code: Code
    identifier: int
    vendor_id: int
    vendor_type: int
    data: bytes = b""
    type: ClassVar[EapType] = EapType.EXPANDED

    def __post_init__(self) -> None:
        _check_request_or_response(self.code)
        _check_identifier(self.identifier)
        MethodId(self.vendor_id, self.vendor_type)  # range checks
        if self.vendor_id == 0 and self.vendor_type == EapType.NAK:
            raise ValueError("Vendor-Id 0 / Vendor-Type 3 is the Expanded Nak: use ExpandedNak")

    @property
    def method(self) -> MethodId:
        return MethodId(self.vendor_id, self.vendor_type)

    def encode(self) -> bytes:
        return _frame(
            self.code,
            self.identifier,
            _expanded_header(self.vendor_id, self.vendor_type) + self.data,
        )


@dataclass(frozen=True, slots=True)
class Experimental:
    """RFC 3748 §5.8: Experimental (255), no format."""

    code: Code
    identifier: int
    data: bytes = b""
    type: ClassVar[EapType] = EapType.EXPERIMENTAL

    def __post_init__(self) -> None:
        _check_request_or_response(self.code)
        _check_identifier(self.identifier)

    def encode(self) -> bytes:
        return _frame(self.code, self.identifier, bytes((EapType.EXPERIMENTAL,)) + self.data)


_RESERVED_TYPES = frozenset(
    {EapType.IDENTITY, EapType.NOTIFICATION, EapType.NAK, EapType.EXPANDED, EapType.EXPERIMENTAL}
)


@dataclass(frozen=True, slots=True)
class MethodData:
    """A Request or Response of an authentication method (Type 4..253): the method owns
    ``type_data`` and parses it itself."""

    code: Code
    identifier: int
    type: int
    type_data: bytes = b""

    def __post_init__(self) -> None:
        _check_request_or_response(self.code)
        _check_identifier(self.identifier)
        if not 0 < self.type < 0x100 or self.type in _RESERVED_TYPES:
            raise ValueError(f"type {self.type} has its own message class")

    @property
    def method(self) -> MethodId:
        return MethodId(0, self.type)

    def encode(self) -> bytes:
        return _frame(self.code, self.identifier, bytes((self.type,)) + self.type_data)


Message = (
    Success
    | Failure
    | Identity
    | Notification
    | Nak
    | ExpandedNak
    | Expanded
    | Experimental
    | MethodData
)
"""Any decoded EAP packet; every one has ``code``, ``identifier`` and ``encode()``."""


def method_message(code: Code, identifier: int, method: MethodId, type_data: bytes) -> Message:
    """The Request or Response that carries ``type_data`` of ``method``: the legacy Type
    when it has one, else the Expanded Type (RFC 3748 §5.7)."""
    if method.is_legacy:
        return MethodData(code, identifier, method.vendor_type, type_data)
    return Expanded(code, identifier, method.vendor_id, method.vendor_type, type_data)


def decode(data: bytes) -> Message:
    """Decode one EAP packet; bytes beyond its Length field are ignored (RFC 3748 §4)."""
    return decode_frame(data)[0]


_BYTES_LIKE = (bytes, bytearray, memoryview)
# Plain ints and a dict on the hot path: Enum lookups and calls cost more than the parse.
_CODE_OF = {int(c): c for c in Code}
_REQUEST, _RESPONSE, _SUCCESS, _FAILURE = 1, 2, 3, 4
_IDENTITY, _NOTIFICATION, _NAK = 1, 2, 3
_EXPANDED_TYPE, _EXPERIMENTAL_TYPE = 254, 255


def decode_frame(data: bytes) -> tuple[Message, int]:
    """Decode one EAP packet and say how many bytes of ``data`` it used.

    Raises :class:`DecodeError`, and nothing else, for any malformed input.
    """
    if type(data) is bytes:
        buf = data
    elif isinstance(data, _BYTES_LIKE):
        buf = bytes(data)
    else:
        raise DecodeError(f"EAP packet must be bytes, not {type(data).__name__}")
    size = len(buf)
    if size < HEADER_SIZE:
        raise DecodeError(
            f"packet of {size} bytes is shorter than the EAP header",
            offset=0,
            expected=f"{HEADER_SIZE} bytes",
        )
    code, identifier, length = _HEADER.unpack_from(buf)
    if length < HEADER_SIZE:
        raise DecodeError(
            f"Length field {length} is below the header size", offset=2, expected=">= 4"
        )
    if length > size:
        raise DecodeError(
            f"Length field says {length} bytes but only {size} arrived",
            offset=2,
            expected=f"<= {size}",
        )
    if code in (_SUCCESS, _FAILURE):
        if length != HEADER_SIZE:
            raise DecodeError(
                f"{_CODE_OF[code].name.title()} with {length - HEADER_SIZE} bytes of data",
                offset=2,
                expected="Length 4",
            )
        return (Success(identifier) if code == _SUCCESS else Failure(identifier)), length
    if code != _REQUEST and code != _RESPONSE:
        raise DecodeError(f"unknown Code {code}", offset=0, expected="1, 2, 3 or 4")
    if length == HEADER_SIZE:
        raise DecodeError(
            f"{_CODE_OF[code].name.title()} without a Type", offset=4, expected="a Type octet"
        )
    return _decode_typed(_CODE_OF[code], identifier, buf[HEADER_SIZE:length]), length


def _decode_typed(code: Code, identifier: int, body: bytes) -> Message:
    eap_type = body[0]
    rest = body[1:]
    if eap_type == _IDENTITY:
        return Identity(code, identifier, rest)
    if eap_type == _NOTIFICATION:
        return Notification(code, identifier, rest)
    if eap_type == _NAK:
        if code != _RESPONSE:
            raise DecodeError("Nak in a Request", offset=4, expected="Nak only in a Response")
        if not rest:
            raise DecodeError("Nak lists no type", offset=5, expected="at least one type")
        return Nak(identifier, tuple(rest))
    if eap_type == _EXPANDED_TYPE:
        return _decode_expanded(code, identifier, body)
    if eap_type == _EXPERIMENTAL_TYPE:
        return Experimental(code, identifier, rest)
    if eap_type == 0:
        raise DecodeError("Type 0 is reserved", offset=4, expected="a method Type")
    return MethodData(code, identifier, eap_type, rest)


def _decode_expanded(code: Code, identifier: int, body: bytes) -> Message:
    # body[0] is 254; offsets in errors count from the start of the EAP packet.
    if len(body) < 8:
        raise DecodeError(
            f"Expanded Type header of {len(body)} bytes",
            offset=HEADER_SIZE,
            expected="Type, 3-byte Vendor-Id and 4-byte Vendor-Type",
        )
    vendor_id = int.from_bytes(body[1:4])
    vendor_type = int.from_bytes(body[4:8])
    data = body[8:]
    if vendor_id == 0 and vendor_type == EapType.NAK:
        if code != Code.RESPONSE:
            raise DecodeError(
                "Expanded Nak in a Request", offset=HEADER_SIZE, expected="a Response"
            )
        if not data or len(data) % 8:
            raise DecodeError(
                f"Expanded Nak list of {len(data)} bytes",
                offset=HEADER_SIZE + 8,
                expected="a non-empty multiple of 8 bytes",
            )
        desired = []
        for i in range(0, len(data), 8):
            if data[i] != EapType.EXPANDED:
                raise DecodeError(
                    f"Expanded Nak entry with Type {data[i]}",
                    offset=HEADER_SIZE + 8 + i,
                    expected="Type 254",
                )
            desired.append(
                MethodId(int.from_bytes(data[i + 1 : i + 4]), int.from_bytes(data[i + 4 : i + 8]))
            )
        return ExpandedNak(identifier, tuple(desired))
    return Expanded(code, identifier, vendor_id, vendor_type, data)
