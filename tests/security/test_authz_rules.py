"""The authorization step's rules without a server (eapkit.authz): the certificate
mapping (property-tested), factors, the NAS exemption keyed by the client entry, the
password throttle (failing closed), and one password check per 2FA login."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.authz import Authorizer, CertificateIdentity, PasswordThrottle, nas_scope
from eapkit.credentials import Verdict
from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import CertificateNames, Factor
from eapkit.radius.clients import Client
from eapkit.second_factor import SecondFactors
from eapkit.store.base import StoreUnavailable
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer

GW = Client.of("192.0.2.1/32", "s", "gw")
NAMES = CertificateNames(("Alice",), ("alice@corp.example",), ("alice.upn@ad.example",), ("pc1",))


@pytest.fixture
def users(tmp_path: Path) -> LocalDirectory:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "pw", iterations=1000)
    users.add("tom", "pw", second_factor="totp", iterations=1000)
    users.add("wendy", "pw", second_factor="webauthn", iterations=1000)
    return users


def test_mapping_rule_first_present_wins() -> None:
    # no realm configured: the UPN, whole
    assert CertificateIdentity().user(NAMES) == "alice.upn@ad.example"
    corp = CertificateIdentity(("san_email", "cn"), frozenset({"CORP.example"}))
    assert corp.user(NAMES) == "alice"
    ad = CertificateIdentity(realms=frozenset({"ad.example", "corp.example"}))
    assert ad.user(NAMES) == "alice.upn"  # UPN before e-mail
    assert CertificateIdentity(("san_dns",)).user(NAMES) == "pc1"
    assert CertificateIdentity(("cn",)).user(NAMES) == "Alice"
    assert CertificateIdentity(("san_email",)).user(CertificateNames(("Alice",))) is None
    with pytest.raises(ConfigError):
        CertificateIdentity(("subject",))


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(
    cns=st.lists(text, max_size=2),
    emails=st.lists(text, max_size=2),
    upns=st.lists(text, max_size=2),
    realms=st.frozensets(text, max_size=2),
)
def test_mapping_never_invents_a_name(
    cns: list[str], emails: list[str], upns: list[str], realms: frozenset[str]
) -> None:
    """Whatever the certificate holds, the user is one of its names (stripped), or the
    local part of a UPN/e-mail whose realm is configured; nothing else, and nobody only
    when it holds no name."""
    names = CertificateNames(tuple(cns), tuple(emails), tuple(upns))
    user = CertificateIdentity(realms=realms).user(names)
    folded = {r.casefold() for r in realms}
    allowed = {c.strip() for c in (*cns, *emails, *upns) if c.strip()}
    for value in (*emails, *upns):
        local, at, realm = value.strip().rpartition("@")
        if at and local and realm.casefold() in folded:
            allowed.add(local)
    assert user is None if not allowed else user in allowed


def decide(authz: Authorizer, nas: Client, user: str, *factors: Factor) -> str:
    with nas_scope(nas, 0.0):
        return authz.authorize(user, frozenset(factors), None, 0.0).reason


def test_exemption_is_the_client_entry_not_its_name(users: LocalDirectory) -> None:
    """Two entries named alike: only the one that says second_factor = "nas" exempts
    (the old hook looked the name up in a set of exempt names)."""
    enforce = Client.of("192.0.2.0/24", "s", "site")
    exempt = Client.of("198.51.100.0/24", "s", "site", "nas")
    authz = Authorizer(users)
    assert decide(authz, enforce, "tom", Factor.PASSWORD) == "second_factor_required"
    assert decide(authz, exempt, "tom", Factor.PASSWORD) == "ok"


def test_factors_policy(users: LocalDirectory) -> None:
    authz = Authorizer(users)
    assert decide(authz, GW, "tom", Factor.CERTIFICATE) == "second_factor_required"
    assert decide(authz, GW, "tom", Factor.PASSWORD, Factor.SECURITY_KEY) == "ok"
    assert decide(authz, GW, "alice") == "no_factor"
    assert (
        decide(Authorizer(users, certificate_is_possession=True), GW, "tom", Factor.CERTIFICATE)
        == "ok"
    )
    # a security-key user without the bridge must prove possession here; with the
    # bridge, its approval gate holds the Accept for the key
    assert decide(authz, GW, "wendy", Factor.PASSWORD) == "second_factor_required"
    assert decide(Authorizer(users, approval_bridge=True), GW, "wendy", Factor.PASSWORD) == "ok"
    users.set_disabled("alice", True)
    assert decide(authz, GW, "alice", Factor.PASSWORD) == "user_disabled"


def test_certificate_names_the_user_not_the_hint(users: LocalDirectory) -> None:
    authz = Authorizer(users)
    names = CertificateNames(("alice",))
    with nas_scope(GW, 0.0):
        got = authz.authorize("anonymous@realm", {Factor.CERTIFICATE}, names, 0.0)
        assert (got.ok, got.user) == (True, "alice")
        # names without the certificate factor are not trusted
        got = authz.authorize("anonymous@realm", {Factor.PASSWORD}, names, 0.0)
        assert (got.ok, got.reason) == (False, "unknown_user")


class DownStore(MemoryStore):
    def tally(self, key: str, now: float) -> tuple[int, float]:
        raise StoreUnavailable("memory: down")

    def incr(self, key: str, ttl: float, now: float) -> int:
        raise StoreUnavailable("memory: down")


def test_throttle_counts_per_nas_and_user_and_fails_closed(users: LocalDirectory) -> None:
    calls: list[str] = []

    def check(user: str, password: str, now: float, /) -> Verdict:
        calls.append(user)
        return users.check_password(user, password, now)

    throttle = PasswordThrottle(MemoryStore(), max_failures=2, max_nas_failures=3)
    authz = Authorizer(users, throttle=throttle)
    guarded = throttle.guard(check)
    other = Client.of("198.51.100.0/24", "s", "other")
    with nas_scope(GW, 0.0):
        for _ in range(2):
            verdict = guarded("alice", "bad", 0.0)
            assert authz.refused("alice", verdict.reason, 0.0) == "bad_password"
        assert guarded("alice", "pw", 1.0).reason == "throttled"
        assert len(calls) == 2  # refused unchecked
        assert authz.refused("bob", "unknown_user", 1.0) == "unknown_user"  # 3rd on GW
        assert guarded("nora", "pw", 1.0).reason == "throttled"  # GW's own limit
    with nas_scope(other, 1.0):
        assert guarded("alice", "pw", 1.0).ok
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 1.0).ok
    with nas_scope(GW, 2.0):
        assert guarded("alice", "pw", 2.0).reason == "throttled"
    with nas_scope(GW, 400.0):
        assert guarded("alice", "pw", 400.0).ok  # the window has passed
    down = PasswordThrottle(DownStore())
    assert down.guard(check)("alice", "pw", 0.0).reason == "store_unavailable"
    assert Authorizer(users, throttle=down).refused("alice", "bad_password", 0.0) == (
        "store_unavailable"
    )


def test_nt_hash_withheld_where_mschapv2_cannot_satisfy(users: LocalDirectory) -> None:
    authz = Authorizer(users, throttle=PasswordThrottle(MemoryStore(), max_failures=1))
    lookup = authz.nt_hash(users.nt_hash)
    with nas_scope(GW, 0.0):
        assert lookup("alice") is not None
        assert lookup("tom") is None  # needs possession: no Success may confirm it
        assert authz.refused("tom", "unknown_user", 0.0) == "second_factor_required"
        authz.refused("alice", "bad_password", 0.0)
        assert lookup("alice") is None
        assert authz.refused("alice", "unknown_user", 0.0) == "throttled"
    with nas_scope(Client.of("198.51.100.0/24", "s", "n", "nas"), 0.0):
        assert lookup("tom") is not None


def test_a_2fa_login_checks_the_password_once(users: LocalDirectory) -> None:
    """One reading of "password followed by code", one PBKDF2 (the old check ran two)."""
    second = SecondFactors(users, MemoryStore(), Sealer({"k": os.urandom(32)}))
    calls: list[str] = []

    def check(user: str, password: str, now: float, /) -> Verdict:
        calls.append(password)
        return users.check_password(user, password, now)

    pap = second.pap(check)
    for response in ("wrong123456", "pw000000", "pw", "wrong", "ab-12"):
        calls.clear()
        pap("tom", response, 0.0)
        assert len(calls) == 1, response
    assert pap("tom", "pw", 0.0).reason == "challenge"
    assert pap("tom", "pw123456", 0.0).reason != "challenge"  # read as password + code


class CountingStore(MemoryStore):
    """A MemoryStore that counts the writes a caller makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def delete(self, key: str) -> bool:
        self.writes += 1
        return super().delete(key)

    def incr(self, key: str, ttl: float, now: float) -> int:
        self.writes += 1
        return super().incr(key, ttl, now)


