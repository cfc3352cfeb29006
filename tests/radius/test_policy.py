"""Server policy at the end of a conversation: password-only methods for users with a
second factor, abandoned conversations, and a check that blows up."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

from eapkit.authz import Authorizer, PasswordThrottle, nas_scope
from eapkit.credentials import Verdict
from eapkit.directory import LocalDirectory
from eapkit.methods.base import Factor
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.radius.packet import Code, decode, encode_request
from eapkit.second_factor import SecondFactors
from eapkit.session import PeerSession
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.verify.otp import OtpCredential
from tests.radius.helpers import datagram
from tests.radius.test_server import running

SECRET = b"policy-secret"


def core_for(tmp_path: Path, second_factor: str, log: io.StringIO) -> RadiusCore:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    users.add("nora", "pencil", iterations=1000)
    second = SecondFactors(users, MemoryStore(), Sealer({"k": os.urandom(32)}))
    second.totp.enroll("tom", OtpCredential(bytes(20)), 0)
    clients = [Client.of("127.0.0.0/8", SECRET, "gw", second_factor)]
    authorizer = Authorizer(users, throttle=PasswordThrottle(second.store))
    eap = EapAccess(
        [mschapv2_authenticator(authorizer.nt_hash(users.nt_hash))], authorizer=authorizer
    )
    return RadiusCore(ClientTable(clients), eap, decisions=DecisionLog(log))


async def _mschapv2(addr: tuple[str, int], user: str) -> bool:
    async with RadiusClient(addr, SECRET, timeout=0.5, retries=1) as client:
        peer = PeerSession([mschapv2_peer("pencil")], user)
        return (await authenticate(client, peer)).accepted


def test_mschapv2_refused_to_a_user_with_a_second_factor(tmp_path: Path) -> None:
    log = io.StringIO()
    with running(core_for(tmp_path, "enforce", log)) as addr:
        assert not asyncio.run(_mschapv2(addr, "tom"))
        assert asyncio.run(_mschapv2(addr, "nora"))
    decisions = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [d["reason"] for d in decisions] == ["second_factor_required", "ok"]
    assert decisions[0]["session_id"] == ""


def test_mschapv2_allowed_when_the_nas_runs_the_second_factor(tmp_path: Path) -> None:
    log = io.StringIO()
    with running(core_for(tmp_path, "nas", log)) as addr:
        assert asyncio.run(_mschapv2(addr, "tom"))


def test_abandoned_conversation_is_logged(tmp_path: Path) -> None:
    log = io.StringIO()
    core = core_for(tmp_path, "enforce", log)
    first = encode_request(
        Code.ACCESS_REQUEST,
        1,
        [
            (Attr.USER_NAME, b"tom"),
            (Attr.EAP_MESSAGE, Identity(EapCode.RESPONSE, 5, b"tom").encode()),
        ],
        SECRET,
        message_authenticator=True,
    )
    reply = datagram(core, first, ("127.0.0.1", 1000), 0.0)
    assert reply is not None and decode(reply).code == Code.ACCESS_CHALLENGE
    assert core.eap is not None and core.eap.expire(1000.0) == 1
    record = json.loads(log.getvalue().splitlines()[-1])
    assert record["result"] == "abandoned" and record["user"] == "tom"
    assert record["method"] == "MSCHAPV2"


def test_a_check_that_raises_ends_in_reject_not_silence(tmp_path: Path) -> None:
    def broken(user: str, response: str, now: float, /) -> Verdict:
        raise RuntimeError("backend bug")

    log = io.StringIO()
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET)]),
        EapAccess([gtc_authenticator(broken)]),
        decisions=DecisionLog(log),
    )

    async def login() -> object:
        async with RadiusClient(addr, SECRET, timeout=0.5, retries=1) as client:
            return await authenticate(client, PeerSession([gtc_peer(lambda p: "x")], "tom"))

    with running(core) as addr:
        result = asyncio.run(login())
    assert not result.accepted  # type: ignore[attr-defined]
    assert result.reply is not None and result.reply.code == Code.ACCESS_REJECT  # type: ignore[attr-defined]
    record = json.loads(log.getvalue().splitlines()[-1])
    assert record["reason"] == "internal_error" and record["detail"] == "RuntimeError"


def test_policy_reads_the_factors_proved(tmp_path: Path) -> None:
    """Refused: a password alone, or a certificate alone, for a user with a second
    factor, whatever the method's name.  Passed: a password with a code, a code alone,
    anything behind a NAS that runs the second factor itself."""
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    users.add("nora", "pencil", iterations=1000)
    authorizer = Authorizer(users)
    gw, nas = Client.of("127.0.0.1/32", SECRET, "gw"), Client.of("::1/128", SECRET, "nas", "nas")

    def decide(user: str, client: Client, *factors: Factor) -> str:
        with nas_scope(client, 0.0):
            return authorizer.authorize(user, frozenset(factors), None, 0.0).reason

    assert decide("tom", gw, Factor.PASSWORD) == "second_factor_required"
    assert decide("tom", nas, Factor.PASSWORD) == "ok"
    assert decide("nora", gw, Factor.PASSWORD) == "ok"
    assert decide("tom", gw, Factor.PASSWORD, Factor.OTP_DEVICE) == "ok"
    assert decide("tom", gw, Factor.OTP_DEVICE) == "ok"
    assert decide("tom", gw, Factor.CERTIFICATE) == "second_factor_required"
    assert decide("nobody", gw, Factor.PASSWORD) == "unknown_user"
