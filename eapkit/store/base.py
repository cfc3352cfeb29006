"""The ``Store`` interface: state that must survive restarts and be shared by a cluster.

DESIGN.md ("State that must survive and be shared"): replay protection is only real if
every RADIUS node sees the same counters, so the operations a verifier needs are atomic
*in the backend*, never read-then-write in Python:

``advance(key, value)``
    the monotonic counter of a credential (last accepted TOTP step, HOTP counter,
    YubiKey (usage, session) pair): set to ``value`` only if ``value`` is strictly
    greater than what is stored.  Two nodes offering the same step in the same
    millisecond: exactly one gets ``True`` (RFC 6238 §5.2, RFC 4226 §7.2).
``incr(key, ttl, now)`` / ``tally(key, now)``
    an expiring failure counter for throttling (RFC 4226 §7.3).
``advance_unless_locked(key, value, tally_key, limit, now)``
    the verifier's hot path in one atomic step (one round trip to a shared backend):
    read the failure tally; below ``limit``, advance the counter and, if it moved,
    clear the tally (a success resets the failures).
``put_once(key, value, ttl, now)`` / ``take(key, now)`` / ``peek(key, now)``
    single-use tokens with an expiry (challenges, pending resynchronisations).
``get`` / ``put`` / ``delete``
    durable records (enrolled credentials; secrets inside them are sealed, see
    :mod:`eapkit.store.sealing`).

Time is an argument (``now``, seconds since the epoch as a float); no backend reads a
clock to decide whether something expired.  A backend that cannot be reached raises
:class:`StoreUnavailable`, which verifiers turn into the reason ``store_unavailable``:
they fail closed.

All families share one key space: ``delete(key)`` removes whatever is under ``key``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eapkit.errors import EapkitError

__all__ = [
    "MAX_COUNTER",
    "CounterStore",
    "Store",
    "StoreUnavailable",
    "check_counter",
    "check_ttl",
    "composed_advance_unless_locked",
]

# Counters travel through Redis Lua (IEEE doubles) and SQLite INTEGER: keep them exact.
MAX_COUNTER = 2**53 - 1


class StoreUnavailable(EapkitError):
    """The backend could not be reached or did not answer in time.

    The text names the backend and the kind of failure, never a key's value.
    """


def check_counter(value: int) -> None:
    """Programming-error guard shared by the backends: counters are 0 ..= 2**53-1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"counter value out of range 0..{MAX_COUNTER}")


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError("ttl must be positive")


@runtime_checkable
class Store(Protocol):
    """What verifiers need from shared state; every method may raise StoreUnavailable."""

    # durable records
    def get(self, key: str) -> bytes | None:
        """The record under ``key``, or None."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Store a durable record (last writer wins)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove whatever is under ``key``; True if something was there."""
        ...

    # monotonic counters
    def counter(self, key: str) -> int | None:
        """The counter under ``key``, or None if it was never advanced."""
        ...

    def advance(self, key: str, value: int) -> bool:
        """Atomically set the counter to ``value`` iff ``value`` > stored (or none stored)."""
        ...

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        """Atomically: ``(count, last) = tally(tally_key, now)``; if ``count >= limit`` or
        ``value`` is None, change nothing; else ``advance(key, value)`` and, if that
        advanced, delete the tally.  Returns ``(advanced, count, last)``.

        ``count < limit`` and not advanced means ``value`` was not above the counter.
        With ``value`` None it is a tally read that costs what an advance costs, so a
        caller can make a right and a wrong code look alike while locked out.
        """
        ...

    # expiring failure counters
    def incr(self, key: str, ttl: float, now: float) -> int:
        """Atomically add one; restart at 1 if expired; expire ``ttl`` after ``now``.

        Returns the new count.
        """
        ...

    def tally(self, key: str, now: float) -> tuple[int, float]:
        """(count, time of the last increment) of an incr counter; (0, 0.0) if none/expired."""
        ...

    # single-use expiring tokens
    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        """Store ``value`` until ``now + ttl`` unless a live token is there; True if stored."""
        ...

    def take(self, key: str, now: float) -> bytes | None:
        """Atomically fetch and remove a live token; None if absent or expired."""
        ...

    def peek(self, key: str, now: float) -> bytes | None:
        """A live token's value without consuming it."""
        ...

    def close(self) -> None:
        """Release connections; the object must not be used afterwards."""
        ...


class CounterStore(Protocol):
    """The part of :class:`Store` that :func:`composed_advance_unless_locked` needs."""

    def delete(self, key: str) -> bool: ...

    def advance(self, key: str, value: int) -> bool: ...

    def tally(self, key: str, now: float) -> tuple[int, float]: ...


def composed_advance_unless_locked(
    store: CounterStore, key: str, value: int | None, tally_key: str, limit: int, now: float
) -> tuple[bool, int, float]:
    """``advance_unless_locked`` for a store written before it existed: the same answers
    from ``tally``, ``advance`` and ``delete``, each atomic but not the three together
    (a failure counted between them is not seen).  Verifiers use it only for such stores.
    """
    if value is not None:
        check_counter(value)
    count, last = store.tally(tally_key, now)
    if count >= limit or value is None:
        return (False, count, last)
    if not store.advance(key, value):
        return (False, count, last)
    if count:
        store.delete(tally_key)
    return (True, count, last)
