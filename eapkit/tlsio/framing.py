"""TLS records carried in EAP: the flags octet, fragmentation and reassembly.

RFC 5216 §3.1 (EAP-TLS), shared by EAP-TTLS (RFC 5281 §9.1) and PEAP::

     0 1 2 3 4 5 6 7
    +-+-+-+-+-+-+-+-+
    |L M S R R V V V|   L = TLS Message Length included, M = More fragments,
    +-+-+-+-+-+-+-+-+   S = Start, R = reserved, V = version (TTLS/PEAP only)
    |        TLS Message Length (4 octets, only when L is set)       |
    |        TLS data ...

- A TLS message (one flight of records) larger than the fragment size goes out in
  fragments; the first carries L and the total length, every one but the last
  carries M, and the other side acknowledges each fragment with an empty message
  (only the flags octet) before the next one is sent (§2.1.5).
- Reassembly trusts the announced length only up to a cap (64 KiB by default):
  more data than announced, a fragment that ends the message short, or a later
  fragment that announces a different length ends the conversation.
- The reserved bits are ignored on receipt (§3.1: "MUST be ignored").

Everything here is pure data: no TLS, no I/O.  :class:`Reassembler` and
:class:`Fragmenter` are the two halves of a half-duplex transfer, driven by
:class:`eapkit.tlsio.engine.TlsEapEngine`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from eapkit.errors import ConfigError, DecodeError

__all__ = [
    "DEFAULT_FRAGMENT_SIZE",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MAX_ROUNDS",
    "EapTlsFlags",
    "Fragment",
    "Fragmenter",
    "FramingConfig",
    "Reassembler",
]

# hostapd and wpa_supplicant default: 1398 bytes of TLS data per EAP message
DEFAULT_FRAGMENT_SIZE = 1398
DEFAULT_MAX_MESSAGE = 64 * 1024
# hostapd's default max_auth_rounds
DEFAULT_MAX_ROUNDS = 100
MIN_FRAGMENT_SIZE = 16
VERSION_MASK = 0x07
_LENGTH = struct.Struct("!I")


class EapTlsFlags(enum.IntFlag):
    """RFC 5216 §3.1: the flags octet (the low three bits are the TTLS/PEAP version)."""

    NONE = 0
    LENGTH_INCLUDED = 0x80
    MORE_FRAGMENTS = 0x40
    START = 0x20


_KNOWN = EapTlsFlags.LENGTH_INCLUDED | EapTlsFlags.MORE_FRAGMENTS | EapTlsFlags.START


@dataclass(frozen=True, slots=True)
class FramingConfig:
    """How this side fragments and what it accepts.

    ``fragment_size`` is the largest TLS payload per EAP message (hostapd's
    ``fragment_size``, 1398 by default); ``max_message`` caps one reassembled TLS
    message; ``max_rounds`` caps the EAP exchanges of one TLS conversation;
    ``always_include_length`` sets L on every first fragment, even an unfragmented one
    (some peers want it; RFC 5216 requires it only when fragmenting).
    """

    fragment_size: int = DEFAULT_FRAGMENT_SIZE
    max_message: int = DEFAULT_MAX_MESSAGE
    max_rounds: int = DEFAULT_MAX_ROUNDS
    always_include_length: bool = False

    def __post_init__(self) -> None:
        if self.fragment_size < MIN_FRAGMENT_SIZE:
            raise ConfigError(f"fragment_size must be at least {MIN_FRAGMENT_SIZE} bytes")
        if self.max_message < 1 or self.max_message > 0xFFFFFFFF:
            raise ConfigError("max_message must be between 1 and 2**32-1")
        if self.max_rounds < 1:
            raise ConfigError("max_rounds must be positive")


@dataclass(frozen=True, slots=True)
class Fragment:
    """One EAP-TLS/TTLS/PEAP Type-Data (RFC 5216 §3.1-3.2)."""

    flags: EapTlsFlags = EapTlsFlags.NONE
    data: bytes = b""
    length: int | None = None
    version: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.version <= VERSION_MASK:
            raise ValueError(f"version {self.version} does not fit in three bits")
        has_l = bool(self.flags & EapTlsFlags.LENGTH_INCLUDED)
        if has_l != (self.length is not None):
            raise ValueError("the L flag and the TLS Message Length go together")
        if self.length is not None and not 0 <= self.length <= 0xFFFFFFFF:
            raise ValueError("TLS Message Length is a 32-bit number")

    @property
    def more(self) -> bool:
        return bool(self.flags & EapTlsFlags.MORE_FRAGMENTS)

    @property
    def start(self) -> bool:
        return bool(self.flags & EapTlsFlags.START)

    @property
    def is_ack(self) -> bool:
        """An acknowledgement (or empty message): the flags octet alone, no L/M/S."""
        return not (self.flags & _KNOWN) and not self.data

    def encode(self) -> bytes:
        head = bytes([int(self.flags) | (self.reserved & 0x18) | self.version])
        if self.length is not None:
            head += _LENGTH.pack(self.length)
        return head + self.data

    @classmethod
    def decode(cls, type_data: bytes) -> Fragment:
        """Parse Type-Data; raises only :class:`DecodeError`."""
        if not type_data:
            raise DecodeError("empty EAP-TLS message", offset=0, expected="the flags octet")
        octet = type_data[0]
        flags = EapTlsFlags(octet & int(_KNOWN))
        if flags & EapTlsFlags.LENGTH_INCLUDED:
            if len(type_data) < 5:
                raise DecodeError(
                    "truncated TLS Message Length", offset=1, expected="4 length octets"
                )
            (length,) = _LENGTH.unpack_from(type_data, 1)
            return cls(flags, bytes(type_data[5:]), length, octet & VERSION_MASK, octet & 0x18)
        return cls(flags, bytes(type_data[1:]), None, octet & VERSION_MASK, octet & 0x18)


class Reassembler:
    """Collects the fragments of one TLS message (RFC 5216 §2.1.5, §3.1).

    :meth:`feed` returns the whole message once the last fragment arrived, ``None``
    while more are due (the caller then sends an ACK), and raises
    :class:`DecodeError` on any violation; after an error the instance is spent.
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._parts: list[bytes] = []
        self._received = 0
        self._total: int | None = None
        self._active = False

    @property
    def in_progress(self) -> bool:
        return self._active

    def completed_by(self, frag: Fragment) -> bytes | None:
        """The message :meth:`feed` of ``frag`` would return, if ``frag`` is a last
        fragment, without feeding it (no check of the lengths: a fragment that breaks
        them makes :meth:`feed` raise instead); None when ``frag`` says more follow."""
        if frag.more:
            return None
        return b"".join((*self._parts, frag.data)) if self._active else frag.data

    def _reset(self) -> None:
        self._parts = []
        self._received = 0
        self._total = None
        self._active = False

    def feed(self, frag: Fragment) -> bytes | None:
        if frag.start and self._active:
            self._reset()
            raise DecodeError("Start flag in the middle of a fragmented message")
        if not self._active:
            return self._first(frag)
        if frag.length is not None and frag.length != self._total:
            # Some peers repeat L on every fragment; a different value is a lie.
            announced = self._total
            self._reset()
            raise DecodeError(
                f"fragment announces {frag.length} bytes, first fragment {announced}",
                offset=1,
            )
        return self._add(frag)

    def _first(self, frag: Fragment) -> bytes | None:
        if frag.length is not None:
            if frag.length > self.max_message:
                raise DecodeError(
                    f"TLS message of {frag.length} bytes is over the {self.max_message} cap",
                    offset=1,
                    expected=f"at most {self.max_message}",
                )
            self._total = frag.length
        elif not frag.more:
            # An unfragmented message without L (the common case).
            if len(frag.data) > self.max_message:
                raise DecodeError(f"TLS message of {len(frag.data)} bytes is over the cap")
            return frag.data
        self._active = True
        return self._add(frag)

    def _add(self, frag: Fragment) -> bytes | None:
        size = len(frag.data)
        if frag.more and size == 0:
            self._reset()
            raise DecodeError("empty fragment with the M flag", offset=0)
        self._received += size
        total = self._total
        limit = total if total is not None else self.max_message
        if self._received > limit:
            self._reset()
            raise DecodeError(
                f"{self._received} bytes received, more than the {limit} announced or allowed",
                offset=0,
            )
        self._parts.append(frag.data)
        if frag.more:
            if total is not None and self._received == total:
                self._reset()
                raise DecodeError("M flag set but the announced length is complete")
            return None
        if total is not None and self._received != total:
            received = self._received
            self._reset()
            raise DecodeError(
                f"last fragment ends the message at {received} of {total} announced bytes"
            )
        message = b"".join(self._parts)
        self._reset()
        return message


