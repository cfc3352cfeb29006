"""The TEAP TLVs (RFC 9930 §4.2) and TEAP's Outer TLV framing (RFC 9930 §4.1), as data.

Every TLV (RFC 9930 §4.2.1)::

    |M|R|         TLV Type          |            Length             |
    |              Value ...

M: mandatory; R: reserved (sent 0, ignored on receipt).  Length counts the value only.

:func:`decode_tlvs` splits a buffer into :class:`Tlv`; :func:`parse_message` reads one
Phase 2 message (RFC 9930 §4.3.2, the Inner TLV table) into a :class:`TeapMessage`,
strictly: a malformed value, or two of a TLV the table allows once, raise
:class:`~eapkit.errors.DecodeError` and nothing else.  A TLV this module does not
implement (PAC, PKCS#7/#10, Trusted-Server-Root, Channel-Binding, CSR-Attributes,
Vendor-Specific, unassigned types) is skipped when optional and listed in
``TeapMessage.unsupported`` when mandatory: the receiver answers it with a NAK TLV
(RFC 9930 §4.2.5) or a Result=Failure (§3.9.3).

Outer TLVs (RFC 9930 §4.1, §4.3.1): the first message of each side may carry TLVs
outside the tunnel (Authority-ID, Identity-Type, Vendor-Specific), flagged by the O bit
of the flags octet and a four-octet Outer TLV Length after the TLS Message Length::

    |L M S O R|Ver|  [TLS Message Length (4)]  [Outer TLV Length (4)]  [TLS data] [Outer TLVs]

:func:`split_outer` removes them (the rest is ordinary EAP-TLS framing for
:mod:`eapkit.tlsio`); :func:`with_outer` adds them to our first message.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from eapkit.eap_tlv import split_tlvs
from eapkit.errors import DecodeError

__all__ = [
    "CRYPTO_BINDING_SIZE",
    "BasicPasswordResponse",
    "CryptoBinding",
    "ErrorCode",
    "IdentityType",
    "Status",
    "TeapMessage",
    "Tlv",
    "TlvType",
    "decode_tlvs",
    "encode_tlvs",
    "parse_message",
    "split_outer",
    "with_outer",
]

_HEADER = struct.Struct("!HH")
_M = 0x8000
_TYPE_MASK = 0x3FFF

FLAG_LENGTH = 0x80
FLAG_MORE = 0x40
FLAG_START = 0x20
FLAG_OUTER = 0x10
TEAP_VERSION = 1


class TlvType(enum.IntEnum):
    """RFC 9930 §4.2.1, IANA "TEAP TLV Types"."""

    AUTHORITY_ID = 1
    IDENTITY_TYPE = 2
    RESULT = 3
    NAK = 4
    ERROR = 5
    CHANNEL_BINDING = 6
    VENDOR_SPECIFIC = 7
    REQUEST_ACTION = 8
    EAP_PAYLOAD = 9
    INTERMEDIATE_RESULT = 10
    PAC = 11
    CRYPTO_BINDING = 12
    BASIC_PASSWORD_AUTH_REQ = 13
    BASIC_PASSWORD_AUTH_RESP = 14
    PKCS7 = 15
    PKCS10 = 16
    TRUSTED_SERVER_ROOT = 17
    CSR_ATTRIBUTES = 18
    IDENTITY_HINT = 19


class Status(enum.IntEnum):
    """Result and Intermediate-Result status (RFC 9930 §4.2.4, §4.2.11)."""

    SUCCESS = 1
    FAILURE = 2


class IdentityType(enum.IntEnum):
    """Identity-Type TLV values (RFC 9930 §4.2.3)."""

    USER = 1
    MACHINE = 2


class ErrorCode(enum.IntEnum):
    """Error TLV codes this implementation sends (RFC 9930 §4.2.6)."""

    INNER_METHOD_ERROR = 1001
    UNSPECIFIED_AUTHENTICATION_FAILURE = 1003
    UNSPECIFIED_AUTHORIZATION_FAILURE = 1004
    TUNNEL_COMPROMISE = 2001
    UNEXPECTED_TLVS = 2002


class RequestActionType(enum.IntEnum):
    """Request-Action TLV actions (RFC 9930 §4.2.9)."""

    PROCESS_TLV = 1
    NEGOTIATE_EAP = 2


# -- the generic TLV -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TLV as carried: its 14-bit type, value and M flag."""

    type: int
    value: bytes
    mandatory: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.type <= _TYPE_MASK:
            raise ValueError(f"TLV type {self.type} is not 14 bits")
        if len(self.value) > 0xFFFF:
            raise ValueError("TLV value longer than 65535 octets")

    def encode(self) -> bytes:
        return _HEADER.pack(self.type | (_M if self.mandatory else 0), len(self.value)) + self.value

    @classmethod
    def status(cls, kind: TlvType, status: Status) -> Tlv:
        """A Result or Intermediate-Result TLV (mandatory, RFC 9930 §4.2.4, §4.2.11)."""
        return cls(kind, int(status).to_bytes(2, "big"))

    @classmethod
    def identity_type(cls, kind: IdentityType) -> Tlv:
        """RFC 9930 §4.2.3 (optional in hostapd's and the RFC's examples)."""
        return cls(TlvType.IDENTITY_TYPE, int(kind).to_bytes(2, "big"), mandatory=False)

    @classmethod
    def error(cls, code: int) -> Tlv:
        """RFC 9930 §4.2.6: a four-octet error code, mandatory."""
        return cls(TlvType.ERROR, code.to_bytes(4, "big"))

    @classmethod
    def nak(cls, tlv_type: int, vendor_id: int = 0) -> Tlv:
        """RFC 9930 §4.2.5: the TLV we do not support (Vendor-Id 0: an IETF TLV)."""
        return cls(TlvType.NAK, struct.pack("!IH", vendor_id, tlv_type))

    @classmethod
    def eap_payload(cls, packet: bytes) -> Tlv:
        """RFC 9930 §4.2.10: one whole EAP packet (mandatory)."""
        return cls(TlvType.EAP_PAYLOAD, packet)

    @classmethod
    def basic_password_request(cls, prompt: bytes = b"") -> Tlv:
        """RFC 9930 §4.2.14: an optional prompt (UTF-8)."""
        return cls(TlvType.BASIC_PASSWORD_AUTH_REQ, prompt)


