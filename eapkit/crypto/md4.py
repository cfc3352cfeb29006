"""MD4 (RFC 1320), which MS-CHAP needs for the NT password hash (RFC 2759 §8.3).

``cryptography`` offers no MD4 and OpenSSL 3 keeps it in the legacy provider, which
Python's ``hashlib`` usually cannot reach.  :func:`md4` uses ``hashlib`` when the running
OpenSSL offers it and otherwise this small transcription of RFC 1320 §3.  MD4 is broken
as a hash function; it is here only because the protocol fixes it.  The inputs MS-CHAP
gives it are short (a password of at most 256 characters, a 16-byte hash), so speed is
not a concern: the server's hot path caches what it derives from MD4 (see
:mod:`eapkit.crypto.mschap`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

__all__ = ["HASHLIB_HAS_MD4", "md4", "md4_pure"]

_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<16I")


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


# RFC 1320 §3.4: the order in which each round reads the 16 words, and its shifts.
_ROUND2_ORDER = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_SHIFTS = ((3, 7, 11, 19), (3, 5, 9, 13), (3, 9, 11, 15))


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = _WORDS.unpack(block)
    a, b, c, d = state
    # Round 1: F(X,Y,Z) = XY v not(X) Z
    s = _SHIFTS[0]
    for i in range(16):
        f = (b & c) | (~b & d)
        a, b, c, d = d, _rotl((a + f + x[i]) & _MASK, s[i % 4]), b, c
    # Round 2: G(X,Y,Z) = XY v XZ v YZ, plus the constant sqrt(2)
    s = _SHIFTS[1]
    for i, k in enumerate(_ROUND2_ORDER):
        g = (b & c) | (b & d) | (c & d)
        a, b, c, d = d, _rotl((a + g + x[k] + 0x5A827999) & _MASK, s[i % 4]), b, c
    # Round 3: H(X,Y,Z) = X xor Y xor Z, plus the constant sqrt(3)
    s = _SHIFTS[2]
    for i, k in enumerate(_ROUND3_ORDER):
        h = b ^ c ^ d
        a, b, c, d = d, _rotl((a + h + x[k] + 0x6ED9EBA1) & _MASK, s[i % 4]), b, c
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def md4_pure(data: bytes) -> bytes:
    """MD4 of ``data`` in pure Python (RFC 1320 §3.1-3.5)."""
    bit_length = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    # §3.1-3.2: a 1 bit, zeros to 448 mod 512, then the length as a 64-bit little-endian
    padded = bytes(data) + b"\x80" + b"\x00" * ((55 - len(data)) % 64)
    padded += struct.pack("<Q", bit_length)
    state = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)  # §3.3
    for offset in range(0, len(padded), 64):
        state = _compress(state, padded[offset : offset + 64])
    return struct.pack("<4I", *state)


def _hashlib_md4() -> Callable[[bytes], bytes] | None:
    try:
        hashlib.new("md4", b"")  # noqa: S324 - the protocol fixes MD4
    except ValueError:
        return None

    def digest(data: bytes) -> bytes:
        return hashlib.new("md4", data).digest()  # noqa: S324

    # Trust the library only if it agrees with RFC 1320 §A.5 on one input.
    return digest if digest(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d" else None


_FAST = _hashlib_md4()
HASHLIB_HAS_MD4 = _FAST is not None


def md4(data: bytes) -> bytes:
    """MD4 of ``data`` (16 bytes), through OpenSSL when it offers MD4."""
    if _FAST is not None:
        return _FAST(data)
    return md4_pure(data)