def test_a_login_without_earlier_failures_writes_nothing(users: LocalDirectory) -> None:
    """The lean path (issue 21): a durable write per successful password costs an
    fsync on SQLite; only a login that follows failures needs to clear them."""
    store = CountingStore()
    authz = Authorizer(users, throttle=PasswordThrottle(store, max_failures=3))
    with nas_scope(GW, 0.0):
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 0.0).ok
        assert store.writes == 0
        authz.refused("alice", "bad_password", 1.0)
        writes = store.writes
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 2.0).ok
        assert store.writes == writes + 1  # the failure was cleared
        assert store.tally("pwfail:gw:alice", 2.0) == (0, 0.0)
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 3.0).ok
        assert store.writes == writes + 1


class TallyCountingStore(MemoryStore):
    """A MemoryStore that counts failure-tally reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def tally(self, key: str, now: float) -> tuple[int, float]:
        self.reads += 1
        return super().tally(key, now)


def test_a_password_login_reads_its_tally_once(users: LocalDirectory) -> None:
    """The lean path (issue 21): the throttle's check before the password and the
    clearing after it share one read of the user's tally per request (3 reads became
    2: the user's and the NAS's), and a failure counted in between is not forgotten."""
    store = TallyCountingStore()
    throttle = PasswordThrottle(store, max_failures=3)
    authz = Authorizer(users, throttle=throttle)
    guarded = throttle.guard(users.check_password)
    with nas_scope(GW, 0.0):
        assert guarded("alice", "pw", 0.0).ok
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 0.0).ok
        assert store.reads == 2
    with nas_scope(GW, 1.0):  # a failure, then a right password in the same scope
        assert authz.refused("alice", "bad_password", 1.0) == "bad_password"
        assert store.tally("pwfail:gw:alice", 1.0)[0] == 1
        assert guarded("alice", "pw", 1.0).ok
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 1.0).ok
        assert store.tally("pwfail:gw:alice", 1.0) == (0, 0.0)  # cleared
    store.incr("pwfail:gw:alice", 300.0, 2.0)  # another process counts a failure
    with nas_scope(GW, 2.0):  # a new request reads it afresh
        assert authz.authorize("alice", {Factor.PASSWORD}, None, 2.0).ok
        assert store.tally("pwfail:gw:alice", 2.0) == (0, 0.0)