def encode_tlvs(tlvs: list[Tlv]) -> bytes:
    return b"".join(t.encode() for t in tlvs)


def decode_tlvs(data: bytes) -> list[Tlv]:
    """Every TLV in ``data``; :class:`DecodeError` on the first malformed header."""
    return [Tlv(t, value, mandatory) for t, mandatory, value in split_tlvs(data, "TEAP TLV")]


# -- typed values --------------------------------------------------------------------------

CRYPTO_BINDING_SIZE = 76  # value octets: 4 + nonce 32 + two MACs of 20


@dataclass(frozen=True, slots=True)
class CryptoBinding:
    """The Crypto-Binding TLV's value (RFC 9930 §4.2.13)::

        Reserved | Version | Received Ver. | Flags(4) Sub-Type(4)
        Nonce (32) | EMSK Compound MAC (20) | MSK Compound MAC (20)

    Flags: 1 EMSK MAC only, 2 MSK MAC only, 3 both.  Sub-Type: 0 request, 1 response.
    """

    version: int
    received_version: int
    flags: int
    subtype: int
    nonce: bytes
    emsk_mac: bytes = bytes(20)
    msk_mac: bytes = bytes(20)

    REQUEST = 0
    RESPONSE = 1
    EMSK = 1
    MSK = 2
    BOTH = 3

    def encode(self) -> bytes:
        if len(self.nonce) != 32 or len(self.emsk_mac) != 20 or len(self.msk_mac) != 20:
            raise ValueError("Crypto-Binding: nonce of 32 octets, MACs of 20")
        head = bytes((0, self.version, self.received_version, (self.flags << 4) | self.subtype))
        return head + self.nonce + self.emsk_mac + self.msk_mac

    def zeroed(self) -> bytes:
        """The whole TLV with both MACs zeroed: the start of the Compound MAC's BUFFER
        (RFC 9930 §6.3 item 1)."""
        value = self.encode()[:36] + bytes(40)
        return Tlv(TlvType.CRYPTO_BINDING, value).encode()

    def tlv(self) -> Tlv:
        return Tlv(TlvType.CRYPTO_BINDING, self.encode())

    @property
    def has_emsk(self) -> bool:
        return self.flags in (self.EMSK, self.BOTH)

    @property
    def has_msk(self) -> bool:
        return self.flags in (self.MSK, self.BOTH)

    @classmethod
    def decode(cls, value: bytes) -> CryptoBinding:
        if len(value) != CRYPTO_BINDING_SIZE:
            raise DecodeError(
                f"Crypto-Binding TLV of {len(value)} octets",
                offset=0,
                expected=f"{CRYPTO_BINDING_SIZE} octets",
            )
        flags, subtype = value[3] >> 4, value[3] & 0x0F
        if flags not in (cls.EMSK, cls.MSK, cls.BOTH):
            raise DecodeError(f"Crypto-Binding Flags {flags}", offset=3, expected="1, 2 or 3")
        if subtype not in (cls.REQUEST, cls.RESPONSE):
            raise DecodeError(f"Crypto-Binding Sub-Type {subtype}", offset=3, expected="0 or 1")
        return cls(value[1], value[2], flags, subtype, value[4:36], value[36:56], value[56:76])


