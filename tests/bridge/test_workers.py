"""``eapkit serve --workers N`` with the approval bridge: a worker that holds an Accept
settles it once the login is approved or denied, and sends the reply from its own
socket.  Two worker fronts in one process share one bridge (its store is what the
worker processes share)."""

from __future__ import annotations

import asyncio
import io
import socket

from eapkit.bridge.gate import Bridge
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, Packet, decode
from eapkit.radius.pap import PapAccess
from eapkit.radius.workers import WorkerFront, bind_group, set_owner
from tests.bridge.helpers import make_bridge
from tests.bridge.test_gate import SECRET, enroll, pap_request


def _core(bridge: Bridge, index: int) -> RadiusCore:
    log = DecisionLog(io.StringIO())
    log.records = []
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.1/32", SECRET, "vpn-gateways")]),
        None,
        plain=PapAccess(bridge.users.check_password),
        decisions=log,
        approval=bridge,
    )
    set_owner(core, index)
    return core


async def _held_login(bridge: Bridge, approve: bool) -> tuple[Packet, list[RadiusCore]]:
    group = bind_group("127.0.0.1", 0, 2)
    channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
    cores = [_core(bridge, i) for i in range(2)]
    fronts = [
        WorkerFront(cores[i], i, 2, [group[i]], channels[i][0], [b for _, b in channels])
        for i in range(2)
    ]
    stop = asyncio.Event()
    started: list[int] = []
    tasks = [asyncio.create_task(f.run(stop, lambda: started.append(1))) for f in fronts]
    loop = asyncio.get_running_loop()
    try:
        while len(started) < 2:
            await asyncio.sleep(0.01)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:
            nas.setblocking(False)
            nas.connect(group[0].getsockname())
            await loop.sock_sendall(nas, pap_request("alice"))
            pending = []
            for _ in range(200):  # the owner holds the Accept: nothing is sent yet
                pending = bridge.approvals.pending("alice", bridge.clock())
                if pending:
                    break
                await asyncio.sleep(0.01)
            (approval,) = pending
            assert sum(c.stats.get("held", 0) for c in cores) == 1
            bridge.approvals.decide(approval.ticket, "alice", approve, bridge.clock())
            reply = decode(await asyncio.wait_for(loop.sock_recv(nas, 4096), 5.0))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for _, out in channels:
            out.close()
    return reply, cores


def test_a_worker_settles_its_held_accept_once_approved() -> None:
    bridge = make_bridge()
    enroll(bridge)
    reply, cores = asyncio.run(_held_login(bridge, approve=True))
    assert reply.code == Code.ACCESS_ACCEPT and reply.get(Attr.USER_NAME) == b"alice"
    (owner,) = [c for c in cores if c.stats.get("held")]
    assert owner.stats["accept"] == 1
    assert owner.decisions.records is not None
    assert [(r["result"], r["reason"]) for r in owner.decisions.records] == [
        ("held", "approval_pending"),
        ("accept", "approved"),
    ]


def test_a_worker_rejects_its_held_accept_once_denied() -> None:
    bridge = make_bridge()
    enroll(bridge)
    reply, cores = asyncio.run(_held_login(bridge, approve=False))
    assert reply.code == Code.ACCESS_REJECT and reply.get(Attr.USER_NAME) is None
    (owner,) = [c for c in cores if c.stats.get("held")]
    assert owner.decisions.records is not None
    assert owner.decisions.records[-1]["reason"] == "approval_denied"
