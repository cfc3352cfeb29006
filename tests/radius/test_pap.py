"""Plain RADIUS PAP and RFC 2865 challenge-response, through the server core."""

from __future__ import annotations

import io

from eapkit.credentials import PasswordThenCode, Verdict
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from eapkit.radius.pap import PapAccess
from eapkit.testing import InMemoryPasswords
from tests.radius.helpers import datagram

SECRET = b"pap-secret"
ADDR = ("127.0.0.1", 4000)


def core(check: object) -> RadiusCore:
    log = DecisionLog(io.StringIO())
    log.records = []
    return RadiusCore(
        ClientTable([Client.of("127.0.0.1/32", SECRET)]),
        None,
        plain=PapAccess(check),  # type: ignore[arg-type]
        decisions=log,
    )


def request(user: str, password: str, ident: int = 1, state: bytes | None = None) -> bytes:
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, user.encode()),
        (Attr.USER_PASSWORD, hide_password(password.encode(), SECRET, authenticator)),
    ]
    if state is not None:
        attrs.append((Attr.STATE, state))
    return encode_request(
        Code.ACCESS_REQUEST,
        ident,
        attrs,
        SECRET,
        authenticator=authenticator,
        message_authenticator=True,
    )


def test_pap_accept_and_reject() -> None:
    c = core(InMemoryPasswords({"alice": "p" * 100}))
    ok = decode(datagram(c, request("alice", "p" * 100), ADDR, 0) or b"")
    assert ok.code == Code.ACCESS_ACCEPT and ok.get(Attr.USER_NAME) == b"alice"
    bad = decode(datagram(c, request("alice", "q", ident=2), ADDR, 0) or b"")
    assert bad.code == Code.ACCESS_REJECT
    assert bad.get(Attr.REPLY_MESSAGE) == b"Authentication failed"
    assert c.decisions.records is not None
    assert [r["reason"] for r in c.decisions.records] == ["ok", "bad_password"]


def test_challenge_response_round_trip() -> None:
    used: set[str] = set()

    def code(user: str, value: str, now: float, /) -> Verdict:
        if value != "424242" or value in used:
            return Verdict.reject("replayed" if value in used else "bad_code")
        used.add(value)
        return Verdict.accept(user)

    check = PasswordThenCode(InMemoryPasswords({"alice": "wonderland"}), code, lambda u: True)
    c = core(check)
    first = decode(datagram(c, request("alice", "wonderland"), ADDR, 0) or b"")
    assert first.code == Code.ACCESS_CHALLENGE
    assert first.get(Attr.REPLY_MESSAGE) == b"One-time code: "
    state = first.get(Attr.STATE)
    assert state is not None and len(state) >= 16
    second = datagram(c, request("alice", "424242", ident=2, state=state), ADDR, 1)
    assert decode(second or b"").code == Code.ACCESS_ACCEPT
    # the State is single-use, and a replayed code fails in a new round
    again = datagram(c, request("alice", "424242", ident=3, state=state), ADDR, 2)
    assert decode(again or b"").code == Code.ACCESS_REJECT
    first = decode(datagram(c, request("alice", "wonderland", ident=4), ADDR, 3) or b"")
    state = first.get(Attr.STATE)
    third = datagram(c, request("alice", "424242", ident=5, state=state), ADDR, 4)
    assert decode(third or b"").code == Code.ACCESS_REJECT
    # a wrong password never gets a challenge
    wrong = datagram(c, request("alice", "guess", ident=6), ADDR, 5)
    assert decode(wrong or b"").code == Code.ACCESS_REJECT


def test_chap_and_missing_password_are_rejected_with_reasons() -> None:
    c = core(InMemoryPasswords({"alice": "x"}))
    wire = encode_request(
        Code.ACCESS_REQUEST,
        9,
        [(Attr.USER_NAME, b"alice"), (Attr.CHAP_PASSWORD, b"\x01" * 17)],
        SECRET,
        message_authenticator=True,
    )
    assert decode(datagram(c, wire, ADDR, 0) or b"").code == Code.ACCESS_REJECT
    assert c.decisions.records is not None
    assert c.decisions.records[-1]["reason"] == "chap_unsupported"
