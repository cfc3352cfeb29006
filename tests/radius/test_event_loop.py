"""``EAPKIT_EVENT_LOOP`` (issue 21): ``eapkit serve`` runs on asyncio's loop by default
or on uvloop's when asked; anything else is refused with a clear error before anything
listens.  With uvloop, a whole EAP-MSCHAPv2 login goes through the UDP front (its
inline Identity round and its pooled check rounds)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.radius.front import event_loop_factory, run_event_loop
from eapkit.radius.packet import Code
from eapkit.radius.udp import serve
from tests.radius.test_fastpath import SECRET_A, Login, _core, directory  # noqa: F401


def test_the_default_loop_is_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EAPKIT_EVENT_LOOP", raising=False)
    assert event_loop_factory() is None
    monkeypatch.setenv("EAPKIT_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None


def test_an_unknown_loop_is_refused_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAPKIT_EVENT_LOOP", "trio")

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(ValueError, match="'trio': use asyncio or uvloop"):
        run_event_loop(never())


def test_a_login_over_udp_on_uvloop(
    directory: LocalDirectory,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uvloop = pytest.importorskip("uvloop")  # the uvloop extra (scripts/setup installs it)
    monkeypatch.setenv("EAPKIT_EVENT_LOOP", "uvloop")
    core = _core(directory, tmp_path)

    async def main() -> int:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        stop = asyncio.Event()
        bound: list[tuple[str, int]] = []
        server = asyncio.create_task(
            serve(core, [("127.0.0.1", 0)], ready=bound.extend, stop=stop, threads=2)
        )
        while not bound:
            await asyncio.sleep(0.01)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        login = Login(None, "127.0.0.1", SECRET_A, "alice", sock.getsockname()[1])  # type: ignore[arg-type]
        try:
            for _ in range(6):  # a blocking socket off the loop (uvloop has no sock_sendto)
                sock.sendto(login.request(), bound[0])
                reply = await asyncio.to_thread(sock.recv, 4096)
                packet = login.take(reply)
                if packet.code != Code.ACCESS_CHALLENGE:
                    return packet.code
            raise AssertionError("the login did not end")
        finally:
            sock.close()
            stop.set()
            await server

    assert run_event_loop(main()) == Code.ACCESS_ACCEPT
