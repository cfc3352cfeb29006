"""Two-person factor resets (eapkit.reset) and the authenticator app enrolled from the
one-time link (eapkit.bridge.reenroll): one administrator asks, another approves; the
approval and the removal are one store transaction; the requester, a late approval and
a second approval are refused."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.bridge.app import BridgeApp
from eapkit.bridge.approvals import EnrollmentLinks
from eapkit.bridge.config import BridgeConfig
from eapkit.bridge.gate import Bridge
from eapkit.directory import LocalDirectory
from eapkit.reset import ResetRefused, ResetRequests, ResetStore
from eapkit.second_factor import SecondFactors
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.store.sqlite import SqliteStore
from eapkit.testing.soft_authenticator import SoftAuthenticator
from eapkit.verify.otp import OtpCredential, b32_secret, totp
from eapkit.verify.yubico import YubikeyCredential, YubikeyToken, encode_otp
from tests.bridge.helpers import ORIGIN, Browser, make_bridge, token_of
from tests.store.redis_server import running_redis

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for this module (as tests/store does)."""
    with running_redis(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResetStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "s.db")
        yield s
        s.close()
    else:
        from eapkit.store.redis_store import RedisStore

        r = RedisStore(request.getfixturevalue("redis_url"), prefix=f"rs{uuid.uuid4().hex}:")
        yield r
        r.close()


@pytest.fixture
def second(tmp_path: Path, store: ResetStore) -> SecondFactors:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw", second_factor="totp", iterations=1000)
    users.add("bob", "pw", second_factor="totp", iterations=1000)
    sf = SecondFactors(users, store, Sealer({"k": os.urandom(32)}))  # type: ignore[arg-type]
    for user in ("tom", "bob"):
        sf.totp.enroll(user, OtpCredential(bytes(20)), NOW - 100)
        sf.recovery.issue(user, NOW - 100, 3)
    sf.yubikey.enroll("tom", YubikeyCredential("cccccccccccb", bytes(6), bytes(16)), NOW)
    sf.yubikey.enroll("bob", YubikeyCredential("cccccccccccd", bytes(6), bytes(16)), NOW)
    return sf


def enrolled(second: SecondFactors, user: str) -> dict[str, bool]:
    public = "cccccccccccb" if user == "tom" else "cccccccccccd"
    return {
        "totp": second.store.get(f"otp:cred:{user}") is not None,
        "recovery": second.recovery.remaining(user, NOW) > 0,
        "yubikey": second.store.get(f"yk:cred:{public}") is not None,
    }


def test_request_then_approval_by_another_admin_removes_the_factors(
    second: SecondFactors, store: ResetStore
) -> None:
    events: list[dict[str, Any]] = []
    resets = ResetRequests(store, audit=events.append)
    req = resets.request("tom", ["all"], by="ada", reason="lost phone", now=NOW)
    assert enrolled(second, "tom") == {"totp": True, "recovery": True, "yubikey": True}
    done, removed = resets.approve(req.id, by="grace", now=NOW + 60)
    assert (done.state, done.approved_by) == ("approved", "grace")
    assert removed == 1 + 1 + 1 + 3 + 1  # totp, yubikey, webauthn user, recovery + 3 codes
    assert enrolled(second, "tom") == {"totp": False, "recovery": False, "yubikey": False}
    assert enrolled(second, "bob") == {"totp": True, "recovery": True, "yubikey": True}
    assert second.check_code("tom", totp(bytes(20), NOW + 60), NOW + 60).reason != "ok"
    assert second.users.get("tom").second_factor == "totp"  # type: ignore[union-attr]
    assert [e["event"] for e in events] == ["reset_requested", "reset_approved"]
    assert (events[1]["by"], events[1]["requested_by"], events[1]["id"]) == (
        "grace",
        "ada",
        req.id,
    )
    assert events[1]["scope"]["factors"] == ["totp", "yubikey", "webauthn", "recovery"]
    with pytest.raises(ResetRefused, match="already approved"):
        resets.approve(req.id, by="grace", now=NOW + 61)


def test_only_the_named_factors_go(second: SecondFactors, store: ResetStore) -> None:
    resets = ResetRequests(store)
    req = resets.request("tom", ["totp"], by="ada", reason="new phone", now=NOW)
    resets.approve(req.id, by="grace", now=NOW)
    assert enrolled(second, "tom") == {"totp": False, "recovery": True, "yubikey": True}


def test_the_requester_cannot_approve(second: SecondFactors, store: ResetStore) -> None:
    resets = ResetRequests(store)
    req = resets.request("tom", ["totp"], by="ada", reason="r", now=NOW)
    with pytest.raises(ResetRefused, match="different administrator"):
        resets.approve(req.id, by="ada", now=NOW)
    assert enrolled(second, "tom")["totp"]


