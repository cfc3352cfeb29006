"""PEAP's inner-message framing, shared by both roles of :mod:`eapkit.methods.peap`.

- PEAPv0 ([MS-PEAP] §2.2.8, draft-kamath-pppext-peapv0-00): inner Requests and Responses
  go into the tunnel without their 4-byte EAP header (:func:`strip_header`,
  :func:`with_header`); Extensions messages (EAP-TLV, type 33) keep it.
- PEAPv1 (draft-josefsson-pppext-eap-tls-eap-05 §2.1.1): whole inner packets; the
  version is the low three bits of the flags octet (:func:`version_bits`).
- The Extensions message's Result and Crypto-Binding TLVs ([MS-PEAP] §2.2.8.1/§2.2.8.2):
  :func:`parse_extensions` raises only :class:`~eapkit.errors.DecodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from eapkit.eap_tlv import CryptoBinding, Tlv, TlvType, decode_tlvs, encode_tlvs
from eapkit.errors import DecodeError
from eapkit.packet import Code, EapType

__all__ = [
    "HEADER",
    "Tlvs",
    "extensions",
    "is_full_request",
    "is_full_response",
    "parse_extensions",
    "strip_header",
    "version_bits",
    "with_header",
]

HEADER = struct.Struct("!BBH")  # Code, Identifier, Length (RFC 3748 §4)


def version_bits(type_data: bytes) -> int | None:
    """The PEAP version in a message's flags octet (RFC 5216 §3.1 layout)."""
    return type_data[0] & 0x07 if type_data else None


def strip_header(packet: bytes) -> bytes:
    """What goes into the tunnel for an inner packet: Extensions messages whole, every
    other Request/Response without its 4-byte header."""
    if len(packet) > 4 and packet[4] == EapType.TLV:
        return packet
    return packet[4:]


def with_header(code: int, identifier: int, body: bytes) -> bytes | None:
    if len(body) + 4 > 0xFFFF:
        return None
    return HEADER.pack(code, identifier, len(body) + 4) + body


def is_full_request(data: bytes, eap_type: int) -> bool:
    """A whole EAP Request of ``eap_type`` whose Length matches (wpa_supplicant's test)."""
    return (
        len(data) >= 5
        and data[0] == Code.REQUEST
        and data[4] == eap_type
        and HEADER.unpack_from(data)[2] == len(data)
    )


@dataclass(frozen=True, slots=True)
class Tlvs:
    """What an Extensions message said."""

    result: int | None
    binding: CryptoBinding | None
    binding_mandatory: bool


def parse_extensions(body: bytes) -> Tlvs:
    """Result and Crypto-Binding TLVs of an Extensions message's Type-Data; other TLVs
    are skipped unless mandatory.  Raises :class:`DecodeError`."""
    result: int | None = None
    binding: CryptoBinding | None = None
    binding_mandatory = False
    for tlv in decode_tlvs(body):
        if tlv.type == TlvType.RESULT:
            if len(tlv.value) != 2:
                raise DecodeError(f"Result TLV of {len(tlv.value)} bytes", expected="2 bytes")
            if result is not None:
                raise DecodeError("two Result TLVs")
            result = int.from_bytes(tlv.value, "big")
        elif tlv.type == TlvType.CRYPTO_BINDING:
            if binding is not None:
                raise DecodeError("two Crypto-Binding TLVs")
            binding = CryptoBinding.decode(tlv.value)
            binding_mandatory = tlv.mandatory
        elif tlv.mandatory:
            raise DecodeError(f"unsupported mandatory TLV {tlv.type}")
    return Tlvs(result, binding, binding_mandatory)


def extensions(code: Code, identifier: int, tlvs: list[Tlv]) -> bytes:
    body = bytes([EapType.TLV]) + encode_tlvs(tlvs)
    packet = with_header(code, identifier, body)
    assert packet is not None  # a Result and a Crypto-Binding TLV are 70 bytes
    return packet


def is_full_response(data: bytes, identifier: int) -> bool:
    return (
        len(data) >= 5
        and data[0] == Code.RESPONSE
        and data[1] == identifier
        and data[4] == EapType.TLV
        and HEADER.unpack_from(data)[2] == len(data)
    )
