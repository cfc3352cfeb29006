"""In-process store: tests, benchmarks and single-process deployments.

One dict under one lock; the same semantics as the SQLite and Redis backends (the
contract tests run against all three), but nothing survives the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eapkit.store.base import MAX_COUNTER, check_counter, check_ttl

__all__ = ["MemoryStore"]

_ADVANCED = (True, 0, 0.0)
_REFUSED = (False, 0, 0.0)


class MemoryStore:
    """A :class:`~eapkit.store.base.Store` in a dict.  Never raises StoreUnavailable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, bytes] = {}
        self._counters: dict[str, int] = {}
        # key -> (count, last increment, expires at)
        self._tallies: dict[str, tuple[int, float, float]] = {}
        # key -> (value, expires at)
        self._tokens: dict[str, tuple[bytes, float]] = {}

    def get(self, key: str) -> bytes | None:
        return self._records.get(key)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._drop(key)
            self._records[key] = bytes(value)

    def record_keys(self, after: str = "", limit: int | None = None) -> list[str]:
        keys = sorted(k for k in self._records if k > after)
        return keys if limit is None else keys[:limit]

    def swap(self, key: str, old: bytes, new: bytes, delete: Sequence[str] = ()) -> bool:
        """Replace the record under ``key`` with ``new`` iff it is still ``old`` and, in
        the same step, delete ``delete`` (:mod:`eapkit.store.rekey`, :mod:`eapkit.reset`)."""
        with self._lock:
            if self._records.get(key) != old:
                return False
            for doomed in delete:
                self._drop(doomed)
            self._records[key] = bytes(new)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._drop(key)

    def _drop(self, key: str) -> bool:
        found = False
        for family in self._families():
            if family.pop(key, None) is not None:
                found = True
        return found

    def _families(self) -> tuple[dict[str, Any], ...]:
        return (self._records, self._counters, self._tallies, self._tokens)

    def counter(self, key: str) -> int | None:
        return self._counters.get(key)

    def advance(self, key: str, value: int) -> bool:
        if value.__class__ is not int or not 0 <= value <= MAX_COUNTER:
            check_counter(value)  # raises; inline test first, this is a hot path
        lock = self._lock
        lock.acquire()
        try:
            current = self._counters.get(key)
            if current is not None and value <= current:
                return False
            self._counters[key] = value
            return True
        finally:
            lock.release()

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        if value is not None and (value.__class__ is not int or not 0 <= value <= MAX_COUNTER):
            check_counter(value)  # raises; inline test first, this is a hot path
        lock = self._lock
        lock.acquire()
        try:
            if tally_key in self._tallies:
                return self._advance_with_tally(key, value, tally_key, limit, now)
            # no failures on record, the usual case
            if value is None:
                return _REFUSED
            counters = self._counters
            if value <= counters.get(key, -1):
                return _REFUSED
            counters[key] = value
            return _ADVANCED
        finally:
            lock.release()

    def _advance_with_tally(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        # called with the lock held
        count, last, expires = self._tallies[tally_key]
        if expires <= now:
            count, last = 0, 0.0
        elif count >= limit:
            return (False, count, last)
        if value is None:
            return (False, count, last)
        current = self._counters.get(key)
        if current is not None and value <= current:
            return (False, count, last)
        self._counters[key] = value
        del self._tallies[tally_key]  # a success resets the failures
        return (True, count, last)

    def incr(self, key: str, ttl: float, now: float) -> int:
        check_ttl(ttl)
        with self._lock:
            entry = self._tallies.get(key)
            count = entry[0] + 1 if entry is not None and entry[2] > now else 1
            self._tallies[key] = (count, now, now + ttl)
            return count

    def tally(self, key: str, now: float) -> tuple[int, float]:
        entry = self._tallies.get(key)
        if entry is None or entry[2] <= now:
            return (0, 0.0)
        return (entry[0], entry[1])

    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        check_ttl(ttl)
        with self._lock:
            entry = self._tokens.get(key)
            if entry is not None and entry[1] > now:
                return False
            self._tokens[key] = (bytes(value), now + ttl)
            return True

    def take(self, key: str, now: float) -> bytes | None:
        with self._lock:
            entry = self._tokens.pop(key, None)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def peek(self, key: str, now: float) -> bytes | None:
        entry = self._tokens.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def close(self) -> None:
        with self._lock:
            for family in self._families():
                family.clear()
