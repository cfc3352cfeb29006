"""Mutations for the fuzzer (:mod:`tests.security.fuzz`): an EAP packet made wrong.

- EAP header (RFC 3748 §4): Code, Identifier, Length, Type; truncated or overlong
  Type-Data; Nak lists (§5.3.1), Expanded Types and Expanded Naks (§5.7);
- TLS framing inside EAP-TLS, TTLS and PEAP (RFC 5216 §3.1, RFC 5281 §9.1): L/M/S and
  version flags, TLS Message Length, fragments that lie, acknowledgements out of turn;
- TLS records (RFC 8446 §5.1): bit flips, record type, version and length, extra records;
- tunnelled plaintext (TTLS AVPs, RFC 5281 §10.1; PEAP's inner EAP): headers and lengths.

Every mutator takes a :class:`random.Random`, so a seed replays its choices.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "EAP_MUTATORS",
    "TLS_MUTATORS",
    "TlsMessage",
    "mutate",
    "mutate_plaintext",
    "tls_fragments",
]

TLS_TYPES = (13, 21, 25)  # EAP-TLS, EAP-TTLS, PEAP: the RFC 5216 §3.1 flags octet
# -- mutations of an EAP packet ---------------------------------------------------------------


def _fix_length(p: bytes) -> bytes:
    return p[:2] + struct.pack("!H", len(p)) + p[4:] if len(p) >= 4 else p


def _flip(r: random.Random, data: bytes, bits: int) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(bits):
        i = r.randrange(len(out))
        out[i] ^= 1 << r.randrange(8)
    return bytes(out)


def m_code(r: random.Random, p: bytes) -> bytes:
    return bytes([r.choice([0, 1, 3, 4, 5, 6, 255, r.randrange(256)])]) + p[1:]


def m_identifier(r: random.Random, p: bytes) -> bytes:
    return p[:1] + bytes([(p[1] + r.randrange(1, 256)) & 0xFF]) + p[2:] if len(p) > 1 else p


def m_length(r: random.Random, p: bytes) -> bytes:
    n = len(p)
    value = r.choice([0, 1, 4, 5, max(n - 1, 0), n + 1, n + 100, 0xFFFF, r.randrange(0x10000)])
    return p[:2] + struct.pack("!H", value) + p[4:]


def m_type(r: random.Random, p: bytes) -> bytes:
    t = r.choice([0, 1, 2, 3, 4, 5, 6, 13, 21, 25, 26, 33, 43, 254, 255, r.randrange(256)])
    return _fix_length(p[:4] + bytes([t]) + p[5:]) if len(p) >= 5 else p + bytes([t])


def m_nak(r: random.Random, p: bytes) -> bytes:
    """A legacy Nak (RFC 3748 §5.3.1) with an odd list: empty, zeros, 254, repeats."""
    wanted = bytes(r.choice([0, 3, 4, 6, 13, 21, 25, 26, 254, 255]) for _ in range(r.randrange(9)))
    return _fix_length(p[:4] + b"\x03" + wanted)


def m_expanded(r: random.Random, p: bytes) -> bytes:
    """An Expanded Type (RFC 3748 §5.7): a vendor's method, or an Expanded Nak whose list
    may not be a whole number of 8-octet entries."""
    if r.random() < 0.5:
        entries = b"".join(
            b"\xfe"
            + r.choice([0, 0x137, r.randrange(1 << 24)]).to_bytes(3, "big")
            + r.choice([0, 3, 13, 21, 25, 26, r.randrange(1 << 32)]).to_bytes(4, "big")
            for _ in range(r.randrange(4))
        )
        body = b"\x00\x00\x00" + struct.pack("!I", 3) + entries[: len(entries) - r.randrange(3)]
    else:
        vendor = r.choice([0, 0x137, r.randrange(1 << 24)]).to_bytes(3, "big")
        body = vendor + struct.pack("!I", r.randrange(1 << 32)) + r.randbytes(r.randrange(40))
    return _fix_length(p[:4] + b"\xfe" + body[: r.choice([len(body), r.randrange(len(body) + 1)])])


def m_truncate(r: random.Random, p: bytes) -> bytes:
    cut = p[: r.randrange(len(p))] if p else p
    return _fix_length(cut) if r.random() < 0.5 else cut


def m_extend(r: random.Random, p: bytes) -> bytes:
    more = p + r.randbytes(r.randrange(1, 700))
    return _fix_length(more) if r.random() < 0.7 else more


def m_random(r: random.Random, p: bytes) -> bytes:
    return r.randbytes(r.randrange(0, 300))


def m_empty(r: random.Random, p: bytes) -> bytes:
    return b""


def m_bitflip(r: random.Random, p: bytes) -> bytes:
    return _flip(r, p, r.randrange(1, 9))


Mutator = Callable[[random.Random, bytes], bytes]
EAP_MUTATORS: list[tuple[str, Mutator]] = [
    ("code", m_code),
    ("identifier", m_identifier),
    ("length", m_length),
    ("type", m_type),
    ("nak", m_nak),
    ("expanded", m_expanded),
    ("truncate", m_truncate),
    ("extend", m_extend),
    ("random", m_random),
    ("empty", m_empty),
    ("bitflip", m_bitflip),
]


# -- mutations of the TLS framing and records inside EAP-TLS, TTLS, PEAP ------------------------


@dataclass
class TlsMessage:
    """The Type-Data of an EAP-TLS-like packet, taken apart (RFC 5216 §3.1)."""

    head: bytes  # Code, Identifier, Length, Type
    flags: int
    length: bytes | None
    data: bytes

    @classmethod
    def parse(cls, p: bytes) -> TlsMessage | None:
        if len(p) < 6 or p[4] not in TLS_TYPES:
            return None
        flags = p[5]
        if flags & 0x80 and len(p) >= 10:
            return cls(p[:5], flags, p[6:10], p[10:])
        return cls(p[:5], flags, None, p[6:])

    def encode(self, fix: bool = True) -> bytes:
        out = self.head + bytes([self.flags]) + (self.length or b"") + self.data
        return _fix_length(out) if fix else out


def _records(data: bytes) -> list[int]:
    """Offsets of the TLS record headers in ``data`` (RFC 8446 §5.1)."""
    offsets, i = [], 0
    while i + 5 <= len(data):
        offsets.append(i)
        i += 5 + struct.unpack_from("!H", data, i + 3)[0]
    return offsets


def t_flags(r: random.Random, m: TlsMessage) -> None:
    new = (
        (r.randrange(8) << 5) | (m.flags & 0x07) | (r.randrange(4) << 3 if r.random() < 0.2 else 0)
    )
    if r.random() < 0.2:
        new = (new & 0xF8) | r.randrange(8)  # TTLS/PEAP version bits
    if new & 0x80 and m.length is None:
        m.length = struct.pack("!I", len(m.data))
    if not new & 0x80:
        m.length = None
    m.flags = new


def t_message_length(r: random.Random, m: TlsMessage) -> None:
    n = len(m.data)
    m.flags |= 0x80
    value = r.choice([0, 1, max(n - 1, 0), n + 1, 65536, 65537, 0xFFFFFFFF, r.randrange(1 << 32)])
    m.length = struct.pack("!I", value)


def t_bitflip(r: random.Random, m: TlsMessage) -> None:
    m.data = _flip(r, m.data, r.randrange(1, 6))


def t_record_header(r: random.Random, m: TlsMessage) -> None:
    offsets = _records(m.data)
    if not offsets:
        m.data = r.randbytes(5) + m.data
        return
    i = r.choice(offsets)
    data = bytearray(m.data)
    what = r.randrange(3)
    if what == 0:  # content type
        data[i] = r.choice([0, 20, 21, 22, 23, 24, 255])
    elif what == 1:  # legacy version
        data[i + 1 : i + 3] = r.choice([b"\x03\x01", b"\x03\x04", b"\x02\x00", b"\xff\xff"])
    else:  # length
        value = r.choice([0, 1, 0x4000, 0x4001, 0xFFFF, r.randrange(0x10000)])
        data[i + 3 : i + 5] = struct.pack("!H", value)
    m.data = bytes(data)


def t_extra_record(r: random.Random, m: TlsMessage) -> None:
    """A record after the handshake or in its middle: application data, an alert,
    ChangeCipherSpec, a heartbeat."""
    body = r.randbytes(r.randrange(0, 200))
    kind = r.choice([20, 21, 22, 23, 24])
    m.data += bytes([kind]) + b"\x03\x03" + struct.pack("!H", len(body)) + body


def t_truncate(r: random.Random, m: TlsMessage) -> None:
    m.data = m.data[: r.randrange(len(m.data) + 1)]


def t_ack(r: random.Random, m: TlsMessage) -> None:
    """An empty message (an acknowledgement, RFC 5216 §2.1.5) where none is expected."""
    m.flags &= 0x07
    m.length, m.data = None, b""


TlsMutator = Callable[[random.Random, TlsMessage], None]
TLS_MUTATORS: list[tuple[str, TlsMutator]] = [
    ("tls_flags", t_flags),
    ("tls_message_length", t_message_length),
    ("tls_bitflip", t_bitflip),
    ("tls_record_header", t_record_header),
    ("tls_extra_record", t_extra_record),
    ("tls_truncate", t_truncate),
    ("tls_ack", t_ack),
]


def tls_fragments(r: random.Random, p: bytes) -> list[bytes]:
    """The message cut in fragments whose L/M flags and TLS Message Length lie."""
    m = TlsMessage.parse(p)
    if m is None or len(m.data) < 2:
        return [p]
    cut = r.randrange(1, len(m.data))
    parts = [m.data[:cut], m.data[cut:]]
    out = []
    for i, part in enumerate(parts):
        flags = m.flags & 0x07
        if i == 0 or r.random() < 0.3:
            flags |= 0x80
        if (i == 0 and r.random() < 0.7) or r.random() < 0.2:
            flags |= 0x40
        total = len(m.data) + r.choice([0, 0, -1, 1, 1000])
        length = struct.pack("!I", max(total, 0)) if flags & 0x80 else None
        out.append(TlsMessage(m.head, flags, length, part).encode())
    return out[: r.choice([1, 2, 2])]


def mutate(r: random.Random, p: bytes) -> tuple[str, list[bytes]]:
    """One mutation of the EAP packet ``p``: its name and the packets to send instead."""
    m = TlsMessage.parse(p)
    if m is not None and r.random() < 0.75:
        if r.random() < 0.15:
            return "tls_fragments", tls_fragments(r, p)
        name, tls_mutator = r.choice(TLS_MUTATORS)
        tls_mutator(r, m)
        return name, [m.encode(fix=r.random() < 0.9)]
    name, mutator = r.choice(EAP_MUTATORS)
    return name, [mutator(r, p)]


def mutate_plaintext(r: random.Random, data: bytes) -> bytes:
    """Inner data (TTLS AVPs, RFC 5281 §10.1; PEAP inner EAP / TLVs) made wrong: flipped
    bits in the headers, wrong lengths, cut short, garbage after."""
    choice = r.randrange(5)
    if choice == 0 and data:
        return _flip(r, data[:12], r.randrange(1, 4)) + data[12:]
    if choice == 1:
        return data[: r.randrange(len(data) + 1)]
    if choice == 2:
        return data + r.randbytes(r.randrange(1, 64))
    if choice == 3 and len(data) >= 8:  # an AVP or EAP length field
        at = r.choice([2, 5, 6])
        return data[:at] + r.randbytes(2) + data[at + 2 :]
    return _flip(r, data, r.randrange(1, 8))
