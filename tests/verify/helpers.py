"""Shared fixtures of the verifier tests: fixed keys, fresh verifiers, a failing store."""

from __future__ import annotations

from typing import NoReturn

from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore, Sealer, StoreUnavailable

SEAL_KEY = bytes(range(32))
RFC_SECRET = b"12345678901234567890"
NOW = 1_700_000_000.0  # a step boundary: 1_700_000_000 / 30 = 56666666.67, not one


def sealer(seed: int = 0) -> Sealer:
    return Sealer({"test1": SEAL_KEY}, rand=DeterministicRandom(seed))


class DownStore(MemoryStore):
    """A store whose backend went away after enrollment: every read or write fails."""

    down = False

    def _fail(self) -> NoReturn:
        raise StoreUnavailable("test store: down")

    def get(self, key: str) -> bytes | None:
        return self._fail() if self.down else super().get(key)

    def counter(self, key: str) -> int | None:
        return self._fail() if self.down else super().counter(key)

    def advance(self, key: str, value: int) -> bool:
        return self._fail() if self.down else super().advance(key, value)

    def tally(self, key: str, now: float) -> tuple[int, float]:
        return self._fail() if self.down else super().tally(key, now)

    def incr(self, key: str, ttl: float, now: float) -> int:
        return self._fail() if self.down else super().incr(key, ttl, now)

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        if self.down:
            return self._fail()
        return super().advance_unless_locked(key, value, tally_key, limit, now)