class Fragmenter:
    """Cuts one outgoing TLS message into fragments (RFC 5216 §3.1)."""

    def __init__(
        self,
        message: bytes,
        fragment_size: int = DEFAULT_FRAGMENT_SIZE,
        *,
        version: int = 0,
        always_include_length: bool = False,
    ) -> None:
        self._message = message
        self._size = fragment_size
        self._version = version
        self._always_length = always_include_length
        self._pos = 0
        self._sent_any = False

    @property
    def done(self) -> bool:
        return self._sent_any and self._pos >= len(self._message)

    @property
    def remaining(self) -> int:
        return len(self._message) - self._pos

    def next_fragment(self) -> Fragment:
        """The next fragment; M is set while more remain after it."""
        if self.done:
            raise RuntimeError("the message has been sent")
        chunk = self._message[self._pos : self._pos + self._size]
        first = self._pos == 0
        self._pos += len(chunk)
        self._sent_any = True
        more = self._pos < len(self._message)
        flags = EapTlsFlags.NONE
        length: int | None = None
        if first and (more or self._always_length):
            flags |= EapTlsFlags.LENGTH_INCLUDED
            length = len(self._message)
        if more:
            flags |= EapTlsFlags.MORE_FRAGMENTS
        return Fragment(flags, chunk, length, self._version)


def fragments(
    message: bytes,
    fragment_size: int = DEFAULT_FRAGMENT_SIZE,
    *,
    version: int = 0,
    always_include_length: bool = False,
) -> list[Fragment]:
    """All fragments of ``message`` at once (tests and vectors)."""
    cutter = Fragmenter(
        message, fragment_size, version=version, always_include_length=always_include_length
    )
    out = [cutter.next_fragment()]
    while not cutter.done:
        out.append(cutter.next_fragment())
    return out
