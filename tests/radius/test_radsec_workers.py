"""``eapkit serve --workers 2`` with ``[radsec]`` (issue 17): worker 0 runs the RadSec
listener beside its UDP socket, the other workers serve UDP only; SIGHUP reloads its
clients; SIGTERM stops them all, worker 0 included."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from eapkit.radius.nas import RadiusClient
from eapkit.radius.packet import Code
from tests.interop.tools import EapkitServe
from tests.radius.test_radsec_reload import Lab, _login


def test_workers_serve_radsec_in_worker_0(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "serve")
    lab.write("gw1", "gw2")
    serve = EapkitServe(lab.work, extra=["--config", str(lab.config), "--workers", "2"])
    with serve:
        assert serve.daemon is not None
        serve.daemon.wait_for("radsec listening on")
        serve.daemon.wait_for("2 workers")

        async def run() -> list[int]:
            codes = await asyncio.gather(*(_login(lab, n) for n in ("gw1", "gw2", "gw1")))
            async with RadiusClient(("127.0.0.1", serve.port), b"testing123") as udp:
                reply, _ = await udp.request([], Code.STATUS_SERVER)
            return [*codes, reply.code]

        assert asyncio.run(run()) == [Code.ACCESS_ACCEPT] * 4
        lines = [d for d in serve.decisions if d.get("result") == "accept"]
        assert {(d["transport"], d["worker"]) for d in lines} == {("radsec", 0)}
        assert len(lines) == 3
        # SIGHUP to the parent reaches worker 0: a reload, not the end of serve
        lab.write("gw1")
        serve.daemon.proc.send_signal(signal.SIGHUP)
        serve.daemon.wait_for("reloaded: gw1$")
        assert asyncio.run(_login(lab, "gw2")) == 0
        assert asyncio.run(_login(lab, "gw1")) == Code.ACCESS_ACCEPT
        assert serve.daemon.proc.poll() is None
        serve.daemon.stop()
        output = serve.daemon.log.read_text(errors="replace")
        assert serve.daemon.proc.returncode == 0, output[-2000:]
    # every worker stopped on its own (worker 0: the RadSec listener ended its front too)
    assert sorted(re.findall(r"worker (\d) stopped", output)) == ["0", "1"]
