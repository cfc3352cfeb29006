"""Two-round logins (strongSwan remote-1 EAP-MSCHAPv2, remote-2 EAP-GTC with
``gtc = "code"``) are bound to one gateway connection: eapkit.radius.rounds.

The NAS here sends what strongSwan's eap-radius sends in every Access-Request:
NAS-Port (the IKE SA's unique id), Calling-Station-Id and NAS-Identifier.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.directory import LocalDirectory
from eapkit.methods.base import Factor, MethodFactory, Outcome, Peer
from eapkit.methods.gtc import gtc_peer
from eapkit.methods.mschapv2 import mschapv2_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.dictionary import Attr, encode_integer
from eapkit.radius.packet import Code, Packet, decode, eap_message_attributes, encode_request
from eapkit.radius.rounds import RoundBinding
from eapkit.rand import DeterministicRandom
from eapkit.serve import ServeConfig, build_core, open_second_factors
from eapkit.session import Finished, PeerSession, Result, Send
from eapkit.store.memory import MemoryStore
from eapkit.verify.otp import OtpCredential, totp
from tests.radius.helpers import datagram

SECRET = "two rounds, one login"
TOM, EVE = bytes(range(20)), bytes(range(1, 21))


class Gateway:
    """One IKE SA on a strongSwan gateway: its rounds share NAS-Port and
    Calling-Station-Id."""

    def __init__(self, core: RadiusCore, ike_sa: int, client: str = "192.0.2.7[4500]") -> None:
        self.core, self.ike_sa, self.client = core, ike_sa, client
        self.rand = DeterministicRandom(ike_sa)
        self.identifier = 0

    def _request(self, user: str, eap: bytes, state: bytes | None) -> bytes:
        self.identifier = (self.identifier + 1) & 0xFF
        attrs = [
            (Attr.USER_NAME, user.encode()),
            (Attr.NAS_PORT, encode_integer(self.ike_sa)),
            (Attr.CALLING_STATION_ID, self.client.encode()),
            (Attr.NAS_IDENTIFIER, b"vpn-gateway"),
            *eap_message_attributes(eap),
        ]
        if state is not None:
            attrs.append((Attr.STATE, state))
        return encode_request(
            Code.ACCESS_REQUEST,
            self.identifier,
            attrs,
            SECRET.encode(),
            authenticator=self.rand.random_bytes(16),
        )

    def round(self, user: str, method: MethodFactory[Peer], now: float) -> Packet:
        """One EAP conversation relayed to eapkit; the last reply."""
        peer = PeerSession([method], user)
        action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
        state = None
        for _ in range(20):
            assert isinstance(action, Send), action
            raw = datagram(
                self.core, self._request(user, action.packet, state), ("127.0.0.1", 1), now
            )
            assert raw is not None
            reply = decode(raw)
            eap = reply.eap_message()
            assert eap is not None
            action = peer.receive(eap)
            if reply.code != Code.ACCESS_CHALLENGE:
                assert isinstance(action, Finished)
                return reply
            state = reply.get(Attr.STATE)
        raise AssertionError("conversation did not end")


@pytest.fixture
def lab(tmp_path: Path) -> tuple[RadiusCore, io.StringIO]:
    cfg = ServeConfig(
        db=tmp_path / "eapkit.db",
        methods=["mschapv2", "gtc"],
        gtc="code",
        clients=[Client.of("127.0.0.0/8", SECRET, "vpn-gateway", "nas")],
    )
    users = LocalDirectory(cfg.db)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    users.add("eve", "apple", second_factor="totp", iterations=1000)
    second = open_second_factors(cfg, users)
    second.totp.enroll("tom", OtpCredential(TOM), time.time() - 90)
    second.totp.enroll("eve", OtpCredential(EVE), time.time() - 90)
    log = io.StringIO()
    return build_core(cfg, users, log_stream=log), log


def _lines(log: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


def _password(pw: str) -> MethodFactory[Peer]:
    return mschapv2_peer(pw)


def _code(secret: bytes, now: float) -> MethodFactory[Peer]:
    return gtc_peer(lambda _prompt: totp(secret, now))


def test_password_then_code_of_the_same_user_and_connection(
    lab: tuple[RadiusCore, io.StringIO],
) -> None:
    core, log = lab
    now = time.time()
    gw = Gateway(core, ike_sa=7)
    assert gw.round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    assert gw.round("tom", _code(TOM, now), now + 1).code == Code.ACCESS_ACCEPT
    first, second = _lines(log)
    assert first["login_id"] and first["login_id"] == second["login_id"]
    assert second["result"] == "accept"


def test_toms_password_then_eves_code_is_refused(lab: tuple[RadiusCore, io.StringIO]) -> None:
    core, log = lab
    now = time.time()
    gw = Gateway(core, ike_sa=8)
    assert gw.round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    assert gw.round("eve", _code(EVE, now), now + 1).code == Code.ACCESS_REJECT
    last = _lines(log)[-1]
    assert (last["user"], last["reason"]) == ("eve", "round_not_bound")


def test_code_alone_is_refused(lab: tuple[RadiusCore, io.StringIO]) -> None:
    core, log = lab
    now = time.time()
    assert Gateway(core, ike_sa=9).round("tom", _code(TOM, now), now).code == Code.ACCESS_REJECT
    assert _lines(log)[-1]["reason"] == "round_not_bound"


def test_code_on_another_connection_or_late_is_refused(lab: tuple[RadiusCore, io.StringIO]) -> None:
    core, log = lab
    now = time.time()
    assert (
        Gateway(core, ike_sa=10).round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    )
    # another IKE SA of the same client address
    other = Gateway(core, ike_sa=11)
    assert other.round("tom", _code(TOM, now), now + 1).code == Code.ACCESS_REJECT
    # the same IKE SA, past the window (120 s)
    gw = Gateway(core, ike_sa=12)
    assert gw.round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    assert gw.round("tom", _code(TOM, now + 150), now + 150).code == Code.ACCESS_REJECT
    assert _lines(log)[-1]["reason"] == "round_not_bound"


def test_one_password_round_binds_one_code_round(lab: tuple[RadiusCore, io.StringIO]) -> None:
    core, _ = lab
    now = time.time()
    gw = Gateway(core, ike_sa=13)
    assert gw.round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    assert gw.round("tom", _code(TOM, now), now + 1).code == Code.ACCESS_ACCEPT
    assert gw.round("tom", _code(TOM, now + 30), now + 2).code == Code.ACCESS_REJECT


def test_bind_rounds_false_takes_the_code_alone(tmp_path: Path) -> None:
    cfg = ServeConfig.from_dict(
        {
            "db": str(tmp_path / "eapkit.db"),
            "methods": ["gtc"],
            "gtc": "code",
            "clients": [
                {"address": "127.0.0.0/8", "secret": SECRET, "name": "certgw", "bind_rounds": False}
            ],
        }
    )
    users = LocalDirectory(cfg.db)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    second = open_second_factors(cfg, users)
    second.totp.enroll("tom", OtpCredential(TOM), time.time() - 90)
    core = build_core(cfg, users, log_stream=io.StringIO())
    now = time.time()
    assert Gateway(core, ike_sa=1).round("tom", _code(TOM, now), now).code == Code.ACCESS_ACCEPT


# -- the binding as a state machine (hypothesis) -----------------------------------------


_PASSWORD = frozenset({Factor.PASSWORD})
_CODE = frozenset({Factor.OTP_DEVICE})


def _result(user: str, factors: frozenset[Factor]) -> Result:
    return Result(
        success=True,
        reason="ok",
        user=user,
        outcome=Outcome(True, "ok", identity=user, factors=factors),
    )


def _packet(ike_sa: int) -> Packet:
    attrs = [
        (Attr.NAS_PORT, encode_integer(ike_sa)),
        (Attr.CALLING_STATION_ID, b"192.0.2.7[4500]"),
        (Attr.NAS_IDENTIFIER, b"gw"),
    ]
    return decode(encode_request(Code.ACCESS_REQUEST, 1, attrs, b"s", authenticator=bytes(16)))


_round = st.tuples(
    st.sampled_from(["tom", "eve"]),
    st.sampled_from([1, 2]),  # IKE SA
    st.booleans(),  # a password round (else a code round)
    st.floats(min_value=0, max_value=100),  # seconds since the previous round
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_round, max_size=12))
def test_a_code_round_needs_a_live_unused_password_round(rounds: list[Any]) -> None:
    binding = RoundBinding(MemoryStore(), window=120.0)
    model: dict[tuple[str, int], float] = {}  # (user, IKE SA) -> password round's time
    now = 1000.0
    for user, ike_sa, password, gap in rounds:
        now += gap
        factors = _PASSWORD if password else _CODE
        refusal = binding.settle(_result(user, factors), "gw", _packet(ike_sa), now)
        if password:
            assert refusal is None
            model[(user, ike_sa)] = now
        else:
            since = model.pop((user, ike_sa), None)
            expected = since is not None and now - since < 120.0
            assert (refusal is None) == expected, (user, ike_sa, since, now)


def test_an_abandoned_round_carries_the_login_id(lab: tuple[RadiusCore, io.StringIO]) -> None:
    core, log = lab
    now = time.time()
    gw = Gateway(core, ike_sa=21)
    assert gw.round("tom", _password("pencil"), now).code == Code.ACCESS_ACCEPT
    # round 2 starts and the client goes away after the first Challenge
    peer = PeerSession([_code(TOM, now)], "tom")
    action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    assert isinstance(action, Send)
    raw = datagram(core, gw._request("tom", action.packet, None), ("127.0.0.1", 1), now + 1)
    assert raw is not None and decode(raw).code == Code.ACCESS_CHALLENGE
    assert core.eap is not None
    core.eap.expire(now + 3600)
    first, abandoned = _lines(log)
    assert abandoned["result"] == "abandoned"
    assert abandoned["login_id"] and abandoned["login_id"] == first["login_id"]
