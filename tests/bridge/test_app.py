"""The bridge's approval table, enrollment links and web app, without sockets: a
software authenticator plays the security key (tests/bridge/test_browser.py does the same
in a real browser)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from eapkit import pki
from eapkit.bridge.app import COOKIE, BridgeApp, Request
from eapkit.bridge.approvals import APPROVED, DENIED, EXPIRED, ApprovalTable, TooManyPending
from eapkit.bridge.config import BridgeConfig
from eapkit.errors import ConfigError
from eapkit.second_factor import SecondFactors
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.testing.soft_authenticator import SoftAuthenticator
from eapkit.verify.webauthn import b64url_decode, b64url_encode
from tests.bridge.helpers import ORIGIN, PASSWORD, Browser, make_bridge, token_of

# -- the approval table -------------------------------------------------------------------


def test_first_decision_wins_and_expiry_is_a_decision() -> None:
    table = ApprovalTable(MemoryStore(), timeout=30)
    a = table.open("alice", 100.0, client="gw", nas_identifier="vpn-1")
    assert [p.ticket for p in table.pending("alice", 101.0)] == [a.ticket]
    assert table.pending("bob", 101.0) == []
    assert table.decide(a.ticket, "bob", True, 101.0) is None  # not bob's login
    assert table.decide(a.ticket, "alice", False, 102.0) == DENIED
    assert table.decide(a.ticket, "alice", True, 103.0) == DENIED  # too late to change
    assert table.expire(a.ticket, 104.0) == DENIED
    assert table.pending("alice", 104.0) == []

    b = table.open("alice", 200.0)
    assert table.expire(b.ticket, 230.0) == EXPIRED
    assert table.decide(b.ticket, "alice", True, 231.0) == EXPIRED

    c = table.open("alice", 300.0)
    assert table.decide(c.ticket, "alice", True, 330.0) == EXPIRED  # at the deadline
    d = table.open("alice", 400.0)
    assert table.decide(d.ticket, "alice", True, 401.0) == APPROVED
    assert table.outcome(d.ticket, 402.0) == APPROVED


def test_pending_logins_per_user_are_capped() -> None:
    table = ApprovalTable(MemoryStore(), timeout=30, max_pending=2)
    table.open("alice", 0.0)
    second = table.open("alice", 0.0)
    with pytest.raises(TooManyPending):
        table.open("alice", 1.0)
    table.open("bob", 1.0)  # others are not affected
    table.decide(second.ticket, "alice", False, 2.0)
    table.open("alice", 2.0)  # a decided one no longer counts
    table.open("alice", 40.0)  # nor do expired ones


def test_config_refuses_what_webauthn_cannot_use() -> None:
    with pytest.raises(ConfigError):
        BridgeConfig(url="http://vpn.example.org").check()  # plain http off localhost
    with pytest.raises(ConfigError):
        BridgeConfig(url="https://approve.example.org", rp_id="example.com").check()
    with pytest.raises(ConfigError):
        BridgeConfig.from_dict({"user_verification": "sometimes"})
    cfg = BridgeConfig.from_dict({"listen": "127.0.0.1:9000", "url": "https://a.example.org/"})
    assert (cfg.port, cfg.origin, cfg.effective_rp_id) == (
        9000,
        "https://a.example.org",
        "a.example.org",
    )
    assert BridgeConfig(port=8000).origin == "http://localhost:8000"


def test_enroll_ttl_is_capped_like_approves_link_ttl() -> None:
    """An enrollment link enrolls a factor for whoever holds it: ``enroll_ttl`` is at
    most 7 days, the cap of ``eapkit approve --link-ttl``."""
    assert BridgeConfig.from_dict({"enroll_ttl": 7 * 86400}).enroll_ttl == 7 * 86400
    with pytest.raises(ConfigError, match=r"enroll_ttl is at most 604800 seconds \(7 days\)"):
        BridgeConfig.from_dict({"enroll_ttl": 7 * 86400 + 1})
    with pytest.raises(ConfigError, match="must be positive"):
        BridgeConfig.from_dict({"enroll_ttl": 0})


# -- enrollment through the app -----------------------------------------------------------


def test_enrollment_link_registers_a_key_once() -> None:
    bridge = make_bridge()
    app = BridgeApp(bridge)
    browser = Browser(app)
    link = bridge.enrollment_link("alice", 1000.0)
    assert link.startswith(ORIGIN + "/enroll#")
    key = SoftAuthenticator()
    response = browser.enroll(token_of(link), key)
    assert response.status == 200, response.body
    assert json.loads(response.body) == {"ok": True, "user": "alice"}
    assert bridge.users.get("alice").second_factor == "webauthn"  # type: ignore[union-attr]
    assert len(bridge.webauthn.credentials("alice")) == 1
    # the link is used up, also for a second key
    again = browser.call("POST", "/api/enroll/begin", {"token": token_of(link)})
    assert again.status == 403 and json.loads(again.body)["error"] == "bad_link"


def test_a_failed_registration_leaves_the_link_usable() -> None:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    token = token_of(bridge.enrollment_link("alice", 1000.0))
    begin = browser.json("POST", "/api/enroll/begin", {"token": token})
    wrong_origin = SoftAuthenticator().create(begin["options"], origin="http://evil.test")
    bad = browser.call("POST", "/api/enroll/finish", {"token": token, "credential": wrong_origin})
    assert bad.status == 400 and json.loads(bad.body)["error"] == "bad_origin"
    assert browser.enroll(token, SoftAuthenticator()).status == 200


def test_expired_and_unknown_links_are_refused() -> None:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    token = token_of(bridge.enrollment_link("alice", 1000.0, ttl=60))
    late = browser.call("POST", "/api/enroll/begin", {"token": token}, now=1061.0)
    assert late.status == 403
    assert browser.call("POST", "/api/enroll/begin", {"token": "x" * 43}).status == 403


# -- signing in and deciding --------------------------------------------------------------


def enrolled(user: str = "alice") -> tuple[Browser, SoftAuthenticator]:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    key = SoftAuthenticator()
    assert browser.enroll(token_of(bridge.enrollment_link(user, 1000.0)), key).status == 200
    return Browser(browser.app), key


@pytest.mark.parametrize("named", [True, False])
def test_sign_in_shows_pending_logins_and_decides_them(named: bool) -> None:
    browser, key = enrolled()
    bridge = browser.app.bridge
    approval = bridge.approvals.open(
        "alice",
        1000.0,
        client="vpn-gw",
        nas_identifier="strongswan",
        calling_station="198.51.100.7",
    )
    assert browser.call("GET", "/api/pending").status == 401
    response = browser.sign_in(key, "alice" if named else None)
    assert response.status == 200, response.body
    cookie = dict(response.headers)["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and COOKIE in cookie
    body = json.loads(response.body)
    assert body["user"] == "alice"
    (view,) = body["pending"]
    assert (view["ticket"], view["gateway"], view["nas_identifier"], view["device"]) == (
        approval.ticket,
        "vpn-gw",
        "strongswan",
        "198.51.100.7",
    )
    assert view["seconds_left"] == 60
    decided = browser.json(
        "POST", "/api/decide", {"ticket": approval.ticket, "decision": "approve"}
    )
    assert decided["outcome"] == APPROVED
    assert bridge.approvals.outcome(approval.ticket, 1001.0) == APPROVED
    assert browser.json("GET", "/api/pending")["pending"] == []


def test_one_user_cannot_decide_anothers_login() -> None:
    browser, key = enrolled("alice")
    bridge = browser.app.bridge
    bobs = bridge.approvals.open("bob", 1000.0)
    assert browser.sign_in(key).status == 200
    refused = browser.call("POST", "/api/decide", {"ticket": bobs.ticket, "decision": "approve"})
    assert refused.status == 404
    assert bridge.approvals.outcome(bobs.ticket, 1001.0) is None


def test_sessions_expire_and_assertions_are_checked() -> None:
    browser, key = enrolled()
    bridge = browser.app.bridge
    assert browser.sign_in(key, now=1000.0).status == 200
    assert browser.call("GET", "/api/pending", now=1119.0).status == 200
    assert browser.call("GET", "/api/pending", now=1121.0).status == 401  # session_ttl 120
    begin = browser.json("POST", "/api/signin/begin", {})
    forged = key.get(begin["options"], origin=ORIGIN)
    signature = bytearray(b64url_decode(forged["response"]["signature"]))
    signature[-1] ^= 1
    forged["response"]["signature"] = b64url_encode(bytes(signature))
    refused = browser.call("POST", "/api/signin/finish", {"credential": forged})
    assert refused.status == 403
    assert json.loads(refused.body)["error"] == "bad_signature"
    assert any(e.get("result") == "refused" for e in bridge.events)  # type: ignore[attr-defined]


def test_cross_site_requests_are_refused() -> None:
    browser, _ = enrolled()
    app = browser.app
    body = json.dumps({}).encode()
    for headers, status in (
        ({"content-type": "application/json"}, 403),  # no Origin
        ({"origin": "http://evil.test", "content-type": "application/json"}, 403),
        ({"origin": ORIGIN, "content-type": "text/plain"}, 415),  # a form post
        ({"origin": ORIGIN, "content-type": "application/json; charset=utf-8"}, 200),
    ):
        response = app.handle(Request("POST", "/api/signin/begin", headers, body), 1000.0)
        assert response.status == status, headers
    page = app.handle(Request("GET", "/", {}), 1000.0)
    headers = dict(page.all_headers())
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert b"/app.js" in page.body
    assert app.handle(Request("GET", "/app.js", {}), 0).status == 200
    assert app.handle(Request("DELETE", "/", {}), 0).status == 405


def test_device_crl_only_when_configured(tmp_path: Path) -> None:
    """GET /devices.crl is a route only with ``device_crl``; then 503 until the file
    holds a CRL, and the CRL as application/pkix-crl (RFC 2585 §4.2) after."""
    assert BridgeApp(make_bridge()).handle(Request("GET", "/devices.crl", {}), 0).status == 404
    path = tmp_path / "devices.crl"
    app = BridgeApp(make_bridge(device_crl=str(path)))
    assert app.handle(Request("GET", "/devices.crl", {}), 0).status == 503
    now = dt.datetime.now(dt.UTC)
    crl = pki.make_crl(pki.make_ca("devices CA", now=now), [42], now=now)
    path.write_bytes(pki.crl_pem(crl))
    for method in ("GET", "HEAD"):
        response = app.handle(Request(method, "/devices.crl", {}), 0)
        assert (response.status, response.content_type) == (200, "application/pkix-crl")
        assert response.body == crl.public_bytes(serialization.Encoding.DER)


@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
    path=st.sampled_from(
        [
            "/",
            "/enroll",
            "/api/pending",
            "/api/decide",
            "/api/signin/begin",
            "/api/signin/finish",
            "/api/enroll/begin",
            "/api/enroll/finish",
            "/nope",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda c: (
                st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "token": st.text(max_size=50),
                "ticket": st.text(max_size=30),
                "decision": st.sampled_from(["approve", "deny", "x"]),
                "credential": st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
                "user": st.text(max_size=10),
            }
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_arbitrary_requests_get_an_http_answer(method: str, path: str, body: bytes) -> None:
    app = _FUZZ_APP
    headers = {"origin": ORIGIN, "content-type": "application/json", "cookie": _FUZZ_COOKIE}
    response = app.handle(Request(method, path, headers, body), 1000.0)
    assert 200 <= response.status < 600
    if response.status >= 400 and response.content_type == "application/json":
        assert "error" in json.loads(response.body)


_FUZZ_BROWSER, _FUZZ_KEY = enrolled()
_FUZZ_APP = _FUZZ_BROWSER.app
_FUZZ_BROWSER.sign_in(_FUZZ_KEY)
_FUZZ_COOKIE = f"{COOKIE}={_FUZZ_BROWSER.cookies[COOKIE]}"


# -- the second factor without the bridge fails closed ------------------------------------


def test_webauthn_users_need_a_code_when_the_bridge_is_off() -> None:
    bridge = make_bridge()
    bridge.users.set_second_factor("alice", "webauthn")
    second = SecondFactors(bridge.users, MemoryStore(), Sealer.from_config("k1:" + "A" * 43 + "="))
    pap = second.pap(bridge.users.check_password)
    assert pap("alice", PASSWORD, 0.0).reason == "challenge"  # asks for a (recovery) code
    assert not second.check_code("alice", "123456", 0.0).ok
    second.approval_bridge = True
    assert pap("alice", PASSWORD, 0.0).ok  # the bridge's approval is the second step