@dataclass(frozen=True, slots=True)
class BasicPasswordResponse:
    """Basic-Password-Auth-Resp (RFC 9930 §4.2.15): Userlen, Username, Passlen,
    Password.  ``repr`` never shows the password."""

    username: bytes
    password: bytes = field(repr=False)

    def tlv(self) -> Tlv:
        if not 1 <= len(self.username) <= 255 or len(self.password) > 255:
            raise ValueError("Basic-Password-Auth-Resp: 1-255 octets of user, <= 255 of password")
        value = bytes([len(self.username)]) + self.username
        value += bytes([len(self.password)]) + self.password
        return Tlv(TlvType.BASIC_PASSWORD_AUTH_RESP, value)

    @classmethod
    def decode(cls, value: bytes) -> BasicPasswordResponse:
        if not value or value[0] == 0:
            raise DecodeError("Basic-Password-Auth-Resp without a username", offset=0)
        end = 1 + value[0]
        if end >= len(value):
            raise DecodeError("Basic-Password-Auth-Resp username runs past the end", offset=0)
        passlen = value[end]
        if end + 1 + passlen != len(value):
            raise DecodeError(
                "Basic-Password-Auth-Resp password length does not fit the TLV",
                offset=end,
                expected=str(len(value) - end - 1),
            )
        return cls(value[1:end], value[end + 1 :])


# -- one Phase 2 message ----------------------------------------------------------------------

_ONCE = {
    TlvType.IDENTITY_TYPE,
    TlvType.RESULT,
    TlvType.EAP_PAYLOAD,
    TlvType.INTERMEDIATE_RESULT,
    TlvType.CRYPTO_BINDING,
    TlvType.BASIC_PASSWORD_AUTH_REQ,
    TlvType.BASIC_PASSWORD_AUTH_RESP,
    TlvType.AUTHORITY_ID,
}
_IGNORED = {
    TlvType.CHANNEL_BINDING,
    TlvType.VENDOR_SPECIFIC,
    TlvType.PAC,
    TlvType.PKCS7,
    TlvType.PKCS10,
    TlvType.TRUSTED_SERVER_ROOT,
    TlvType.CSR_ATTRIBUTES,
}


@dataclass(frozen=True, slots=True)
class TeapMessage:
    """What one TEAP message carries (RFC 9930 §4.3.2)."""

    result: Status | None = None
    intermediate_result: Status | None = None
    identity_type: IdentityType | None = None
    eap_payload: bytes | None = None
    crypto_binding: CryptoBinding | None = None
    basic_password_request: bytes | None = None  # the prompt (may be empty)
    basic_password_response: BasicPasswordResponse | None = None
    authority_id: bytes | None = None
    naks: tuple[tuple[int, int], ...] = ()  # (Vendor-Id, NAK-Type)
    errors: tuple[int, ...] = ()
    request_actions: tuple[tuple[int, int], ...] = ()  # (Status, Action)
    identity_hints: tuple[bytes, ...] = ()
    unsupported: tuple[int, ...] = ()  # mandatory TLVs we cannot honour


def _status(tlv: Tlv) -> Status:
    if len(tlv.value) != 2:
        raise DecodeError(f"TLV {tlv.type} status of {len(tlv.value)} octets", expected="2")
    number = int.from_bytes(tlv.value, "big")
    if number not in (Status.SUCCESS, Status.FAILURE):
        raise DecodeError(f"TLV {tlv.type} status {number}", expected="1 or 2")
    return Status(number)


