"""wpa_supplicant's ``eapol_test`` as the NAS and peer against a held login: the Accept
(with MS-MPPE keys wrapped for the first transmission of the request) goes out after
eapol_test has retransmitted, and eapol_test still finds the keys right; a denied login
ends in EAP Failure."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.directory import LocalDirectory
from eapkit.radius.udp import serve
from eapkit.serve import ServeConfig, build_core
from tests.bridge.helpers import ORIGIN, PASSWORD
from tests.bridge.test_gate import enroll
from tests.conftest import require_tool
from tests.interop.tools import EapolResult, eapol_test

pytestmark = pytest.mark.interop


async def _run(tmp_path: Path, method: str, approve: bool) -> tuple[EapolResult, dict[str, int]]:
    require_tool("eapol_test")
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=[method.lower()], pap=False)
    cfg.bridge = BridgeConfig(port=0, url=ORIGIN, timeout=20)
    users = LocalDirectory(cfg.db)
    users.add("alice", PASSWORD, iterations=1000)
    core = build_core(cfg, users, log_stream=io.StringIO())
    bridge = core.approval
    assert isinstance(bridge, Bridge)
    bridge.poll = 0.05
    enroll(bridge)
    bound: list[tuple[str, int]] = []
    stop = asyncio.Event()
    server = asyncio.create_task(serve(core, [("127.0.0.1", 0)], ready=bound.extend, stop=stop))
    while not bound:
        await asyncio.sleep(0.01)
    network = f'key_mgmt=IEEE8021X\neap={method}\nidentity="alice"\npassword="{PASSWORD}"\n'
    run = asyncio.create_task(
        asyncio.to_thread(
            eapol_test, network, bound[0][1], tmp_path, no_mppe=method == "GTC", timeout=30
        )
    )
    while not (pending := bridge.approvals.pending("alice", bridge.clock())):
        await asyncio.sleep(0.05)
    await asyncio.sleep(4.0)  # eapol_test retransmits after 3 s
    bridge.approvals.decide(pending[0].ticket, "alice", approve, bridge.clock())
    bridge.decided(pending[0].ticket)
    result = await run
    stop.set()
    await server
    return result, core.stats


def test_eapol_test_mschapv2_approved_with_keys(tmp_path: Path) -> None:
    result, stats = asyncio.run(_run(tmp_path, "MSCHAPV2", True))
    assert result.success, result.output[-3000:]
    assert result.mppe_ok, result.output[-3000:]
    assert stats.get("duplicate_held", 0) >= 1  # the hold outlived a retransmission


def test_eapol_test_gtc_denied(tmp_path: Path) -> None:
    result, stats = asyncio.run(_run(tmp_path, "GTC", False))
    assert not result.success
    assert "EAP-Failure" in result.output or "CTRL-EVENT-EAP-FAILURE" in result.output
    assert stats.get("reject") == 1
