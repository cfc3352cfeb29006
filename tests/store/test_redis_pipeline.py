"""Pipelined scripts on the Redis store: concurrent verifications share one round trip
and keep the one-accept-per-code guarantee; failures fail the whole batch closed."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from eapkit.store.base import StoreUnavailable
from tests.conftest import free_tcp_port

pytestmark = pytest.mark.interop
redis_store = pytest.importorskip("eapkit.store.redis_store")
RedisStore = redis_store.RedisStore


def hammer(store: object, threads: int, rounds: int) -> Counter[str]:
    """``threads`` threads each try to use codes 1..rounds of one shared counter."""
    accepted: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run(t: int) -> None:
        start.wait()
        for value in range(1, rounds + 1):
            if store.advance("shared", value):  # type: ignore[attr-defined]
                with lock:
                    accepted[f"code{value}"] += 1
            store.incr(f"tally{t}", 60.0, 1.0)  # type: ignore[attr-defined]

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return accepted


def test_threads_share_pipelines_and_every_code_is_accepted_once(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"p{uuid.uuid4().hex}:")
    try:
        accepted = hammer(store, threads=8, rounds=200)
        queue = store._queue
        assert queue is not None
        assert sum(accepted.values()) == len(accepted) <= 200  # never twice
        assert accepted["code200"] == 1  # the last code was taken by someone
        for t in range(8):
            assert store.tally(f"tally{t}", 1.0)[0] == 200  # no increment lost
        # fewer round trips than operations: pipelines were shared
        assert queue.operations == 8 * 200 * 2
        assert queue.batches < queue.operations * 0.9
    finally:
        store.close()


def test_the_same_answers_as_one_script_at_a_time(redis_url: str) -> None:
    prefix = f"q{uuid.uuid4().hex}:"
    piped = RedisStore(redis_url, prefix=prefix + "a:")
    serial = RedisStore(redis_url, prefix=prefix + "b:", pipeline=False)
    try:
        for s in (piped, serial):
            assert s.advance("c", 5) and not s.advance("c", 5) and not s.advance("c", 4)
            assert s.advance_unless_locked("c", 6, "f", 3, 10.0) == (True, 0, 0.0)
            assert [s.incr("f", 30.0, 11.0) for _ in range(3)] == [1, 2, 3]
            assert s.advance_unless_locked("c", 7, "f", 3, 12.0) == (False, 3, 11.0)
            assert s.put_once("o", b"v", 5.0, 1.0) and not s.put_once("o", b"w", 5.0, 2.0)
            assert s.take("o", 3.0) == b"v" and s.take("o", 3.0) is None
    finally:
        piped.close()
        serial.close()


def test_a_flushed_script_cache_is_reloaded_not_an_error(redis_url: str) -> None:
    import redis

    store = RedisStore(redis_url, prefix=f"r{uuid.uuid4().hex}:")
    try:
        redis.Redis.from_url(redis_url).script_flush()
        assert store.advance("c", 1)  # NOSCRIPT: loaded and sent again, ran once
        assert not store.advance("c", 1)
    finally:
        store.close()


def test_no_server_fails_every_caller_closed() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_tcp_port()}/0", timeout=0.2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.advance("c", 1)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(errors) == 6 and all(isinstance(e, StoreUnavailable) for e in errors)
    assert all("ConnectionError" in str(e) for e in errors)
