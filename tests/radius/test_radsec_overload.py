"""A request the RadSec front's pool gives up on is answered, not lost: over TCP the
NAS does not retransmit (RFC 6613 §2.6.1), so an unanswered request would hang until
the NAS's own timeout.  The Front refuses it with an Access-Reject whose reason
(``queue_timeout``, ``queue_full``) is in the decision log."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path

import pytest

from eapkit.credentials import Verdict
from eapkit.directory import LocalDirectory
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, Drop, RadiusCore, Reply
from eapkit.radius.dictionary import Attr
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request
from eapkit.radius.pap import PapAccess
from eapkit.radius.radsec import RADSEC_SECRET
from tests.radius.test_radsec import Pki, TlsNas, gw1, pki, running

__all__ = ["pki"]  # the fixture, imported for its name

SLOW = 0.6  # seconds one password check takes here


def _slow(monkeypatch: pytest.MonkeyPatch) -> None:
    check = LocalDirectory.check_password

    def slow(self: LocalDirectory, user: str, password: str, now: float, /) -> Verdict:
        time.sleep(SLOW)
        return check(self, user, password, now)

    monkeypatch.setattr(LocalDirectory, "check_password", slow)


def test_requests_past_the_pool_deadline_get_a_reject(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One check runs per client at a time (two threads); the other three wait past
    the 0.2 s deadline: each is answered with a Reject, not left unanswered."""
    _slow(monkeypatch)
    with running(tmp_path, pki, pool_deadline=0.2) as server:

        async def run() -> list[int]:
            nas = await TlsNas.connect(server.addr, server.nas_context(gw1(pki), "gw1"))
            replies = await asyncio.wait_for(
                asyncio.gather(*(nas.pap("alice", "wonderland") for _ in range(4))), 5 * SLOW
            )
            await nas.close()
            return [r.code for r in replies]

        codes = asyncio.run(run())
    assert codes.count(Code.ACCESS_ACCEPT) == 1
    assert codes.count(Code.ACCESS_REJECT) == 3
    lines = [d for d in server.decisions() if "result" in d]
    refused = [d for d in lines if d["reason"] == "queue_timeout"]
    assert len(refused) == 3
    assert all(d["result"] == "reject" and d["transport"] == "radsec" for d in refused)
    assert server.core.stats["queue_timeout"] == 3


def _request(identifier: int, *, eap: bool = False) -> bytes:
    auth = bytes([identifier]) * 16
    attrs = [(Attr.USER_NAME, b"alice")]
    if eap:  # an EAP-Response/Identity (RFC 3748 §5.1)
        attrs.append((Attr.EAP_MESSAGE, bytes([2, 9, 0, 10, 1]) + b"alice"))
    else:
        attrs.append((Attr.USER_PASSWORD, hide_password(b"wonderland", RADSEC_SECRET, auth)))
    return encode_request(
        Code.ACCESS_REQUEST,
        identifier,
        attrs,
        RADSEC_SECRET,
        authenticator=auth,
        message_authenticator=True if eap else None,
    )


@pytest.mark.parametrize("reliable", [True, False])
def test_a_full_queue_is_refused_over_a_stream_and_dropped_over_udp(
    tmp_path: Path, reliable: bool
) -> None:
    """``queue_full``: over a stream (``reliable``) a Reject with the reason, an EAP
    Failure in it for EAP; over UDP a drop, for the NAS to retransmit."""
    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "wonderland", iterations=1000)
    out = io.StringIO()
    core = RadiusCore(
        ClientTable([]),
        None,
        plain=PapAccess(users.check_password),
        decisions=DecisionLog(out),
        require_message_authenticator=False,
    )
    gate = threading.Event()
    pool = FairPool(1, per_client=1, deadline=30)

    def busy() -> None:
        gate.wait()

    assert pool.submit("gw1", busy, lambda: None)  # the one thread is busy
    deadline = time.monotonic() + 10
    while pool.busy == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.submit("gw1", lambda: None, lambda: None)  # and gw1's queue is full
    client = Client.of("0.0.0.0/0", RADSEC_SECRET, "gw1", "enforce")
    sent: list[bytes] = []

    async def run() -> list[object]:
        front = Front(core, time.time, pool, reliable=reliable)
        handled = [
            front.receive(_request(n, eap=n == 2), ("127.0.0.1", 4000), sent.append, client=client)
            for n in (1, 2)
        ]
        return list(handled)

    try:
        handled = asyncio.run(run())
    finally:
        gate.set()
        pool.close()
    if not reliable:
        assert handled == [Drop("queue_full"), Drop("queue_full")]
        assert sent == []
        assert "queue_full" not in out.getvalue()
        return
    assert all(isinstance(h, Reply) for h in handled)
    replies = [decode(data) for data in sent]
    assert [r.code for r in replies] == [Code.ACCESS_REJECT] * 2
    assert replies[0].eap_message() is None
    assert replies[1].eap_message() == bytes([4, 9, 0, 4])  # EAP Failure, same Identifier
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["result"], r["reason"]) for r in records] == [("reject", "queue_full")] * 2
    assert core.stats["queue_full"] == 2
