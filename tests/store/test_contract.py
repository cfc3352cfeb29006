"""The Store contract (eapkit.store.base), run against memory, SQLite and a real Redis."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit.store import MAX_COUNTER, MemoryStore, SqliteStore, Store, StoreUnavailable, open_store
from eapkit.store.base import composed_advance_unless_locked
from tests.conftest import free_tcp_port

BACKENDS = [
    "memory",
    "sqlite",
    "sqlite_serial",
    pytest.param("redis", marks=pytest.mark.interop),
    pytest.param("redis_serial", marks=pytest.mark.interop),
    "composed",
]


class ComposedStore(MemoryStore):
    """advance_unless_locked as verifiers compose it for a store that lacks it."""

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        return composed_advance_unless_locked(self, key, value, tally_key, limit, now)


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "composed":
        return ComposedStore()
    if kind == "sqlite":
        return SqliteStore(tmp_path / "store.db")
    if kind == "sqlite_serial":
        return SqliteStore(tmp_path / "store.db", group_commit=False)
    from eapkit.store.redis_store import RedisStore

    url = request.getfixturevalue("redis_url")
    return RedisStore(url, prefix=f"t{uuid.uuid4().hex}:", pipeline=kind != "redis_serial")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = make_store(request.param, tmp_path, request)
    yield s
    s.close()


def test_records_round_trip(store: Store) -> None:
    assert store.get("a") is None
    store.put("a", b"\x00one")
    assert store.get("a") == b"\x00one"
    store.put("a", b"two")
    assert store.get("a") == b"two"
    assert store.delete("a") is True
    assert store.get("a") is None
    assert store.delete("a") is False


def test_advance_accepts_only_strictly_greater(store: Store) -> None:
    assert store.counter("c") is None
    assert store.advance("c", 5) is True
    assert store.advance("c", 5) is False
    assert store.advance("c", 4) is False
    assert store.counter("c") == 5
    assert store.advance("c", 6) is True
    assert store.counter("c") == 6
    assert store.advance("fresh", 0) is True
    assert store.advance("fresh", 0) is False
    assert store.advance("big", MAX_COUNTER) is True
    assert store.counter("big") == MAX_COUNTER


@pytest.mark.parametrize("bad", [-1, MAX_COUNTER + 1, True])
def test_advance_out_of_range_is_a_programming_error(store: Store, bad: int) -> None:
    with pytest.raises(ValueError):
        store.advance("c", bad)


def test_incr_counts_and_expires(store: Store) -> None:
    assert store.tally("f", 100.0) == (0, 0.0)
    assert store.incr("f", 10.0, 100.0) == 1
    assert store.incr("f", 10.0, 105.0) == 2
    assert store.tally("f", 106.0) == (2, 105.0)
    # sliding: alive until the last increment + ttl
    assert store.tally("f", 114.9)[0] == 2
    assert store.tally("f", 115.0) == (0, 0.0)
    assert store.incr("f", 10.0, 115.0) == 1
    assert store.delete("f") is True
    assert store.tally("f", 116.0) == (0, 0.0)


def test_advance_unless_locked_below_the_limit_advances_and_clears_the_tally(
    store: Store,
) -> None:
    # no tally: an advance like advance()
    assert store.advance_unless_locked("c", 5, "f", 3, 100.0) == (True, 0, 0.0)
    assert store.counter("c") == 5
    assert store.advance_unless_locked("c", 5, "f", 3, 100.0) == (False, 0, 0.0)
    assert store.advance_unless_locked("c", 4, "f", 3, 100.0) == (False, 0, 0.0)
    assert store.counter("c") == 5
    # a live tally below the limit is reported; a success clears it, a refusal does not
    store.incr("f", 50.0, 100.0)
    store.incr("f", 50.0, 101.5)
    assert store.advance_unless_locked("c", 5, "f", 3, 102.0) == (False, 2, 101.5)
    assert store.tally("f", 102.0) == (2, 101.5)
    assert store.advance_unless_locked("c", 6, "f", 3, 102.0) == (True, 2, 101.5)
    assert store.counter("c") == 6
    assert store.tally("f", 102.0) == (0, 0.0)
    # a fresh counter starts at any value, 0 included
    assert store.advance_unless_locked("fresh", 0, "g", 1, 0.0) == (True, 0, 0.0)


def test_advance_unless_locked_at_the_limit_changes_nothing(store: Store) -> None:
    store.advance("c", 5)
    for at in (10.0, 11.0, 12.25):
        store.incr("f", 100.0, at)
    assert store.advance_unless_locked("c", 9, "f", 3, 13.0) == (False, 3, 12.25)
    assert store.counter("c") == 5
    assert store.tally("f", 13.0) == (3, 12.25)
    # a higher limit lets it through; an expired tally counts as none
    assert store.advance_unless_locked("c", 9, "f", 4, 13.0) == (True, 3, 12.25)
    store.incr("f", 1.0, 20.0)
    store.incr("f", 1.0, 20.0)
    assert store.advance_unless_locked("c", 10, "f", 1, 21.0) == (True, 0, 0.0)
    assert store.counter("c") == 10


def test_advance_unless_locked_without_a_value_only_reads(store: Store) -> None:
    assert store.advance_unless_locked("c", None, "f", 3, 0.0) == (False, 0, 0.0)
    assert store.counter("c") is None
    store.incr("f", 100.0, 1.0)
    assert store.advance_unless_locked("c", None, "f", 3, 2.0) == (False, 1, 1.0)
    assert store.advance_unless_locked("c", None, "f", 1, 2.0) == (False, 1, 1.0)
    assert store.tally("f", 2.0) == (1, 1.0)
    assert store.counter("c") is None


@pytest.mark.parametrize("bad", [-1, MAX_COUNTER + 1, True])
def test_advance_unless_locked_out_of_range_is_a_programming_error(store: Store, bad: int) -> None:
    with pytest.raises(ValueError):
        store.advance_unless_locked("c", bad, "f", 3, 0.0)


def test_tokens_are_single_use_and_expire(store: Store) -> None:
    assert store.put_once("t", b"challenge", 30.0, 1000.0) is True
    assert store.put_once("t", b"other", 30.0, 1010.0) is False
    assert store.peek("t", 1010.0) == b"challenge"
    assert store.take("t", 1010.0) == b"challenge"
    assert store.take("t", 1010.0) is None
    assert store.peek("t", 1010.0) is None
    # an expired token is absent for take, peek and put_once
    assert store.put_once("u", b"x", 5.0, 0.0) is True
    assert store.peek("u", 5.0) is None
    assert store.put_once("u", b"y", 5.0, 5.0) is True
    assert store.take("u", 10.0) is None
    assert store.put_once("v", b"z", 5.0, 0.0) is True
    assert store.delete("v") is True
    assert store.take("v", 1.0) is None


@pytest.mark.parametrize("ttl", [0.0, -1.0])
def test_nonpositive_ttl_is_a_programming_error(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        store.incr("f", ttl, 0.0)
    with pytest.raises(ValueError):
        store.put_once("t", b"", ttl, 0.0)


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    s = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(s, SqliteStore)
    s.close()
    assert (tmp_path / "x.db").exists()


def test_sqlite_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    s.put("rec", b"v")
    s.advance("ctr", 41)
    s.close()
    s = SqliteStore(path)
    assert s.get("rec") == b"v"
    assert s.counter("ctr") == 41
    assert s.advance("ctr", 41) is False
    s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_sqlite_unopenable_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteStore(tmp_path / "no" / "such" / "dir" / "s.db")


def test_sqlite_lock_held_too_long_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SqliteStore(path, busy_timeout=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable) as info:
            s.advance("c", 1)
        assert "locked" in str(info.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert s.advance("c", 1) is True  # the store recovers once the lock is gone
    s.close()


def test_redis_unreachable_fails_closed_on_every_operation() -> None:
    pytest.importorskip("redis")
    from eapkit.store.redis_store import RedisStore

    s = RedisStore(f"redis://127.0.0.1:{free_tcp_port()}/0", timeout=0.2)
    calls: list[Any] = [
        lambda: s.get("k"),
        lambda: s.put("k", b"v"),
        lambda: s.delete("k"),
        lambda: s.counter("k"),
        lambda: s.advance("k", 1),
        lambda: s.advance_unless_locked("k", 1, "f", 3, 0.0),
        lambda: s.incr("k", 1.0, 0.0),
        lambda: s.tally("k", 0.0),
        lambda: s.put_once("k", b"v", 1.0, 0.0),
        lambda: s.take("k", 0.0),
        lambda: s.peek("k", 0.0),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert "redis store" in str(info.value)


# -- several processes at the same moment ---------------------------------------------


def _race_worker(kind: str, where: str, prefix: str, op: str, barrier: Any, out: Any) -> None:
    if kind == "sqlite":
        s: Store = SqliteStore(where)
    else:
        from eapkit.store.redis_store import RedisStore

        s = RedisStore(where, prefix=prefix)
    barrier.wait()
    if op == "advance":
        out.put(s.advance("ctr", 7))
    elif op == "advance_unless_locked":
        out.put(s.advance_unless_locked("ctr", 7, "fails", 5, 10.0)[0])
    else:
        out.put(s.take("tok", 10.0) is not None)
    s.close()


@pytest.mark.parametrize("op", ["advance", "advance_unless_locked", "take"])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.interop)])
def test_eight_processes_exactly_one_wins(
    kind: str, op: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = f"race{uuid.uuid4().hex}:"
    if kind == "sqlite":
        where = str(tmp_path / "race.db")
        setup: Store = SqliteStore(where)
    else:
        from eapkit.store.redis_store import RedisStore

        where = request.getfixturevalue("redis_url")
        setup = RedisStore(where, prefix=prefix)
    setup.advance("ctr", 6)
    setup.put_once("tok", b"challenge", 60.0, 0.0)
    setup.close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(kind, where, prefix, op, barrier, out))
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(results) == [False] * 7 + [True]
