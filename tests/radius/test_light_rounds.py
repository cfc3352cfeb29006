"""Light rounds (issue 21): with a local directory and store, ``eapkit serve`` runs the
rounds of EAP-MSCHAPv2 and EAP-TLS on the event loop (``RadiusCore.light_methods``),
not the pool, because their checks are short CPU work there; a password method
(a PBKDF2) still goes to the pool; a light round that stalls sends light rounds back to
the pool for a while, and the pause doubles while stalls recur; LDAP, AD and Redis
backends never get light rounds (:func:`eapkit.serve.local_backends`)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.radius.core import LIGHT_METHODS, Admitted
from eapkit.radius.front import Front
from eapkit.radius.packet import Code
from eapkit.serve import ServeConfig, local_backends
from eapkit.store.memory import MemoryStore
from eapkit.store.sqlite import SqliteStore
from tests.radius.test_fastpath import (
    SECRET_A,
    SECRET_B,
    CountingPool,
    Login,
    _core,
    directory,  # noqa: F401 - the fixture
)


def test_every_round_of_eap_mschapv2_runs_inline_with_local_backends(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
) -> None:
    pool = CountingPool()
    front = Front(_core(directory, tmp_path, light=True), lambda: 1000.0, pool)

    async def scenario() -> None:
        login = Login(front, "127.0.0.1", SECRET_A, "alice", 40000)
        for _ in range(2):
            sent = login.send()
            assert sent.done(), "a light round was not answered inline"
            login.take(sent.result())
        last = login.send()
        assert last.done()
        assert login.take(last.result()).code == Code.ACCESS_ACCEPT
        assert pool.submitted == {} and front.light == 2 and front.pooled == 0

    try:
        asyncio.run(scenario())
    finally:
        front.close()


def test_a_wrong_password_is_still_refused_inline(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The light path changes where the check runs, not what it decides."""
    front = Front(_core(directory, tmp_path, light=True), lambda: 1000.0, CountingPool())

    async def scenario() -> None:
        login = Login(front, "127.0.0.1", SECRET_A, "alice", 40010)
        from eapkit.methods.mschapv2 import mschapv2_peer
        from eapkit.session import PeerSession

        login.peer = PeerSession([mschapv2_peer("not-the-password")], "alice")
        login.peer.receive(bytes([1, 0, 0, 5, 1]))  # Identity Request: a fresh Response
        assert (await asyncio.wait_for(login.run(), 10)).code == Code.ACCESS_REJECT

    try:
        asyncio.run(scenario())
    finally:
        front.close()


def test_a_stalled_light_round_sends_light_rounds_to_the_pool(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``slow``'s record takes 30 ms to read (a stalled disk): that one round ran inline
    and held the loop, but the next light rounds, of any user, go to the pool for
    ``light_pause``; after the pause they run inline again, and a stall right after a
    pause doubles it."""
    get = directory.get
    delay = {"slow": 0.03}

    def slow_get(name: str) -> object:
        time.sleep(delay.get(name, 0.0))
        return get(name)

    monkeypatch.setattr(directory, "get", slow_get)
    pool = CountingPool()
    front = Front(_core(directory, tmp_path, light=True), lambda: 1000.0, pool, light_pause=0.3)

    async def scenario() -> None:
        stuck = Login(front, "127.0.0.1", SECRET_A, "slow", 40001)
        assert (await asyncio.wait_for(stuck.run(), 10)).code == Code.ACCESS_ACCEPT
        assert front.light_pauses == 1
        other = Login(front, "127.0.0.2", SECRET_B, "alice", 40002)
        assert (await asyncio.wait_for(other.run(), 10)).code == Code.ACCESS_ACCEPT
        assert pool.submitted.get("nas-b", 0) == 2, "light rounds ran during the pause"
        await asyncio.sleep(0.35)
        light = front.light
        again = Login(front, "127.0.0.2", SECRET_B, "alice", 40003)
        assert (await asyncio.wait_for(again.run(), 10)).code == Code.ACCESS_ACCEPT
        assert front.light == light + 2, "light rounds did not come back after the pause"
        stuck = Login(front, "127.0.0.1", SECRET_A, "slow", 40004)
        assert (await asyncio.wait_for(stuck.run(), 10)).code == Code.ACCESS_ACCEPT
        assert front.light_pauses == 2 and front._light_pause_now == pytest.approx(0.6)

    try:
        asyncio.run(scenario())
    finally:
        front.close()


def test_light_rounds_follow_the_conversation_not_the_client(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A round whose earlier round is still in the pool is not run inline (it would
    overtake it or wait on its lock): with light rounds paused, the Response goes to
    the pool; resumed while it waits there, the next round still queues behind it."""
    gate = threading.Event()
    pool = CountingPool(threads=1)
    front = Front(_core(directory, tmp_path, light=True), lambda: 1000.0, pool)

    async def scenario() -> None:
        def block() -> None:
            gate.wait(10)

        pool.submit("blocker", block, lambda: None)
        login = Login(front, "127.0.0.1", SECRET_A, "alice", 40005)
        login.take(await asyncio.wait_for(login.send(), 10))
        front._light_paused_until = time.monotonic() + 60  # paused: the Response pools
        waiting = login.send()
        assert not waiting.done() and pool.submitted.get("nas-a") == 1
        front._light_paused_until = 0.0
        # a retransmission of the pooled round is not run inline beside it
        assert front.core.light(_admitted(front, login)) is False
        gate.set()
        login.take(await asyncio.wait_for(waiting, 10))
        assert (await asyncio.wait_for(login.run(), 10)).code == Code.ACCESS_ACCEPT

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        front.close()


def _admitted(front: Front, login: Login) -> Admitted:
    """The core's Admitted for ``login``'s next request (a fresh Identifier)."""
    admitted = front.core.admit(login.request(), (login.host, login.port), 1000.0)
    assert isinstance(admitted, Admitted)
    return admitted


def test_local_backends_are_sqlite_or_memory_users_and_store(tmp_path: Path) -> None:
    cfg = ServeConfig()
    sqlite = SqliteStore(tmp_path / "store.db")
    try:
        assert local_backends(cfg, sqlite)
        assert local_backends(cfg, MemoryStore())
        cfg.directory = "store"
        assert local_backends(cfg, sqlite)
        assert not local_backends(cfg, object())  # Redis, or any store over a network
        for kind in ("ldap", "ad"):
            cfg.directory = kind
            assert not local_backends(cfg, sqlite)
    finally:
        sqlite.close()
    assert {m.vendor_type for m in LIGHT_METHODS} == {13, 26}  # EAP-TLS, EAP-MSCHAPv2


def test_a_round_slow_on_cpu_alone_does_not_pause_light_rounds(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round that is slow without waiting (30 ms of CPU, or preempted on a busy
    machine) would cost a pool thread as much: it does not send light rounds to the
    pool (on a loaded machine the old wall-clock rule paused them for the whole run)."""
    get = directory.get

    def busy_get(name: str) -> object:
        until = time.perf_counter() + 0.03
        while time.perf_counter() < until:
            pass
        return get(name)

    monkeypatch.setattr(directory, "get", busy_get)
    pool = CountingPool()
    front = Front(_core(directory, tmp_path, light=True), lambda: 1000.0, pool)

    async def scenario() -> None:
        login = Login(front, "127.0.0.1", SECRET_A, "alice", 40020)
        assert (await asyncio.wait_for(login.run(), 10)).code == Code.ACCESS_ACCEPT
        assert front.light_pauses == 0 and front.light == 2 and pool.submitted == {}

    try:
        asyncio.run(scenario())
    finally:
        front.close()
