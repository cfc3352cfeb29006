"""The RADIUS side of the bridge: the core holds a webauthn user's Accept, absorbs the
NAS's retransmissions, and answers Accept on approval, Reject on denial or expiry; over
real sockets with eapkit's probe as the NAS (EAP-GTC) and plain PAP."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from eapkit.bridge.app import BridgeApp
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.directory import LocalDirectory
from eapkit.packet import decode_frame
from eapkit.probe import ProbeOptions, probe
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, Drop, Hold, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from eapkit.radius.pap import PapAccess
from eapkit.radius.udp import serve
from eapkit.serve import ServeConfig, build_core
from eapkit.testing.soft_authenticator import SoftAuthenticator
from tests.bridge.helpers import PASSWORD, Browser, make_bridge, token_of
from tests.radius.helpers import datagram

SECRET = b"testing123"
ADDR = ("127.0.0.1", 4000)


def pap_request(user: str, ident: int = 1) -> bytes:
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, user.encode()),
        (Attr.USER_PASSWORD, hide_password(PASSWORD.encode(), SECRET, authenticator)),
        (Attr.NAS_IDENTIFIER, b"vpn-gw-1"),
        (Attr.NAS_IP_ADDRESS, bytes([192, 0, 2, 1])),
        (Attr.CALLING_STATION_ID, b"198.51.100.7"),
    ]
    return encode_request(
        Code.ACCESS_REQUEST,
        ident,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )


def enroll(bridge: Bridge, user: str = "alice") -> SoftAuthenticator:
    key = SoftAuthenticator()
    response = Browser(BridgeApp(bridge)).enroll(
        token_of(bridge.enrollment_link(user, 1000.0)), key
    )
    assert response.status == 200, response.body
    return key


def pap_core(bridge: Bridge) -> RadiusCore:
    log = DecisionLog(io.StringIO())
    log.records = []
    return RadiusCore(
        ClientTable([Client.of("127.0.0.1/32", SECRET, "vpn-gateways")]),
        None,
        plain=PapAccess(bridge.users.check_password),
        decisions=log,
        approval=bridge,
    )


def test_held_accept_absorbs_retransmissions_then_answers_once_decided() -> None:
    bridge = make_bridge()
    enroll(bridge)
    core = pap_core(bridge)
    request = pap_request("alice")
    held = core.receive(request, ADDR, 1000.0)
    assert isinstance(held, Hold)  # held: nothing sent yet
    assert core.receive(request, ADDR, 1003.0) == Drop("duplicate_held")  # a retransmission
    assert core.stats["held"] == 1 and core.stats["duplicate_held"] == 1
    (approval,) = bridge.approvals.pending("alice", 1004.0)
    assert approval.ticket == held.ticket and held.deadline == 1060.0
    assert (approval.client, approval.nas_identifier, approval.nas_address) == (
        "vpn-gateways",
        "vpn-gw-1",
        "192.0.2.1",
    )
    assert approval.calling_station == "198.51.100.7"
    bridge.approvals.decide(held.ticket, "alice", True, 1005.0)
    reply = core.settle(held, "approved", 1005.0)
    assert decode(reply).code == Code.ACCESS_ACCEPT
    assert datagram(core, request, ADDR, 1006.0) == reply  # from the duplicate cache
    records = core.decisions.records
    assert records is not None
    assert [(r["result"], r["reason"]) for r in records] == [
        ("held", "approval_pending"),
        ("accept", "approved"),
    ]
    assert records[1]["waited_ms"] == 5000.0


def test_denied_and_expired_approvals_end_in_reject() -> None:
    bridge = make_bridge()
    enroll(bridge)
    core = pap_core(bridge)
    for ident, outcome in ((1, "denied"), (2, "expired")):
        held = core.receive(pap_request("alice", ident), ADDR, 1000.0)
        assert isinstance(held, Hold)
        reply = decode(core.settle(held, outcome, 1001.0))
        assert reply.code == Code.ACCESS_REJECT
        assert reply.get(Attr.USER_NAME) is None and reply.get(Attr.CLASS) is None
    assert core.decisions.records is not None
    assert [r["reason"] for r in core.decisions.records if r["result"] == "reject"] == [
        "approval_denied",
        "approval_expired",
    ]


def test_users_without_approval_or_without_a_key() -> None:
    bridge = make_bridge()
    core = pap_core(bridge)
    # bob's second factor is none: no hold
    assert decode(datagram(core, pap_request("bob"), ADDR, 1000.0) or b"").code == (
        Code.ACCESS_ACCEPT
    )
    # alice must approve but has no key yet: refused at once, not held for nothing
    bridge.users.set_second_factor("alice", "webauthn")
    reply = decode(datagram(core, pap_request("alice", 2), ADDR, 1000.0) or b"")
    assert reply.code == Code.ACCESS_REJECT
    assert core.decisions.records is not None
    assert core.decisions.records[-1]["reason"] == "no_security_key"
    assert core.stats.get("held", 0) == 0


# -- over sockets: eapkit serve's core, the asyncio front, eapkit probe as the NAS ---------


async def _login(
    tmp_path: Path, decision: str | None, timeout: float = 20.0
) -> tuple[bool, list[dict[str, object]], bytes | None]:
    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=["gtc"], pap=False)
    cfg.bridge = BridgeConfig(port=0, url="http://localhost:8812", timeout=timeout)
    users = LocalDirectory(cfg.db)
    users.add("alice", PASSWORD, iterations=1000)
    core = build_core(cfg, users, log_stream=io.StringIO())
    core.decisions.records = []
    bridge = core.approval
    assert isinstance(bridge, Bridge)
    bridge.poll = 0.05
    enroll(bridge)
    bound: list[tuple[str, int]] = []
    stop = asyncio.Event()
    server = asyncio.create_task(serve(core, [("127.0.0.1", 0)], ready=bound.extend, stop=stop))
    while not bound:
        await asyncio.sleep(0.01)
    opts = ProbeOptions(
        server=bound[0],
        secret=SECRET,
        method="gtc",
        identity="alice",
        password=PASSWORD,
        timeout=1.0,
        retries=max(3, int(timeout) + 2),
    )
    login = asyncio.create_task(probe(opts))
    if decision is not None:
        while not (pending := bridge.approvals.pending("alice", bridge.clock())):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the probe retransmits meanwhile
        bridge.approvals.decide(pending[0].ticket, "alice", decision == "approve", bridge.clock())
        bridge.decided(pending[0].ticket)
    result = await asyncio.wait_for(login, 30)
    stop.set()
    await server
    eap = result.reply.eap_message() if result.reply is not None else None
    return result.accepted, core.decisions.records, eap


def test_probe_login_waits_for_approval(tmp_path: Path) -> None:
    accepted, records, eap = asyncio.run(_login(tmp_path, "approve"))
    assert accepted
    assert eap is not None and eap[0] == 3  # EAP Success
    assert [r["result"] for r in records if "result" in r] == ["held", "accept"]


def test_probe_login_denied(tmp_path: Path) -> None:
    accepted, records, eap = asyncio.run(_login(tmp_path, "deny"))
    assert not accepted
    assert eap is not None
    assert decode_frame(eap)[0].code == 4  # EAP Failure, with the Success's identifier
    assert [r.get("reason") for r in records if "result" in r][-1] == "approval_denied"


def test_probe_login_expires(tmp_path: Path) -> None:
    accepted, records, _ = asyncio.run(_login(tmp_path, None, timeout=1.5))
    assert not accepted
    assert [r.get("reason") for r in records if "result" in r][-1] == "approval_expired"
