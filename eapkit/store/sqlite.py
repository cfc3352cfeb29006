"""The embedded default store: one SQLite file, safe for several processes on one host.

- WAL journal, so readers never wait for the writer and a crashed writer leaves the
  file consistent; ``synchronous=FULL`` by default, so an accepted counter survives a
  power cut (a lost ``advance`` would let a code be replayed after a reboot).
- Every read-modify-write runs inside ``BEGIN IMMEDIATE``: the write lock is taken at
  the start of the transaction, so two processes cannot both read the old counter.
  Waiting for that lock is bounded by the busy timeout; past it the store raises
  :class:`~eapkit.store.base.StoreUnavailable` and verifiers fail closed.
- One connection per process: a connection inherited through ``fork()`` is abandoned
  (never closed, since closing it in the child could checkpoint and remove the WAL the
  parent still uses) and the child opens its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from eapkit.private_files import create_private
from eapkit.store.base import StoreUnavailable, check_counter, check_ttl
from eapkit.store.group_commit import CommitQueue, Entry

__all__ = ["SqliteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records  (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tallies  (k TEXT PRIMARY KEY, n INTEGER NOT NULL,
                                     t REAL NOT NULL, exp REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens   (k TEXT PRIMARY KEY, v BLOB NOT NULL,
                                     exp REAL NOT NULL) WITHOUT ROWID;
"""
_TABLES = ("records", "counters", "tallies", "tokens")

# Connections inherited through fork(): kept alive in the child so that they are never
# closed there (see the module docstring).
_ABANDONED: list[sqlite3.Connection] = []