def test_an_expired_request_is_refused_and_logged(second: SecondFactors, store: ResetStore) -> None:
    events: list[dict[str, Any]] = []
    resets = ResetRequests(store, audit=events.append)
    req = resets.request("tom", ["totp"], by="ada", reason="r", now=NOW)
    with pytest.raises(ResetRefused, match="expired"):
        resets.approve(req.id, by="grace", now=NOW + DAY)
    assert enrolled(second, "tom")["totp"]
    assert events[-1]["event"] == "reset_expired" and events[-1]["by"] == "grace"
    assert resets.all()[0].state == "expired"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"reason": ""}, "reason"),
        ({"by": " "}, "administrator"),
        ({"factors": ["sms"]}, "--factors"),
        ({"factors": []}, "--factors"),
        ({"ttl": 0.0}, "expires"),
    ],
)
def test_bad_requests_are_refused(store: ResetStore, kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"factors": ["totp"], "by": "ada", "reason": "r", "now": NOW}
    args.update(kw)
    factors = args.pop("factors")
    with pytest.raises(ResetRefused, match=message):
        ResetRequests(store).request("tom", factors, **args)
    assert ResetRequests(store).all() == []


def test_nothing_half_written_when_the_request_changed_meanwhile(
    second: SecondFactors, store: ResetStore
) -> None:
    """The approval's swap finds the request changed (another approver was faster, or
    it was edited): it changes nothing at all, not even part of the removal."""
    resets = ResetRequests(store)
    req = resets.request("tom", ["all"], by="ada", reason="r", now=NOW)
    real_swap = store.swap

    def swap_after_a_change(key: str, old: bytes, new: bytes, delete: Any = ()) -> bool:
        record = json.loads(old)
        store.put(key, json.dumps({**record, "reason": "edited"}, sort_keys=True).encode())
        return real_swap(key, old, new, delete)

    store.swap = swap_after_a_change  # type: ignore[method-assign]
    with pytest.raises(ResetRefused, match="changed meanwhile"):
        resets.approve(req.id, by="grace", now=NOW)
    assert enrolled(second, "tom") == {"totp": True, "recovery": True, "yubikey": True}


def test_two_approvers_at_once_apply_it_once(second: SecondFactors, store: ResetStore) -> None:
    resets = ResetRequests(store)
    req = resets.request("tom", ["totp"], by="ada", reason="r", now=NOW)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def approve(name: str) -> None:
        barrier.wait()
        try:
            resets.approve(req.id, by=name, now=NOW)
            outcomes.append("applied")
        except ResetRefused as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(n,)) for n in ("g1", "g2", "g3", "g4")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("applied") == 1


# -- the authenticator app from the one-time link ---------------------------------------


