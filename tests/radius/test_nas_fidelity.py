"""RADIUS details NASes and FreeRADIUS rely on (issue 23): Status-Server on both ports
(RFC 5997 §3), precise Message-Authenticator drop reasons, RFC 3579 §3.3, accounting
Message-Authenticators, conversations that expire on a timer, and the expiry line."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time

from eapkit.credentials import Verdict
from eapkit.methods.gtc import gtc_authenticator
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity, MethodData
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, Drop, RadiusCore, Reply
from eapkit.radius.dictionary import AcctStatusType, Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, eap_message_attributes, encode_request
from eapkit.session import AuthenticatorSession, Finished, SessionConfig
from tests.radius.test_server import running

SECRET = b"fidelity-secret"
SOURCE = ("127.0.0.1", 40000)


def _check(user: str, response: str, now: float) -> Verdict:
    return Verdict(response == "pencil", "ok" if response == "pencil" else "bad_password", user)


def _core(log: io.StringIO | None = None, ttl: float = 60.0) -> RadiusCore:
    eap = EapAccess([gtc_authenticator(_check)], ttl=ttl)
    decisions = DecisionLog(log or io.StringIO())
    decisions.records = []
    return RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET, "gw")]), eap, decisions=decisions
    )


def _identity(user: bytes = b"nora", ident: int = 7) -> bytes:
    return Identity(EapCode.RESPONSE, ident, user).encode()


def test_status_server_on_the_accounting_port_gets_accounting_response() -> None:
    core = _core()
    data = encode_request(Code.STATUS_SERVER, 1, [], SECRET)
    acct = core.receive(data, SOURCE, 1.0, local_port=1813)
    auth = core.receive(encode_request(Code.STATUS_SERVER, 2, [], SECRET), SOURCE, 1.0)
    assert isinstance(acct, Reply) and isinstance(auth, Reply)
    acct_reply, auth_reply = decode(acct.data), decode(auth.data)
    assert acct_reply.code == Code.ACCOUNTING_RESPONSE
    assert auth_reply.code == Code.ACCESS_ACCEPT
    request = decode(data)
    assert acct_reply.verify_message_authenticator(SECRET, request.authenticator, request.code)


def test_status_server_on_a_configured_accounting_port() -> None:
    core = _core()
    core.accounting_ports = frozenset({5000})
    handled = core.receive(
        encode_request(Code.STATUS_SERVER, 1, [], SECRET), SOURCE, 1.0, local_port=5000
    )
    assert isinstance(handled, Reply) and decode(handled.data).code == Code.ACCOUNTING_RESPONSE


def test_status_server_without_message_authenticator_is_missing_not_bad() -> None:
    core = _core()
    bare = encode_request(Code.STATUS_SERVER, 1, [], SECRET, message_authenticator=False)
    assert core.receive(bare, SOURCE, 1.0) == Drop("missing_message_authenticator")
    wrong = encode_request(Code.STATUS_SERVER, 2, [], b"other")
    assert core.receive(wrong, SOURCE, 1.0) == Drop("bad_message_authenticator")
    assert core.stats["missing_message_authenticator"] == 1
    assert core.stats["bad_message_authenticator"] == 1


def test_eap_message_with_user_password_is_rejected() -> None:
    core = _core()
    auth = bytes(16)
    attrs = [
        (Attr.USER_NAME, b"nora"),
        (Attr.USER_PASSWORD, hide_password(b"pencil", SECRET, auth)),
        *eap_message_attributes(_identity()),
    ]
    handled = core.receive(
        encode_request(Code.ACCESS_REQUEST, 3, attrs, SECRET, authenticator=auth), SOURCE, 1.0
    )
    assert isinstance(handled, Reply) and decode(handled.data).code == Code.ACCESS_REJECT
    assert core.eap is not None and core.eap.live == 0  # no conversation started
    assert core.decisions.records is not None
    assert core.decisions.records[-1]["reason"] == "eap_with_password"


def test_eap_message_with_chap_password_is_rejected() -> None:
    core = _core()
    attrs = [(Attr.CHAP_PASSWORD, bytes(17)), *eap_message_attributes(_identity())]
    handled = core.receive(encode_request(Code.ACCESS_REQUEST, 3, attrs, SECRET), SOURCE, 1.0)
    assert isinstance(handled, Reply) and decode(handled.data).code == Code.ACCESS_REJECT


def _accounting(ma_secret: bytes | None) -> bytes:
    attrs = [(Attr.ACCT_STATUS_TYPE, int(AcctStatusType.START).to_bytes(4, "big"))]
    data = encode_request(
        Code.ACCOUNTING_REQUEST,
        4,
        attrs,
        ma_secret or SECRET,
        message_authenticator=ma_secret is not None,
    )
    # the Request Authenticator is always right: only the Message-Authenticator differs
    head, body = data[:4], data[20:]
    return head + hashlib.md5(head + bytes(16) + body + SECRET).digest() + body


def test_accounting_message_authenticator_is_verified_when_present() -> None:
    core = _core()
    assert isinstance(core.receive(_accounting(None), SOURCE, 1.0), Reply)
    assert isinstance(core.receive(_accounting(SECRET), ("127.0.0.1", 40001), 1.0), Reply)
    bad = core.receive(_accounting(b"not-the-secret"), ("127.0.0.1", 40002), 1.0)
    assert bad == Drop("bad_message_authenticator")


def test_conversations_expire_on_the_fronts_timer() -> None:
    log = io.StringIO()
    core = _core(log, ttl=0.3)
    with running(core) as addr:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(
                encode_request(Code.ACCESS_REQUEST, 1, eap_message_attributes(_identity()), SECRET),
                addr,
            )
            assert decode(s.recv(4096)).code == Code.ACCESS_CHALLENGE
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and '"abandoned"' not in log.getvalue():
            time.sleep(0.05)
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    abandoned = [x for x in lines if x.get("result") == "abandoned"]
    assert len(abandoned) == 1, lines  # logged with no later request arriving
    assert abandoned[0]["detail"].startswith("no answer from the peer")


def test_expiry_line_says_the_peers_answers_were_refused() -> None:
    core = _core(ttl=10.0)
    first = core.receive(
        encode_request(Code.ACCESS_REQUEST, 1, eap_message_attributes(_identity()), SECRET),
        SOURCE,
        1.0,
    )
    assert isinstance(first, Reply)
    challenge = decode(first.data)
    state = challenge.get(Attr.STATE)
    eap_request = challenge.eap_message()
    assert state is not None and eap_request is not None
    wrong_id = (eap_request[1] + 1) & 0xFF  # an answer with the wrong identifier: discarded
    answer = MethodData(EapCode.RESPONSE, wrong_id, 6, b"pencil").encode()
    attrs = [*eap_message_attributes(answer), (Attr.STATE, state)]
    assert core.receive(encode_request(Code.ACCESS_REQUEST, 2, attrs, SECRET), SOURCE, 2.0) == Drop(
        "silently_discarded"
    )
    assert core.expire(30.0) == 1
    assert core.decisions.records is not None
    line = core.decisions.records[-1]
    assert line["result"] == "abandoned"
    assert "discarded" in line["detail"] and "identifier" in line["detail"]


def test_response_of_an_unexpected_type_ends_in_failure() -> None:
    session = AuthenticatorSession(
        [gtc_authenticator(_check)], config=SessionConfig(identity_round=False)
    )
    sent = session.receive(_identity())
    assert not isinstance(sent, Finished)
    request_id = session.retransmit()[1]
    md5 = MethodData(EapCode.RESPONSE, request_id, 4, bytes(17)).encode()
    action = session.receive(md5)
    assert isinstance(action, Finished)
    assert not action.result.success and action.result.reason == "unexpected_type"
    assert "Nak" in action.result.detail
    assert action.packet is not None and action.packet[0] == EapCode.FAILURE
