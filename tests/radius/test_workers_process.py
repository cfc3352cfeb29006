"""``eapkit serve --workers 2`` as a real process: conversations whose every round comes
from a new source port succeed (GTC, MS-CHAPv2, EAP-TLS 1.3), both workers own some,
and a signal to the parent leaves no worker behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

from eapkit.probe import ProbeOptions, build_peer_methods
from eapkit.radius.nas import ProbeResult, RadiusClient, authenticate
from eapkit.radius.workers import _stop_all
from eapkit.session import PeerSession
from tests.interop.tools import EapkitServe


def _worker_pids(serve: EapkitServe) -> dict[int, int]:
    assert serve.daemon is not None
    found = re.findall(r"worker (\d+) \(pid (\d+)\) ready", serve.daemon.output())
    return {int(w): int(pid) for w, pid in found}


def _gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs no code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _options(serve: EapkitServe, method: str) -> ProbeOptions:
    pki = serve.pki
    extra: dict[str, object] = {}
    if method == "tls":
        extra = {
            "cert": pki / "alice.pem",
            "key": pki / "alice.key",
            "ca": pki / "ca.pem",
            "tls": "1.3",
        }
    return ProbeOptions(
        server=("127.0.0.1", serve.port),
        secret=serve.secret.encode(),
        method=method,
        identity="alice",
        password="wonderland",
        timeout=3.0,
        **extra,  # type: ignore[arg-type]
    )


async def _conversations(serve: EapkitServe, method: str, n: int) -> list[ProbeResult]:
    opts = _options(serve, method)
    methods = build_peer_methods(opts)

    async def one() -> ProbeResult:
        # A new UDP socket, so a new source port, for every round.
        async with RadiusClient(opts.server, opts.secret, timeout=3.0, fresh_socket=True) as client:
            return await authenticate(client, PeerSession(methods, opts.identity))

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_every_round_from_a_new_port_reaches_its_owner(tmp_path: Path) -> None:
    serve = EapkitServe(tmp_path / "serve", extra=["--workers", "2"])
    with serve:
        assert serve.daemon is not None
        pids = _worker_pids(serve)
        assert sorted(pids) == [0, 1]
        for method in ("gtc", "mschapv2", "tls"):
            results = asyncio.run(_conversations(serve, method, 12))
            assert all(r.accepted for r in results), method
            assert all(r.rounds >= 2 for r in results)
            assert all(r.keys_match is not False for r in results), method
        os.kill(serve.daemon.pid, signal.SIGTERM)
        assert serve.daemon.proc.wait(15) == 0
        assert _wait_gone(list(pids.values()))
        output = serve.daemon.output()
    accepted = [d for d in serve.decisions if d.get("result") == "accept"]
    assert len(accepted) == 36
    # Both workers started conversations and finished them.
    assert {d["worker"] for d in accepted} == {0, 1}
    # The kernel's steering put every datagram on its owner: nothing was forwarded.
    stopped = re.findall(r"worker (\d) stopped: \{'received': (\d+), 'forwarded': (\d+)", output)
    assert sorted(int(w) for w, _, _ in stopped) == [0, 1]
    received = sum(int(r) for _, r, _ in stopped)
    rounds = sum(int(str(d["rounds"])) for d in accepted)
    assert received >= rounds
    assert "steering unavailable" in output or all(f == "0" for _, _, f in stopped)


def test_workers_follow_a_killed_parent(tmp_path: Path) -> None:
    serve = EapkitServe(tmp_path / "serve", extra=["--workers", "2"])
    with serve:
        assert serve.daemon is not None
        pids = _worker_pids(serve)
        assert len(pids) == 2
        os.kill(serve.daemon.pid, signal.SIGKILL)  # no chance to stop them itself
        serve.daemon.proc.wait(10)
        assert _wait_gone(list(pids.values()))


def test_a_worker_already_asked_to_stop_is_not_signalled_again(tmp_path: Path) -> None:
    """A worker's SIGTERM handler is gone while it shuts down; the parent's final sweep
    must not send a second SIGTERM (it killed worker 1 before its summary line)."""
    mark = tmp_path / "stopped"
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        got = []
        signal.signal(signal.SIGTERM, lambda *_: got.append(1))
        while not got:
            time.sleep(0.01)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as remove_signal_handler does
        time.sleep(0.5)  # closing the front
        mark.write_text("stopped")
        os._exit(0)
    time.sleep(0.2)
    os.kill(child, signal.SIGTERM)  # the parent's signal handler asked it once
    time.sleep(0.2)  # the child is stopping, its handler gone
    _stop_all({child}, {child})
    assert mark.read_text() == "stopped"
