"""The one injectable source of randomness (DESIGN.md: every conversation can be replayed).

Production code uses :class:`SystemRandom` (``os.urandom``).  Tests pass a
:class:`DeterministicRandom` so that a conversation produces the same bytes every run.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol


class RandomSource(Protocol):
    def random_bytes(self, n: int) -> bytes:
        """``n`` unpredictable bytes."""
        ...


class SystemRandom:
    """The operating system's CSPRNG."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)


class DeterministicRandom:
    """SHA-256 in counter mode over a seed: for tests only, never for keys in service."""

    def __init__(self, seed: bytes | str | int = 0) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(8, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = seed
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return bytes(out[:n])


SYSTEM_RANDOM = SystemRandom()
