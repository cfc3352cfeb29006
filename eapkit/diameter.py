"""Diameter AVPs as EAP-TTLS carries them (RFC 5281 §10).

::

     0                   1                   2                   3
    |                           AVP Code                            |
    |V M r r r r r r|                  AVP Length                   |
    |                        Vendor-ID (opt)                        |
    |    Data ...
                                               padding to 4 bytes

AVP Length counts the header (8 bytes, 12 with Vendor-ID) and the data, not the
padding.  Every AVP starts on a 4-byte boundary.  An AVP the receiver does not know
with the M (mandatory) bit set ends the conversation (§10.1); others are ignored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from eapkit.errors import DecodeError

__all__ = [
    "FLAG_MANDATORY",
    "FLAG_VENDOR",
    "MICROSOFT",
    "Avp",
    "AvpCode",
    "decode_avps",
    "encode_avps",
    "find",
    "unknown_mandatory",
]

FLAG_VENDOR = 0x80
FLAG_MANDATORY = 0x40
MICROSOFT = 311
_HEADER = struct.Struct("!IB3s")
_MAX_LENGTH = 0xFFFFFF


class AvpCode:
    """AVP codes EAP-TTLS uses (RADIUS attribute numbers, RFC 5281 §11; vendor 311
    for the MS-CHAP ones, RFC 2548)."""

    USER_NAME = 1
    USER_PASSWORD = 2
    CHAP_PASSWORD = 3
    REPLY_MESSAGE = 18
    CHAP_CHALLENGE = 60
    EAP_MESSAGE = 79
    # vendor 311 (Microsoft)
    MS_CHAP_ERROR = 2
    MS_CHAP_RESPONSE = 1
    MS_CHAP_CHALLENGE = 11
    MS_CHAP2_RESPONSE = 25
    MS_CHAP2_SUCCESS = 26


@dataclass(frozen=True, slots=True)
class Avp:
    """One AVP.  ``vendor_id`` is None when the V bit is clear."""

    code: int
    data: bytes
    vendor_id: int | None = None
    mandatory: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFFFFFFFF:
            raise ValueError(f"AVP code {self.code} is not a 32-bit number")
        if self.vendor_id is not None and not 0 <= self.vendor_id <= 0xFFFFFFFF:
            raise ValueError(f"Vendor-ID {self.vendor_id} is not a 32-bit number")
        if self.header_size + len(self.data) > _MAX_LENGTH:
            raise ValueError("AVP too long for the 24-bit length")

    @property
    def header_size(self) -> int:
        return 8 if self.vendor_id is None else 12

    @property
    def key(self) -> tuple[int, int]:
        """(vendor, code), vendor 0 when there is none."""
        return (self.vendor_id or 0, self.code)

    def encode(self) -> bytes:
        flags = FLAG_MANDATORY if self.mandatory else 0
        length = self.header_size + len(self.data)
        out = bytearray(
            _HEADER.pack(
                self.code,
                flags | (FLAG_VENDOR if self.vendor_id is not None else 0),
                length.to_bytes(3, "big"),
            )
        )
        if self.vendor_id is not None:
            out += self.vendor_id.to_bytes(4, "big")
        out += self.data
        out += bytes(-length % 4)
        return bytes(out)


def encode_avps(avps: Iterable[Avp]) -> bytes:
    return b"".join(a.encode() for a in avps)


def iter_avps(data: bytes) -> Iterator[Avp]:
    """Decode AVPs one by one; raises :class:`DecodeError` on the first malformed one.

    The last AVP may lack its padding (hostapd and FreeRADIUS accept that, too).
    """
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 8:
            raise DecodeError(
                f"AVP header of {end - pos} bytes", offset=pos, expected="at least 8 bytes"
            )
        code, flags, raw_len = _HEADER.unpack_from(data, pos)
        length = int.from_bytes(raw_len, "big")
        header = 12 if flags & FLAG_VENDOR else 8
        if length < header:
            raise DecodeError(
                f"AVP Length {length} below its header size",
                offset=pos + 5,
                expected=f">= {header}",
            )
        if pos + length > end:
            raise DecodeError(
                f"AVP Length {length} runs past the end", offset=pos + 5, expected=f"<= {end - pos}"
            )
        vendor = int.from_bytes(data[pos + 8 : pos + 12], "big") if flags & FLAG_VENDOR else None
        yield Avp(
            code, bytes(data[pos + header : pos + length]), vendor, bool(flags & FLAG_MANDATORY)
        )
        pos += length + (-length % 4)


def decode_avps(data: bytes) -> list[Avp]:
    """All AVPs in ``data`` (RFC 5281 §10.1)."""
    return list(iter_avps(data))


def find(avps: Sequence[Avp], code: int, vendor_id: int | None = None) -> Avp | None:
    """The first AVP with this code (and vendor)."""
    for avp in avps:
        if avp.code == code and avp.vendor_id == vendor_id:
            return avp
    return None


def unknown_mandatory(avps: Sequence[Avp], known: set[tuple[int, int]]) -> Avp | None:
    """The first AVP with the M bit whose (vendor, code) is not in ``known`` (§10.1:
    the receiver must then fail the conversation)."""
    for avp in avps:
        if avp.mandatory and avp.key not in known:
            return avp
    return None
