"""The reference server's core and socket front, driven by eapkit's own NAS client."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.policy import UserPolicy
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import AcctStatusType, Attr, encode_integer
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from eapkit.radius.udp import serve
from eapkit.session import PeerSession
from tests.radius.helpers import datagram

SECRET = b"s3cr3t-shared"


@pytest.fixture
def users(tmp_path: Path) -> LocalDirectory:
    d = LocalDirectory(tmp_path / "eapkit.db")
    d.add(
        "alice",
        "wonderland",
        iterations=1000,
        policy=UserPolicy(session_timeout=600, framed_ip="10.8.0.5"),
    )
    return d


def make_core(users: LocalDirectory, log: io.StringIO) -> RadiusCore:
    eap = EapAccess([gtc_authenticator(users.check_password)], policy=users.policy)
    return RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET)]), eap, decisions=DecisionLog(log)
    )


@contextmanager
def running(core: RadiusCore) -> Iterator[tuple[str, int]]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    bound: list[tuple[str, int]] = []
    ready = threading.Event()

    def ready_cb(addrs: list[tuple[str, int]]) -> None:
        bound.extend(addrs)
        ready.set()

    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(serve(core, [("127.0.0.1", 0)], ready=ready_cb, stop=stop),),
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    try:
        yield bound[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


async def _probe(addr: tuple[str, int], password: str, secret: bytes = SECRET) -> object:
    async with RadiusClient(addr, secret, timeout=0.5, retries=1) as client:
        peer = PeerSession([gtc_peer(lambda prompt: password)], "alice")
        return await authenticate(client, peer)


def test_gtc_over_radius_accept_and_reject(users: LocalDirectory) -> None:
    log = io.StringIO()
    core = make_core(users, log)
    with running(core) as addr:
        ok = asyncio.run(_probe(addr, "wonderland"))
        bad = asyncio.run(_probe(addr, "guess"))
    assert ok.accepted and ok.reply is not None  # type: ignore[attr-defined]
    assert ok.reply_attributes["SESSION_TIMEOUT"] == "600"  # type: ignore[attr-defined]
    assert ok.reply_attributes["FRAMED_IP_ADDRESS"] == "10.8.0.5"  # type: ignore[attr-defined]
    assert ok.reply_attributes["USER_NAME"] == "alice"  # type: ignore[attr-defined]
    assert not bad.accepted and bad.reply.code == Code.ACCESS_REJECT  # type: ignore[attr-defined]
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    decisions = [r for r in records if r.get("result")]
    assert [d["result"] for d in decisions] == ["accept", "reject"]
    assert decisions[1]["reason"] == "bad_password"
    assert "wonderland" not in log.getvalue() and "guess" not in log.getvalue()


def test_wrong_secret_gets_no_reply(users: LocalDirectory) -> None:
    core = make_core(users, io.StringIO())
    with running(core) as addr:
        from eapkit.radius.nas import RadiusTimeout

        with pytest.raises(RadiusTimeout):
            asyncio.run(_probe(addr, "wonderland", secret=b"wrong"))
    assert core.stats.get("bad_message_authenticator", 0) >= 1


def _access_request(eap: bytes, ident: int = 1, ma: bool = True) -> bytes:
    attrs = [(Attr.USER_NAME, b"alice"), (Attr.EAP_MESSAGE, eap)]
    return encode_request(
        Code.ACCESS_REQUEST,
        ident,
        attrs,
        SECRET,
        authenticator=new_request_authenticator(),
        message_authenticator=ma,
    )


def test_core_policies(users: LocalDirectory) -> None:
    core = make_core(users, io.StringIO())
    identity = bytes.fromhex("0201000a01616c696365")
    # unknown client: dropped
    assert datagram(core, _access_request(identity), ("192.0.2.1", 1812), 0) is None
    # no Message-Authenticator with EAP-Message: dropped (RFC 3579 §3.2)
    assert datagram(core, _access_request(identity, ma=False), ("127.0.0.1", 5), 0) is None
    # garbage: dropped
    assert datagram(core, b"\x01\x02", ("127.0.0.1", 5), 0) is None
    # a retransmission gets the very same reply, and the conversation does not advance
    wire = _access_request(identity, ident=9)
    first = datagram(core, wire, ("127.0.0.1", 5), 0)
    again = datagram(core, wire, ("127.0.0.1", 5), 1)
    assert first is not None and first == again
    assert decode(first).code == Code.ACCESS_CHALLENGE
    assert core.eap is not None and core.eap.live == 1
    # the conversation expires after its ttl
    core.eap.expire(1000)
    assert core.eap.live == 0
    # the Message-Authenticator comes first in replies (BlastRADIUS)
    assert decode(first).attributes[0][0] == Attr.MESSAGE_AUTHENTICATOR


def test_unknown_state_is_rejected(users: LocalDirectory) -> None:
    core = make_core(users, io.StringIO())
    attrs = [
        (Attr.EAP_MESSAGE, bytes.fromhex("0205000b06677565737321")),
        (Attr.STATE, b"x" * 16),
    ]
    wire = encode_request(Code.ACCESS_REQUEST, 3, attrs, SECRET, message_authenticator=True)
    reply = datagram(core, wire, ("127.0.0.1", 7), 0)
    assert reply is not None and decode(reply).code == Code.ACCESS_REJECT


def test_accounting_is_answered_and_logged(users: LocalDirectory) -> None:
    log = io.StringIO()
    core = make_core(users, log)
    attrs = [
        (Attr.ACCT_STATUS_TYPE, encode_integer(AcctStatusType.START)),
        (Attr.ACCT_SESSION_ID, b"sess-1"),
        (Attr.USER_NAME, b"alice"),
    ]
    wire = encode_request(Code.ACCOUNTING_REQUEST, 4, attrs, SECRET)
    reply = datagram(core, wire, ("127.0.0.1", 1813), 0)
    assert reply is not None
    response = decode(reply)
    assert response.code == Code.ACCOUNTING_RESPONSE
    assert response.verify_response_authenticator(SECRET, decode(wire).authenticator)
    record = json.loads(log.getvalue().splitlines()[-1])
    assert record["status"] == "Start" and record["session_id"] == "sess-1"
    # a bad accounting authenticator is dropped
    forged = wire[:4] + bytes(16) + wire[20:]
    assert datagram(core, forged, ("127.0.0.1", 1813), 0) is None