def parse_message(data: bytes) -> TeapMessage:
    """One Phase 2 message, strictly (see the module docstring); DecodeError only."""
    seen: set[int] = set()
    result: Status | None = None
    intermediate: Status | None = None
    identity_type: IdentityType | None = None
    payload: bytes | None = None
    binding: CryptoBinding | None = None
    bp_request: bytes | None = None
    bp_response: BasicPasswordResponse | None = None
    authority: bytes | None = None
    naks: list[tuple[int, int]] = []
    errors: list[int] = []
    actions: list[tuple[int, int]] = []
    hints: list[bytes] = []
    unsupported: list[int] = []
    for tlv in decode_tlvs(data):
        kind = tlv.type
        if kind in _ONCE:
            if kind in seen:
                raise DecodeError(f"two {TlvType(kind).name} TLVs in one message")
            seen.add(kind)
        if kind == TlvType.RESULT:
            result = _status(tlv)
        elif kind == TlvType.INTERMEDIATE_RESULT:
            # an Intermediate-Result may be followed by optional TLVs (RFC 9930 §4.2.11)
            intermediate = _status(Tlv(kind, tlv.value[:2]))
        elif kind == TlvType.IDENTITY_TYPE:
            number = int.from_bytes(tlv.value, "big") if len(tlv.value) == 2 else 0
            if number not in (IdentityType.USER, IdentityType.MACHINE):
                raise DecodeError(f"Identity-Type {tlv.value.hex()}", expected="1 or 2")
            identity_type = IdentityType(number)
        elif kind == TlvType.EAP_PAYLOAD:
            if len(tlv.value) < 4 or int.from_bytes(tlv.value[2:4], "big") > len(tlv.value):
                raise DecodeError("EAP-Payload TLV without a whole EAP packet")
            payload = tlv.value
        elif kind == TlvType.CRYPTO_BINDING:
            binding = CryptoBinding.decode(tlv.value)
        elif kind == TlvType.BASIC_PASSWORD_AUTH_REQ:
            bp_request = tlv.value
        elif kind == TlvType.BASIC_PASSWORD_AUTH_RESP:
            bp_response = BasicPasswordResponse.decode(tlv.value)
        elif kind == TlvType.AUTHORITY_ID:
            authority = tlv.value
        elif kind == TlvType.NAK:
            if len(tlv.value) < 6:
                raise DecodeError(f"NAK TLV of {len(tlv.value)} octets", expected=">= 6")
            vendor, nak_type = struct.unpack_from("!IH", tlv.value)
            naks.append((vendor, nak_type))
        elif kind == TlvType.ERROR:
            if len(tlv.value) != 4:
                raise DecodeError(f"Error TLV of {len(tlv.value)} octets", expected="4")
            errors.append(int.from_bytes(tlv.value, "big"))
        elif kind == TlvType.REQUEST_ACTION:
            if len(tlv.value) < 2:
                raise DecodeError("Request-Action TLV shorter than 2 octets", expected=">= 2")
            actions.append((tlv.value[0], tlv.value[1]))
        elif kind == TlvType.IDENTITY_HINT:
            hints.append(tlv.value)
        elif tlv.mandatory:
            unsupported.append(kind)
        # optional TLVs we do not implement (_IGNORED and unassigned) are skipped
    return TeapMessage(
        result,
        intermediate,
        identity_type,
        payload,
        binding,
        bp_request,
        bp_response,
        authority,
        tuple(naks),
        tuple(errors),
        tuple(actions),
        tuple(hints),
        tuple(unsupported),
    )


# -- Outer TLVs (RFC 9930 §4.1) ------------------------------------------------------------------


def split_outer(type_data: bytes) -> tuple[bytes, bytes]:
    """``type_data`` without its Outer TLVs (O flag and length removed) and the Outer
    TLVs themselves (b"" when the O flag is clear).  The Outer TLVs must be well-formed
    TLVs, each marked optional (RFC 9930 §4.3.1)."""
    if not type_data or not type_data[0] & FLAG_OUTER:
        return type_data, b""
    flags = type_data[0]
    pos = 1
    message_length = b""
    if flags & FLAG_LENGTH:
        if len(type_data) < 5:
            raise DecodeError("TEAP message too short for its TLS Message Length", offset=1)
        message_length = type_data[1:5]
        pos = 5
    if len(type_data) < pos + 4:
        raise DecodeError("TEAP message too short for its Outer TLV Length", offset=pos)
    outer_length = int.from_bytes(type_data[pos : pos + 4], "big")
    rest = type_data[pos + 4 :]
    if outer_length > len(rest):
        raise DecodeError(
            f"Outer TLV Length {outer_length} runs past the end",
            offset=pos,
            expected=f"<= {len(rest)}",
        )
    cut = len(rest) - outer_length
    outer = rest[cut:]
    for tlv in decode_tlvs(outer):
        if tlv.mandatory:
            raise DecodeError(f"Outer TLV {tlv.type} marked mandatory", expected="optional")
    return bytes([flags & ~FLAG_OUTER]) + message_length + rest[:cut], outer


def with_outer(type_data: bytes, outer: bytes) -> bytes:
    """``type_data`` (EAP-TLS framing) with Outer TLVs added (O flag and length)."""
    if not outer:
        return type_data
    flags = type_data[0]
    pos = 5 if flags & FLAG_LENGTH else 1
    head = bytes([flags | FLAG_OUTER]) + type_data[1:pos]
    return head + len(outer).to_bytes(4, "big") + type_data[pos:] + outer
