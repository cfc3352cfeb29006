"""Group commit in the SQLite store (eapkit.store.group_commit, eapkit.store.sqlite).

Concurrent writers share one transaction and one sync, yet each operation stays atomic,
sees the operations before it in its batch, answers only after the commit, and a failed
transaction fails every caller in it (closed).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eapkit.store import MemoryStore, SqliteStore, StoreUnavailable
from eapkit.store.group_commit import CommitQueue, Entry

# -- the queue on its own -----------------------------------------------------------------


class SlowLog:
    """An ``execute`` that takes a while (like an fdatasync) and records each batch."""

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay
        self.batches: list[list[Any]] = []
        self.fail: BaseException | None = None

    def __call__(self, batch: list[Entry[Any]]) -> None:
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.batches.append([e.op(None) for e in batch])
        for e in batch:
            e.value = e.op(None)


def const(v: int) -> Callable[[Any], int]:
    return lambda _con: v


def _run_threads(n: int, target: Any) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def go(i: int) -> None:
        barrier.wait()
        try:
            out[i] = target(i)
        except BaseException as exc:
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    return out


def test_concurrent_callers_share_batches_and_get_their_own_answers() -> None:
    log = SlowLog()
    q = CommitQueue(log, window=0.002)
    out = _run_threads(16, lambda i: q.submit(const(i * 10)))
    assert out == [i * 10 for i in range(16)]
    assert q.operations == 16
    assert q.batches < 16  # a one-transaction-per-call store would need 16
    assert sorted(x for b in log.batches for x in b) == [i * 10 for i in range(16)]


def test_max_batch_bounds_a_batch() -> None:
    log = SlowLog()
    q = CommitQueue(log, window=0.01, max_batch=3)
    out = _run_threads(10, lambda i: q.submit(const(i)))
    assert out == list(range(10))
    assert all(len(b) <= 3 for b in log.batches)


def test_a_failed_commit_fails_every_caller_in_the_batch() -> None:
    log = SlowLog()
    log.fail = StoreUnavailable("sqlite store: disk I/O error")
    q = CommitQueue(log)
    out = _run_threads(8, lambda i: q.submit(lambda _con: True))
    assert all(isinstance(x, StoreUnavailable) for x in out)
    log.fail = None
    assert q.submit(lambda _con: 5) == 5  # the queue recovers


def test_a_lone_caller_does_not_wait_for_the_window() -> None:
    q = CommitQueue(SlowLog(delay=0.0), window=3600.0)
    # A caller that waited for company would hang here for an hour per call.
    for i in range(20):
        assert q.submit(const(i)) == i
    assert q.batches == 20


def test_a_leader_interrupted_while_waiting_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    q = CommitQueue(SlowLog(delay=0.0), window=1.0)
    q._expect = 4  # as if the last batch was shared: the next leader waits for company

    class Interrupted(BaseException):
        pass

    def interrupted(timeout: float | None = None) -> bool:
        raise Interrupted

    monkeypatch.setattr(q._arrived, "wait", interrupted)
    with pytest.raises(Interrupted):
        q.submit(const(1))
    monkeypatch.undo()
    q._expect = 1
    assert q.submit(const(2)) == 2  # not stuck behind a leader that left
    assert q.operations == 1  # the interrupted caller's operation never ran


def test_queue_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        CommitQueue(SlowLog(), window=-1)
    with pytest.raises(ValueError):
        CommitQueue(SlowLog(), max_batch=0)


# -- the SQLite store ---------------------------------------------------------------------


def test_threads_on_one_store_share_fsyncs_and_one_code_wins_once(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")
    assert s._queue is not None
    # 8 threads, one code: exactly one accept
    out = _run_threads(8, lambda i: s.advance_unless_locked("ctr", 7, "fails", 5, 10.0)[0])
    assert sorted(out) == [False] * 7 + [True]
    # 8 threads, 25 fresh codes each on their own counter: all accepted, batched
    before = s._queue.batches

    def user(i: int) -> list[bool]:
        return [s.advance(f"u{i}", step) for step in range(1, 26)]

    out = _run_threads(8, user)
    assert out == [[True] * 25] * 8
    assert all(s.counter(f"u{i}") == 25 for i in range(8))
    assert s._queue.batches - before < 200
    s.close()


def test_a_held_write_lock_fails_the_whole_batch_closed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path, busy_timeout=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        out = _run_threads(4, lambda i: s.advance(f"c{i}", 1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(x, StoreUnavailable) for x in out)
    assert all(s.counter(f"c{i}") is None for i in range(4))
    assert s.advance("c0", 1) is True
    s.close()


def test_one_failing_operation_is_rolled_back_alone(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "s.db")

    def good(n: int) -> Any:
        return lambda con: con.execute("INSERT INTO counters (k, n) VALUES (?, ?)", (f"g{n}", n))

    def bad(con: sqlite3.Connection) -> None:
        con.execute("INSERT INTO counters (k, n) VALUES ('half', 1)")
        con.execute("INSERT INTO no_such_table VALUES (1)")

    batch: list[Entry[Any]] = [Entry(good(1)), Entry(bad), Entry(good(2))]
    s._commit_batch(batch)
    assert isinstance(batch[1].error, StoreUnavailable)
    assert batch[0].error is None and batch[2].error is None
    assert s.counter("g1") == 1 and s.counter("g2") == 2
    assert s.counter("half") is None  # the failing operation's first write is undone
    s.close()


# -- a batch is a serial schedule: the same answers as one operation after another --------

_KEYS = st.sampled_from(["a", "b", "c"])
_OPS = st.one_of(
    st.tuples(st.just("advance"), _KEYS, st.integers(0, 6)),
    st.tuples(st.just("aul"), _KEYS, st.one_of(st.none(), st.integers(0, 6))),
    st.tuples(st.just("incr"), _KEYS, st.just(0)),
    st.tuples(st.just("put_once"), _KEYS, st.integers(0, 3)),
    st.tuples(st.just("take"), _KEYS, st.just(0)),
    st.tuples(st.just("delete"), _KEYS, st.just(0)),
)


def _apply(store: Any, op: tuple[str, str, Any]) -> Any:
    name, key, arg = op
    if name == "advance":
        return store.advance("n" + key, arg)
    if name == "aul":
        return store.advance_unless_locked("n" + key, arg, "f" + key, 2, 100.0)
    if name == "incr":
        return store.incr("f" + key, 60.0, 100.0)
    if name == "put_once":
        return store.put_once("t" + key, bytes([arg]), 60.0, 100.0)
    if name == "take":
        return store.take("t" + key, 100.0)
    return store.delete({"a": "n", "b": "f", "c": "t"}[key] + key)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_OPS, max_size=30), cuts=st.lists(st.integers(0, 30), max_size=6))
def test_batches_answer_like_operations_one_after_another(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, Any]], cuts: list[int]
) -> None:
    model = MemoryStore()
    want = [_apply(model, op) for op in ops]
    s = SqliteStore(tmp_path_factory.mktemp("p") / "s.db")
    captured: list[Entry[Any]] = []

    def capture(op: Any) -> Any:
        captured.append(Entry(op))

    s._write = capture  # type: ignore[method-assign]
    for op in ops:
        _apply(s, op)
    del s._write
    got: list[Any] = []
    bounds = sorted({0, len(captured), *(c for c in cuts if c < len(captured))})
    for lo, hi in itertools.pairwise(bounds):
        batch = captured[lo:hi]
        s._commit_batch(batch)
        got += [e.outcome() for e in batch]
    assert got == want
    s.close()
