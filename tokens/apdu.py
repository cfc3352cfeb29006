"""APDU and BER-TLV codecs shared by the drivers and the virtual cards.

ISO/IEC 7816-4:2013 section 5.1 (command-response pairs, short and extended length
fields) and section 5.2 / ISO 8825-1 (BER-TLV data objects, as used by PIV, OATH and
the YubiKey applets).  Card-side decoders of untrusted bytes raise only
:class:`eapkit.errors.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eapkit.errors import DecodeError, need

__all__ = [
    "Apdu",
    "parse_tlvs",
    "tlv",
    "tlv_dict",
]

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536


@dataclass(frozen=True, slots=True)
class Apdu:
    """One command APDU (ISO 7816-4 section 5.1).

    ``le`` is Ne, the number of response bytes expected: None for "no Le field",
    otherwise 1..65536 (256 and 65536 encode as 00 / 0000).
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def encode(self, extended: bool = False) -> bytes:
        """The APDU bytes, short form unless ``extended`` (section 5.1, table 1 cases)."""
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        lc, le = len(self.data), self.le
        if not extended:
            if lc > SHORT_MAX_LC or (le is not None and not 1 <= le <= SHORT_MAX_LE):
                raise ValueError("does not fit a short APDU: chain it or use extended length")
            out = header
            if lc:
                out += bytes((lc,)) + self.data
            if le is not None:
                out += bytes((le & 0xFF,))
            return out
        if lc > EXTENDED_MAX_LC or (le is not None and not 1 <= le <= EXTENDED_MAX_LE):
            raise ValueError("APDU too long even for extended length")
        out = header
        if lc:
            out += b"\x00" + lc.to_bytes(2, "big") + self.data
        if le is not None:
            le_field = (le & 0xFFFF).to_bytes(2, "big")
            out += le_field if lc else b"\x00" + le_field
        return out

    @property
    def chained(self) -> bool:
        """CLA bit b5: more command data follows in the next APDU (section 5.4.1)."""
        return bool(self.cla & 0x10)

    @classmethod
    def decode(cls, raw: bytes) -> Apdu:
        """Parse a command APDU of any of the seven cases of ISO 7816-4 section 5.1."""
        need(raw, 0, 4, "APDU header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        n = len(body)
        if n == 0:  # case 1
            return cls(cla, ins, p1, p2)
        if n == 1:  # case 2S
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        if body[0] != 0 or n < 3:
            lc = body[0]
            if lc == 0:
                raise DecodeError("short Lc of zero", offset=4, expected="Lc 1..255")
            if n == 1 + lc:  # case 3S
                return cls(cla, ins, p1, p2, bytes(body[1:]))
            if n == 2 + lc:  # case 4S
                return cls(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[-1] or 256)
            raise DecodeError(
                "APDU body length does not match Lc", offset=4, expected=f"{lc} data bytes"
            )
        # extended forms: first byte 00 then two bytes
        if n == 3:  # case 2E
            le = int.from_bytes(body[1:3], "big")
            return cls(cla, ins, p1, p2, b"", le or 65536)
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise DecodeError("extended Lc of zero", offset=5, expected="Lc 1..65535")
        if n == 3 + lc:  # case 3E
            return cls(cla, ins, p1, p2, bytes(body[3:]))
        if n == 5 + lc:  # case 4E
            le = int.from_bytes(body[-2:], "big")
            return cls(cla, ins, p1, p2, bytes(body[3 : 3 + lc]), le or 65536)
        raise DecodeError(
            "extended APDU body length does not match Lc", offset=5, expected=f"{lc} data bytes"
        )


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def tlv(tag: int, value: bytes = b"") -> bytes:
    """One BER-TLV data object (ISO 8825-1 section 8.1): tag of 1..3 bytes, definite length."""
    size = max(1, (tag.bit_length() + 7) // 8)
    return tag.to_bytes(size, "big") + _encode_length(len(value)) + value


def _iter_tlvs(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(data):
        start = pos
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag number
            while True:
                need(data, pos, 1, "BER-TLV tag")
                b = data[pos]
                tag = (tag << 8) | b
                pos += 1
                if not b & 0x80:
                    break
                if pos - start > 3:
                    raise DecodeError("tag longer than 3 bytes", offset=start)
        need(data, pos, 1, "BER-TLV length")
        first = data[pos]
        pos += 1
        if first < 0x80:
            length = first
        elif first in (0x81, 0x82, 0x83):
            count = first & 0x7F
            need(data, pos, count, "BER-TLV long length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        else:
            raise DecodeError("unsupported BER length form", offset=pos - 1, expected="< 0x84")
        need(data, pos, length, f"value of tag {tag:X}")
        yield tag, bytes(data[pos : pos + length])
        pos += length


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """All data objects of a BER-TLV sequence, in order (ISO 8825-1 section 8.1)."""
    return list(_iter_tlvs(data))


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """The data objects of a sequence by tag (the first one of each tag wins)."""
    out: dict[int, bytes] = {}
    for tag, value in _iter_tlvs(data):
        out.setdefault(tag, value)
    return out
