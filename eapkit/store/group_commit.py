"""Group commit: concurrent writers share one transaction and one durable sync.

A leader/follower commit queue (the technique of database write-ahead logs).  Every
caller enqueues its operation; the first caller that finds no leader becomes the leader,
lets a short window pass (only while other callers are expected, see below), takes every
queued operation, and hands the batch to ``execute``.  ``execute`` runs the operations
one after another in one transaction, commits once, and only then fills in each entry's
result; the leader wakes the followers, each of which returns its own result (or raises
its own error).  Callers that arrive while a batch is being committed form the next
batch, so batching also happens with no window at all: one sync per batch instead of one
per caller.

Guarantees the store relies on (docs/benchmarks.md, "Group commit"):

- each operation runs whole and alone on the connection, after the operations queued
  before it in the batch, so it sees their effects (the batch is a serial schedule);
- no caller learns its result before the commit that made it durable has returned, and a
  failed commit fails every caller in the batch (``execute`` sets the errors);
- a caller's programming error (say ``ValueError``) is raised in that caller only.

The window: a lone caller never waits (the previous batch had one entry, so nobody else
is expected).  After a batch of ``k > 1`` the next leader waits until ``k`` callers are
queued, ``max_batch`` are queued, or ``window`` seconds have passed, whichever is first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["CommitQueue", "Entry"]

T = TypeVar("T")

_UNSET: Any = object()


class Entry(Generic[T]):
    """One caller's operation and, once its batch committed, its outcome."""

    __slots__ = ("done", "error", "op", "value")

    def __init__(self, op: Callable[[Any], T]) -> None:
        self.op = op
        self.value: T = _UNSET
        self.error: BaseException | None = None
        self.done = False

    @property
    def settled(self) -> bool:
        """``execute`` gave this entry a value or an error."""
        return self.error is not None or self.value is not _UNSET

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value


class CommitQueue:
    """Leader/follower batching of operations; ``execute`` commits a batch durably.

    ``execute(batch)`` must set ``value`` or ``error`` on every entry; whatever it
    leaves unset when it raises becomes that exception for the entries concerned.
    """

    def __init__(
        self,
        execute: Callable[[list[Entry[Any]]], None],
        *,
        window: float = 0.001,
        max_batch: int = 64,
    ) -> None:
        if window < 0 or max_batch < 1:
            raise ValueError("window must be >= 0 and max_batch >= 1")
        self._execute = execute
        self._window = window
        self._max_batch = max_batch
        self._reset()
        self.batches = 0  # how many commits ran (tests and benchmarks read it)
        self.operations = 0

    def _reset(self) -> None:
        lock = threading.Lock()
        self._arrived = threading.Condition(lock)  # the collecting leader waits here
        self._finished = threading.Condition(lock)  # followers wait here
        self._pending: list[Entry[Any]] = []
        self._leader = False
        self._expect = 1  # size of the last batch: how many callers to wait for

    def after_fork(self) -> None:
        """In a forked child: the lock may have been held by a thread that is gone."""
        self._reset()

    def submit(self, op: Callable[[Any], T]) -> T:
        """Run ``op(connection)`` in the next batch; return once that batch is durable."""
        entry: Entry[T] = Entry(op)
        with self._arrived:
            self._pending.append(entry)
            if self._leader:
                self._arrived.notify()
        while True:
            with self._arrived:
                while not entry.done and self._leader:
                    self._finished.wait()
                if entry.done:
                    return entry.outcome()
                # No leader: lead the next batch (which may be full before our entry, so
                # the loop runs again until our own entry was committed).
                self._leader = True
                try:
                    batch = self._collect()
                except BaseException:  # interrupted while waiting: let another lead
                    self._pending.remove(entry)
                    self._leader = False
                    self._finished.notify_all()
                    raise
            self._commit(batch)

    def _collect(self) -> list[Entry[Any]]:
        """Under the lock: wait for the expected company, then take up to max_batch."""
        want = min(self._expect, self._max_batch)
        if want > 1 and self._window > 0:
            deadline = time.monotonic() + self._window
            while len(self._pending) < want:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        return batch

    def _commit(self, batch: list[Entry[Any]]) -> None:
        """Outside the lock: execute; then settle, wake everyone and give up the lead."""
        try:
            self._execute(batch)
        except BaseException as exc:  # handed to every unsettled caller
            for e in batch:
                if not e.settled:
                    e.error = exc
        finally:
            with self._arrived:
                for e in batch:
                    if not e.settled:
                        e.error = RuntimeError("commit queue: operation left unanswered")
                    e.done = True
                self._expect = len(batch)
                self.batches += 1
                self.operations += len(batch)
                self._leader = False
                self._finished.notify_all()  # results, and one of the rest leads next
