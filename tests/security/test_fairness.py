"""One slow check does not stall every client (issue 15), against a running ``eapkit
serve``: checks run in a bounded pool with per-client queues served round-robin
(:mod:`eapkit.radius.fairpool`), off the thread that reads datagrams.

Head-of-line: nas-b sends a burst of wrong-password PAP requests (each costs a
password hash); right behind them nas-a sends alice's right password.  nas-a's answer
must come within 1 s, and within a small multiple of the same request's latency on an
idle server measured in the same run (so a loaded machine slows both alike): the
slower of a right and a wrong password's check alone.  Before,
the burst was handled in order on the event loop: 100 hashes ahead of nas-a.
``EAPKIT_LONG_SECURITY=1`` repeats it with 500 requests in the burst.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from eapkit.radius.packet import Code
from tests.security.server import SECRET_A, SECRET_B, Nas, Server, short_or_long

RATIO = 15.0  # loaded latency at most this many solo latencies (measured: about 2-5)
SANITY = 1.0  # seconds, whatever the baseline


def _timed(nas: Nas, data: bytes, code: Code = Code.ACCESS_ACCEPT) -> float:
    start = time.perf_counter()
    nas.send(data)
    reply = nas.receive(timeout=10.0)
    elapsed = time.perf_counter() - start
    assert reply is not None and reply.code == code
    return elapsed


def test_a_legitimate_pap_is_not_stuck_behind_another_nas_burst(tmp_path: Path) -> None:
    burst = short_or_long(100, 500)
    users = (("alice", "wonderland"), ("bob", "builder"))
    with (
        Server(tmp_path, users=users) as srv,
        Nas(srv, "127.0.0.1", SECRET_A) as nas_a,
        Nas(srv, "127.0.0.2", SECRET_B) as nas_b,
    ):
        # the baseline: one check alone, the slower of a right and a wrong password
        right = [_timed(nas_a, nas_a.pap("alice", "wonderland")) for _ in range(3)]
        bad = [_timed(nas_b, nas_b.pap("bob", f"solo-{i}"), Code.ACCESS_REJECT) for i in range(3)]
        solo = max(statistics.median(right), statistics.median(bad))
        wrong = [nas_b.pap("bob", f"wrong-{i}") for i in range(burst)]
        for data in wrong:
            nas_b.send(data)
        loaded = _timed(nas_a, nas_a.pap("alice", "wonderland"))
        # the burst is still being worked through: nas-a did not wait for all of it
        answered = 0
        while nas_b.receive(timeout=3.0) is not None:
            answered += 1
        print(f"solo {solo * 1000:.1f} ms, behind {burst} wrong PAPs {loaded * 1000:.1f} ms")
        assert answered > 0
        assert loaded < SANITY, f"{loaded:.3f} s behind {burst} requests (solo {solo:.3f} s)"
        assert loaded < RATIO * solo, f"{loaded:.3f} s vs {solo:.3f} s solo"
        stats = srv.decisions()
        assert any(d.get("reason") == "bad_password" for d in stats)