def test_totp_from_the_link_is_single_use_and_needs_a_code(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw", second_factor="webauthn", iterations=1000)
    store = MemoryStore()
    second = SecondFactors(users, store, Sealer({"k": os.urandom(32)}))
    events: list[dict[str, Any]] = []
    bridge = Bridge(BridgeConfig(url=ORIGIN), users, store, audit=events.append, otp=second.totp)
    browser = Browser(BridgeApp(bridge))
    token = EnrollmentLinks(store).issue("tom", 1000.0, 3600.0)
    begun = browser.json("POST", "/api/enroll/totp/begin", {"token": token})
    assert begun["user"] == "tom" and begun["svg"].startswith("<svg")
    secret = b32_secret(parse_qs(urlparse(begun["uri"]).query)["secret"][0])
    wrong = browser.call("POST", "/api/enroll/totp/finish", {"token": token, "code": "000000"})
    assert (wrong.status, json.loads(wrong.body)["error"]) == (400, "bad_code")
    assert users.get("tom").second_factor == "webauthn"  # type: ignore[union-attr]
    code = totp(secret, 1000.0)
    ok = browser.call("POST", "/api/enroll/totp/finish", {"token": token, "code": code})
    assert ok.status == 200, ok.body
    assert users.get("tom").second_factor == "totp"  # type: ignore[union-attr]
    assert second.check_code("tom", code, 1000.0).reason == "replayed"  # spent
    assert second.check_code("tom", totp(secret, 1030.0), 1030.0).ok
    again = browser.call("POST", "/api/enroll/totp/begin", {"token": token})
    assert again.status == 403  # the link is used up
    assert events[-1]["event"] == "totp_enrolled"


def test_totp_link_expires(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw", second_factor="totp", iterations=1000)
    store = MemoryStore()
    second = SecondFactors(users, store, Sealer({"k": os.urandom(32)}))
    bridge = Bridge(BridgeConfig(url=ORIGIN), users, store, otp=second.totp)
    browser = Browser(BridgeApp(bridge))
    token = EnrollmentLinks(store).issue("tom", 1000.0, 60.0)
    late = browser.call("POST", "/api/enroll/totp/begin", {"token": token}, now=1061.0)
    assert late.status == 403


def test_security_keys_are_removed_and_the_gate_then_refuses() -> None:
    bridge = make_bridge()
    browser = Browser(BridgeApp(bridge))
    for user in ("alice", "bob"):
        token = token_of(bridge.enrollment_link(user, 1000.0))
        assert browser.enroll(token, SoftAuthenticator()).status == 200
    assert len(bridge.webauthn.credentials("alice")) == 1
    resets = ResetRequests(bridge.store)  # type: ignore[arg-type]
    req = resets.request("alice", ["webauthn"], by="ada", reason="stolen key", now=NOW)
    _, removed = resets.approve(req.id, by="grace", now=NOW)
    assert removed == 3  # the user record, the credential, its signature counter
    assert bridge.webauthn.credentials("alice") == []
    assert len(bridge.webauthn.credentials("bob")) == 1
    assert bridge.needs_approval("alice")  # still a security-key user: fail closed


def test_sweep_marks_expired_requests_once(store: ResetStore) -> None:
    events: list[dict[str, Any]] = []
    resets = ResetRequests(store, audit=events.append)
    late = resets.request("tom", ["totp"], by="ada", reason="r", now=NOW, ttl=60.0)
    live = resets.request("tom", ["totp"], by="ada", reason="r", now=NOW)
    assert [r.id for r in resets.sweep(NOW + 61)] == [late.id]
    assert resets.sweep(NOW + 62) == []
    assert [e["event"] for e in events].count("reset_expired") == 1
    assert {r.id: r.state for r in resets.all()} == {late.id: "expired", live.id: "pending"}


ADMINS = ("ada", "grace", "alan")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["request", "approve", "wait"]),
            st.sampled_from(ADMINS),
            st.integers(0, 3),
            st.floats(0, 50_000),
        ),
        max_size=25,
    )
)
def test_reset_state_machine(ops: list[tuple[str, str, int, float]]) -> None:
    """Whatever the order of requests, approvals and waiting: a request is applied at
    most once, never by its requester, never after it expired, and every refusal is a
    ResetRefused."""
    store = MemoryStore()
    resets = ResetRequests(store)
    now, ids, applied = NOW, [], []
    for op, admin, pick, dt in ops:
        if op == "wait":
            now += dt
        elif op == "request":
            ids.append(resets.request("tom", ["totp"], by=admin, reason="r", now=now).id)
        elif ids:
            rid = ids[pick % len(ids)]
            req = resets.get(rid)
            assert req is not None
            try:
                done, _ = resets.approve(rid, by=admin, now=now)
            except ResetRefused:
                continue
            assert admin != req.by and now < req.expires and req.state == "pending"
            assert done.approved_by == admin
            applied.append(rid)
    assert len(applied) == len(set(applied))
    for req in resets.all():
        assert (req.state == "approved") == (req.id in applied)


def test_yubikey_from_the_link(tmp_path: Path) -> None:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("tom", "pw", second_factor="totp", iterations=1000)
    users.add("bob", "pw", second_factor="yubikey", iterations=1000)
    store = MemoryStore()
    second = SecondFactors(users, store, Sealer({"k": os.urandom(32)}))
    bob_key = YubikeyCredential("cccccccccccd", bytes(6), bytes(range(16)))
    second.yubikey.enroll("bob", bob_key, 1000.0)
    events: list[dict[str, Any]] = []
    bridge = Bridge(
        BridgeConfig(url=ORIGIN), users, store, audit=events.append, yubikey=second.yubikey
    )
    browser = Browser(BridgeApp(bridge))
    token = EnrollmentLinks(store).issue("tom", 1000.0, 3600.0)
    aes = bytes(range(32, 48))
    mine = YubikeyCredential("cccccccccccb", b"\x01" * 6, aes)

    def otp(cred: YubikeyCredential, counter: int) -> str:
        token_ = YubikeyToken(cred.private_id, counter, 0, 0)
        return encode_otp(token_, cred.aes_key, cred.public_id)

    def enroll(one_time: str, key: bytes) -> tuple[int, str]:
        body = {"token": token, "otp": one_time, "aes_key": key.hex()}
        response = browser.call("POST", "/api/enroll/yubikey", body)
        return response.status, json.loads(response.body).get("error", "")

    assert enroll(otp(mine, 1), bytes(16)) == (400, "bad_otp")  # not the slot's key
    assert enroll(otp(bob_key, 1), bob_key.aes_key) == (400, "key_taken")  # bob's key
    assert enroll(otp(mine, 1), aes) == (200, "")
    assert users.get("tom").second_factor == "yubikey"  # type: ignore[union-attr]
    assert second.check_code("tom", otp(mine, 1), 1001.0).reason == "replayed"  # spent
    assert second.check_code("tom", otp(mine, 2), 1001.0).ok
    assert second.check_code("bob", otp(bob_key, 3), 1001.0).ok  # bob's key untouched
    assert enroll(otp(mine, 3), aes)[0] == 403  # the link is used up
    assert events[-1]["event"] == "yubikey_enrollment_refused"