class SqliteStore:
    """A :class:`~eapkit.store.base.Store` in one SQLite file.

    ``busy_timeout`` (seconds) bounds how long an operation waits for another process's
    write lock; ``durable=False`` trades the last transactions on power loss for speed
    (``synchronous=NORMAL``).  ``group_commit`` (on by default) lets writes from
    concurrent threads share one transaction and one sync: a batch is whatever queued
    while the previous commit ran, or arrives within ``group_window`` seconds when the
    previous batch was shared, at most ``group_max`` operations
    (:mod:`eapkit.store.group_commit`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 2.0,
        durable: bool = True,
        group_commit: bool = True,
        group_window: float = 0.001,
        group_max: int = 64,
    ) -> None:
        self._path = str(Path(path))
        self._busy_timeout = busy_timeout
        self._durable = durable
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._queue = (
            CommitQueue(self._commit_batch, window=group_window, max_batch=group_max)
            if group_commit
            else None
        )
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(ref))
        with self._lock:
            self._connection()

    # -- connection management -------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._con is not None:
            return self._con
        try:
            create_private(self._path)  # 0600 before SQLite makes it; -wal/-shm follow
            con = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
                con.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
                con.executescript(_SCHEMA)
            except BaseException:
                con.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite store: cannot open ({type(exc).__name__})") from exc
        self._con = con
        return con

    def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` atomically in a ``BEGIN IMMEDIATE`` transaction; return once durable.

        With group commit the transaction (and its sync) is shared with the operations
        other threads submitted in the same window (:mod:`eapkit.store.group_commit`).
        """
        if self._queue is not None:
            return self._queue.submit(op)
        entry: Entry[T] = Entry(op)
        self._commit_batch([entry])
        return entry.outcome()

    def _commit_batch(self, batch: list[Entry[Any]]) -> None:
        """One transaction for the whole batch, each operation inside its own savepoint.

        Results are handed out only after COMMIT returned (with ``synchronous=FULL`` the
        WAL is synced by then); a failed BEGIN or COMMIT fails every operation.
        """
        with self._lock:
            con = self._connection()
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
            alone = len(batch) == 1
            results: list[tuple[bool, Any]] = []
            try:
                for e in batch:
                    if not alone:
                        con.execute("SAVEPOINT op")
                    try:
                        value = e.op(con)
                    except Exception as exc:  # this caller's error only
                        if alone:
                            raise
                        con.execute("ROLLBACK TO op")
                        con.execute("RELEASE op")
                        err = _unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
                        results.append((False, err))
                        continue
                    if not alone:
                        con.execute("RELEASE op")
                    results.append((True, value))
                con.execute("COMMIT")
            except BaseException as exc:
                if con.in_transaction:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        # A connection that cannot roll back is not reused: reopen later.
                        self._con = None
                        con.close()
                if isinstance(exc, sqlite3.Error):
                    raise _unavailable(exc) from exc
                raise
        for e, (ok, outcome) in zip(batch, results, strict=True):
            if ok:
                e.value = outcome
            else:
                e.error = outcome

    def _read(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            con = self._connection()
            try:
                row: tuple[Any, ...] | None = con.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc
        return row

    # -- records ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        row = self._read("SELECT v FROM records WHERE k = ?", (key,))
        return None if row is None else bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        data = bytes(value)

        def op(con: sqlite3.Connection) -> None:
            con.execute(
                "INSERT INTO records (k, v) VALUES (?, ?) "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (key, data),
            )

        self._write(op)

    def record_keys(self, after: str = "", limit: int | None = None) -> list[str]:
        """The records' keys after ``after`` in order, at most ``limit`` of them
        (``eapkit store seal`` and ``store rekey`` walk them; not on a hot path)."""
        with self._lock:
            con = self._connection()
            try:
                rows = con.execute(
                    "SELECT k FROM records WHERE k > ? ORDER BY k LIMIT ?",
                    (after, -1 if limit is None else limit),
                )
                return [str(r[0]) for r in rows]
            except sqlite3.Error as exc:
                raise _unavailable(exc) from exc

    def swap(self, key: str, old: bytes, new: bytes, delete: Sequence[str] = ()) -> bool:
        """Replace the record under ``key`` with ``new`` iff it is still ``old`` and
        delete ``delete`` (every family), all in one transaction (:mod:`eapkit.store.rekey`,
        :mod:`eapkit.reset`)."""
        before, after, doomed = bytes(old), bytes(new), [k for k in delete if k != key]

        def op(con: sqlite3.Connection) -> bool:
            cur = con.execute(
                "UPDATE records SET v = ? WHERE k = ? AND v = ?", (after, key, before)
            )
            if cur.rowcount != 1:
                return False
            for name in doomed:
                for table in _TABLES:
                    con.execute(f"DELETE FROM {table} WHERE k = ?", (name,))  # noqa: S608
            return True

        return self._write(op)

    def delete(self, key: str) -> bool:
        def op(con: sqlite3.Connection) -> bool:
            removed = 0
            for table in _TABLES:
                removed += con.execute(f"DELETE FROM {table} WHERE k = ?", (key,)).rowcount  # noqa: S608
            return removed > 0

        return self._write(op)

    # -- counters --------------------------------------------------------------------

    def counter(self, key: str) -> int | None:
        row = self._read("SELECT n FROM counters WHERE k = ?", (key,))
        return None if row is None else int(row[0])

    def advance(self, key: str, value: int) -> bool:
        check_counter(value)

        def op(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT n FROM counters WHERE k = ?", (key,)).fetchone()
            if row is not None and value <= row[0]:
                return False
            con.execute(
                "INSERT INTO counters (k, n) VALUES (?, ?) "
                "ON CONFLICT (k) DO UPDATE SET n = excluded.n",
                (key, value),
            )
            return True

        return self._write(op)

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        if value is not None:
            check_counter(value)

        # A write transaction even for a tally read (value None): the same cost either way.
        def op(con: sqlite3.Connection) -> tuple[bool, int, float]:
            row = con.execute(
                "SELECT n, t FROM tallies WHERE k = ? AND exp > ?", (tally_key, now)
            ).fetchone()
            count, last = (0, 0.0) if row is None else (int(row[0]), float(row[1]))
            if count >= limit or value is None:
                return (False, count, last)
            cur = con.execute("SELECT n FROM counters WHERE k = ?", (key,)).fetchone()
            if cur is not None and value <= cur[0]:
                return (False, count, last)
            con.execute(
                "INSERT INTO counters (k, n) VALUES (?, ?) "
                "ON CONFLICT (k) DO UPDATE SET n = excluded.n",
                (key, value),
            )
            if row is not None:
                con.execute("DELETE FROM tallies WHERE k = ?", (tally_key,))
            return (True, count, last)

        return self._write(op)

    # -- expiring failure counters -----------------------------------------------------

    def incr(self, key: str, ttl: float, now: float) -> int:
        check_ttl(ttl)

        def op(con: sqlite3.Connection) -> int:
            row = con.execute("SELECT n, exp FROM tallies WHERE k = ?", (key,)).fetchone()
            count = row[0] + 1 if row is not None and row[1] > now else 1
            con.execute(
                "INSERT INTO tallies (k, n, t, exp) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (k) DO UPDATE SET n = excluded.n, t = excluded.t, exp = excluded.exp",
                (key, count, now, now + ttl),
            )
            return int(count)

        return self._write(op)

    def tally(self, key: str, now: float) -> tuple[int, float]:
        row = self._read("SELECT n, t FROM tallies WHERE k = ? AND exp > ?", (key, now))
        if row is None:
            return (0, 0.0)
        return (int(row[0]), float(row[1]))

    # -- single-use tokens -------------------------------------------------------------

    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        check_ttl(ttl)
        data = bytes(value)

        def op(con: sqlite3.Connection) -> bool:
            live = con.execute(
                "SELECT 1 FROM tokens WHERE k = ? AND exp > ?", (key, now)
            ).fetchone()
            if live is not None:
                return False
            con.execute(
                "INSERT INTO tokens (k, v, exp) VALUES (?, ?, ?) "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v, exp = excluded.exp",
                (key, data, now + ttl),
            )
            return True

        return self._write(op)

    def take(self, key: str, now: float) -> bytes | None:
        def op(con: sqlite3.Connection) -> bytes | None:
            row = con.execute("SELECT v, exp FROM tokens WHERE k = ?", (key,)).fetchone()
            if row is None:
                return None
            con.execute("DELETE FROM tokens WHERE k = ?", (key,))
            return bytes(row[0]) if row[1] > now else None

        return self._write(op)

    def peek(self, key: str, now: float) -> bytes | None:
        row = self._read("SELECT v FROM tokens WHERE k = ? AND exp > ?", (key, now))
        return None if row is None else bytes(row[0])

    # -- housekeeping ------------------------------------------------------------------

    def purge(self, now: float) -> int:
        """Remove expired tallies and tokens; returns how many rows went."""

        def op(con: sqlite3.Connection) -> int:
            gone = con.execute("DELETE FROM tallies WHERE exp <= ?", (now,)).rowcount
            gone += con.execute("DELETE FROM tokens WHERE exp <= ?", (now,)).rowcount
            return int(gone)

        return self._write(op)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def _after_fork(self) -> None:
        # The thread lock may have been held by another thread at fork time.
        self._lock = threading.Lock()
        if self._queue is not None:
            self._queue.after_fork()
        if self._con is not None:
            _ABANDONED.append(self._con)
            self._con = None


def _forget_in_child(ref: weakref.ref[SqliteStore]) -> None:
    store = ref()
    if store is not None:
        store._after_fork()


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    # The type and SQLite's own message ("database is locked", "disk I/O error") carry no
    # key or value.
    return StoreUnavailable(f"sqlite store: {type(exc).__name__}: {exc}")
