"""TLVs carried by PEAP's EAP-TLV (type 33) extensions method ([MS-PEAP] §2.2.8,
draft-josefsson-pppext-eap-tls-eap-10 §4.2).

::

    |M|R|         TLV Type          |            Length             |
    |              Value ...

M: mandatory; R: reserved (0).  Length counts the value only.  PEAPv0 uses the Result
TLV (3), the Crypto-Binding TLV (12) and vendor TLVs (7, e.g. Microsoft's SoH); a
receiver fails on an unknown mandatory TLV and skips the others.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from eapkit.errors import DecodeError

__all__ = [
    "CryptoBinding",
    "Result",
    "Tlv",
    "TlvType",
    "decode_tlvs",
    "encode_tlvs",
    "split_tlvs",
]

_HEADER = struct.Struct("!HH")
_M = 0x8000
_R = 0x4000


class TlvType:
    RESULT = 3
    NAK = 4
    VENDOR_SPECIFIC = 7
    CRYPTO_BINDING = 12


class Result:
    """Result TLV values ([MS-PEAP] §2.2.8.1.1)."""

    SUCCESS = 1
    FAILURE = 2


@dataclass(frozen=True, slots=True)
class Tlv:
    type: int
    value: bytes
    mandatory: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.type < 0x4000:
            raise ValueError(f"TLV type {self.type} is not 14 bits")
        if len(self.value) > 0xFFFF:
            raise ValueError("TLV value too long")

    def encode(self) -> bytes:
        return _HEADER.pack(self.type | (_M if self.mandatory else 0), len(self.value)) + self.value

    @classmethod
    def result(cls, status: int) -> Tlv:
        return cls(TlvType.RESULT, status.to_bytes(2, "big"))


def encode_tlvs(tlvs: list[Tlv]) -> bytes:
    return b"".join(t.encode() for t in tlvs)


def split_tlvs(data: bytes, name: str = "TLV") -> list[tuple[int, bool, bytes]]:
    """Every (type, mandatory, value) in ``data``: the TLV framing PEAP's EAP-TLVs and
    TEAP's (RFC 9930 §4.2) share, M bit, R bit, 14-bit type, 16-bit length;
    :class:`DecodeError` on the first malformed header (``name`` says whose)."""
    out: list[tuple[int, bool, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise DecodeError(
                f"{name} header of {len(data) - pos} octets", offset=pos, expected="4 octets"
            )
        raw_type, length = _HEADER.unpack_from(data, pos)
        if pos + 4 + length > len(data):
            raise DecodeError(
                f"{name} length {length} runs past the end",
                offset=pos + 2,
                expected=f"<= {len(data) - pos - 4}",
            )
        out.append(
            (raw_type & 0x3FFF, bool(raw_type & _M), bytes(data[pos + 4 : pos + 4 + length]))
        )
        pos += 4 + length
    return out


def decode_tlvs(data: bytes) -> list[Tlv]:
    """Every TLV in ``data``; :class:`DecodeError` on the first malformed one."""
    return [Tlv(t, value, mandatory) for t, mandatory, value in split_tlvs(data)]


@dataclass(frozen=True, slots=True)
class CryptoBinding:
    """The Crypto-Binding TLV's value ([MS-PEAP] §2.2.8.1.2): 56 bytes."""

    version: int
    received_version: int
    subtype: int  # 0 Binding Request, 1 Binding Response
    nonce: bytes
    compound_mac: bytes

    REQUEST = 0
    RESPONSE = 1
    SIZE = 56

    def encode(self) -> bytes:
        if len(self.nonce) != 32 or len(self.compound_mac) != 20:
            raise ValueError("Crypto-Binding nonce is 32 bytes and its MAC 20")
        return (
            bytes((0, self.version, self.received_version, self.subtype))
            + self.nonce
            + self.compound_mac
        )

    @classmethod
    def decode(cls, value: bytes) -> CryptoBinding:
        if len(value) != cls.SIZE:
            raise DecodeError(
                f"Crypto-Binding TLV of {len(value)} bytes", offset=0, expected="56 bytes"
            )
        return cls(value[1], value[2], value[3], bytes(value[4:36]), bytes(value[36:56]))
