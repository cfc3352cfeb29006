"""TEAP's chaining policy (eapkit.authz ChainingPolicy, issue 19) with hand-made inner
proofs: required identity types (eap_teap_id 0-5), the factors each identity proved
against ``[[teap.rules]]``, machine accounts in the directory, ``[[teap.bindings]]``,
and the decision log line of a TEAP login through the RADIUS layer."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.authz import (
    TEAP_IDENTITIES,
    Authorizer,
    CertificateIdentity,
    ChainingPolicy,
    ChainingRule,
    MachineBinding,
)
from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import (
    CertificateNames,
    Done,
    Factor,
    InnerProof,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Step,
)
from eapkit.packet import MethodId
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.session import PeerSession
from tests.radius.test_server import running

NOW = 1_000.0
MC = Factor.MACHINE_CERTIFICATE
PW, OTP, UC = Factor.PASSWORD, Factor.OTP_DEVICE, Factor.CERTIFICATE
LAPTOP = CertificateNames(("alice-laptop",), dns_names=("alice-laptop.corp.example",))


def machine_cert(names: CertificateNames = LAPTOP, success: bool = True) -> InnerProof:
    return InnerProof(
        "machine", "host/whatever-the-peer-said", "eap-tls", success, frozenset({MC}), names
    )


def machine_password(identity: str = "host/kiosk", success: bool = True) -> InnerProof:
    return InnerProof("machine", identity, "eap-mschapv2", success, frozenset({PW}))


def user(name: str = "alice", *factors: Factor, success: bool = True) -> InnerProof:
    return InnerProof("user", name, "eap-mschapv2", success, frozenset(factors or {PW}))


def user_cert(names: CertificateNames) -> InnerProof:
    return InnerProof("user", "anonymous", "eap-tls", True, frozenset({UC}), names)


@pytest.fixture
def users(tmp_path: Path) -> LocalDirectory:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "pw", iterations=1000)
    users.add("bob", "pw", iterations=1000)
    users.add("tom", "pw", second_factor="totp", iterations=1000)
    users.add("host/alice-laptop.corp.example", "machine-pw", iterations=1000)
    users.add("host/kiosk", "machine-pw", iterations=1000)
    users.add("host/stolen", "machine-pw", iterations=1000)
    users.set_disabled("host/stolen", True)
    return users


def authorizer(users: LocalDirectory, **policy: object) -> Authorizer:
    return Authorizer(
        users,
        CertificateIdentity(realms=frozenset({"corp.example"})),
        chaining=ChainingPolicy(**policy),  # type: ignore[arg-type]
    )


def decide(auth: Authorizer, *inner: InnerProof) -> tuple[bool, str, str, str]:
    verdict = auth.authorize("outer", frozenset({PW}), None, NOW, inner=inner)
    return verdict.ok, verdict.reason, verdict.user, verdict.machine


# -- identity types (eap_teap_id) ------------------------------------------------------


def test_identity_names_map_to_hostapd_eap_teap_id() -> None:
    """hostapd 2.10 src/eap_server/eap.h EAP_TEAP_ID_*, the numbers its config takes."""
    assert TEAP_IDENTITIES == {
        "any": 0,
        "user": 1,
        "machine": 2,
        "user_or_machine": 3,
        "machine_or_user": 4,
        "machine_and_user": 5,
    }


@pytest.mark.parametrize(
    ("identity", "proofs", "reason"),
    [
        (0, ("user",), "ok"),
        (0, ("machine",), "ok"),
        (0, (), "identity_missing"),
        (1, ("user",), "ok"),
        (1, ("machine",), "user_missing"),
        (2, ("user",), "machine_missing"),
        (2, ("machine",), "ok"),
        (3, ("user",), "ok"),
        (3, ("machine",), "ok"),
        (3, (), "identity_missing"),
        (4, ("user",), "ok"),
        (4, ("machine",), "ok"),
        (4, (), "identity_missing"),
        (5, ("user",), "machine_missing"),
        (5, ("machine",), "user_missing"),
        (5, ("user", "machine"), "ok"),
    ],
)
def test_required_identity_types(
    users: LocalDirectory, identity: int, proofs: tuple[str, ...], reason: str
) -> None:
    made = {"machine": machine_password(), "user": user()}
    ok, why, _, _ = decide(authorizer(users, identity=identity), *(made[p] for p in proofs))
    assert (ok, why) == (reason == "ok", reason)


def test_a_machine_only_login_is_the_machine_account(users: LocalDirectory) -> None:
    assert decide(authorizer(users, identity=2), machine_password()) == (
        True,
        "ok",
        "host/kiosk",
        "host/kiosk",
    )


def test_unknown_identity_type_is_refused(users: LocalDirectory) -> None:
    odd = InnerProof("device", "x", "eap-tls", True, frozenset({MC}))
    assert decide(authorizer(users, identity=4), odd)[:2] == (False, "identity_type")


# -- a failed inner proof, machine accounts ----------------------------------------------


def test_wrong_machine_password_with_right_user_is_refused(users: LocalDirectory) -> None:
    """Even where either identity suffices (eap_teap_id 4): a failed proof is a lie."""
    auth = authorizer(users, identity=4)
    assert decide(auth, machine_password(success=False), user())[:2] == (False, "machine_failed")
    assert decide(auth, machine_password(), user(success=False))[:2] == (False, "user_failed")


def test_machine_accounts_live_in_the_directory(users: LocalDirectory) -> None:
    auth = authorizer(users, identity=5)
    assert decide(auth, machine_password("host/nobody"), user())[:2] == (False, "unknown_machine")
    assert decide(auth, machine_password("host/stolen"), user())[:2] == (
        False,
        "machine_disabled",
    )
    # a machine certificate names host/<dNSName>: the account must exist too
    assert decide(auth, machine_cert(), user()) == (
        True,
        "ok",
        "alice",
        "host/alice-laptop.corp.example",
    )
    other = CertificateNames(dns_names=("pc9.corp.example",))
    assert decide(auth, machine_cert(other), user())[:2] == (False, "unknown_machine")
    assert decide(auth, machine_cert(CertificateNames()), user())[:2] == (
        False,
        "machine_identity",
    )


def test_machine_and_user_accounts_do_not_stand_in_for_each_other(
    users: LocalDirectory,
) -> None:
    """Found by the property below: a machine password proof naming a user's account
    passed as the machine.  Machine accounts carry the prefix; users may not."""
    auth = authorizer(users, identity=4)
    assert decide(auth, machine_password("alice"), user("bob"))[:2] == (False, "machine_identity")
    assert decide(auth, machine_password(), user("host/kiosk"))[:2] == (False, "user_identity")
    assert decide(auth, user("host/kiosk"))[:2] == (False, "user_identity")
    empty = InnerProof("machine", "host/kiosk", "eap-tls", True, frozenset())
    assert decide(auth, empty, user())[:2] == (False, "no_factor")
    with pytest.raises(ConfigError):
        ChainingPolicy(machine_prefix="")


def test_the_user_is_still_checked(users: LocalDirectory) -> None:
    auth = authorizer(users, identity=5)
    assert decide(auth, machine_cert(), user("mallory"))[:2] == (False, "unknown_user")
    users.set_disabled("alice", True)
    assert decide(auth, machine_cert(), user("alice"))[:2] == (False, "user_disabled")


def test_directory_failure_fails_closed(users: LocalDirectory) -> None:
    class Broken(LocalDirectory):
        def get(self, name: str) -> None:
            raise OSError("down")

    auth = Authorizer(Broken(users.path), chaining=ChainingPolicy(identity=5))
    assert decide(auth, machine_cert(), user())[:2] == (False, "directory_unavailable")


# -- rules: the factors each identity proved ---------------------------------------------

CERT_PASSWORD_OTP = ChainingRule(frozenset({MC}), frozenset({PW, OTP}))
TWO_CERTIFICATES = ChainingRule(frozenset({MC}), frozenset({UC}))


def test_machine_certificate_plus_user_password_plus_otp(users: LocalDirectory) -> None:
    auth = authorizer(users, identity=5, rules=(CERT_PASSWORD_OTP,))
    assert decide(auth, machine_cert(), user("tom", PW, OTP))[:3] == (True, "ok", "tom")
    assert decide(auth, machine_cert(), user("alice", PW))[:2] == (False, "teap_rule")
    # a machine password in place of the certificate does not meet the rule
    assert decide(auth, machine_password(), user("tom", PW, OTP))[:2] == (False, "teap_rule")


def test_user_certificate_plus_machine_certificate(users: LocalDirectory) -> None:
    auth = authorizer(users, identity=5, rules=(CERT_PASSWORD_OTP, TWO_CERTIFICATES))
    alice = CertificateNames(("Alice",), ("alice@corp.example",))
    # the user is named by the certificate ([tls] identity, realms), not the inner identity
    assert decide(auth, machine_cert(), user_cert(alice)) == (
        True,
        "ok",
        "alice",
        "host/alice-laptop.corp.example",
    )
    assert decide(auth, machine_password(), user_cert(alice))[:2] == (False, "teap_rule")


def test_possession_by_machine_certificate_needs_certificate_is_possession(
    users: LocalDirectory,
) -> None:
    """tom has a second factor: a password with a machine certificate is not enough,
    unless the machine keys are declared hardware-bound."""
    auth = authorizer(users, identity=5)
    assert decide(auth, machine_cert(), user("tom", PW))[:2] == (False, "second_factor_required")
    auth.certificate_is_possession = True
    assert decide(auth, machine_cert(), user("tom", PW))[:2] == (True, "ok")
    # a machine password is no possession
    assert decide(auth, machine_password(), user("tom", PW))[:2] == (
        False,
        "second_factor_required",
    )


# -- bindings: which machines a user may log in from ---------------------------------------


def test_bindings(users: LocalDirectory) -> None:
    alice_laptop = MachineBinding(("alice",), ("host/alice-*",))
    auth = authorizer(users, identity=4, bindings=(alice_laptop,))
    assert decide(auth, machine_cert(), user("alice"))[:2] == (True, "ok")
    assert decide(auth, machine_password("host/kiosk"), user("alice"))[:2] == (
        False,
        "machine_binding",
    )
    # a bound user with no machine at all (either identity suffices) is refused
    assert decide(auth, user("alice"))[:2] == (False, "machine_binding")
    # users no binding names are free, unless unbound_users = "deny"
    assert decide(auth, machine_password("host/kiosk"), user("bob"))[:2] == (True, "ok")
    strict = authorizer(users, identity=4, bindings=(alice_laptop,), unbound_users="deny")
    assert decide(strict, machine_password("host/kiosk"), user("bob"))[:2] == (
        False,
        "machine_binding",
    )


def test_not_a_chaining_tunnel_is_unchanged(users: LocalDirectory) -> None:
    auth = authorizer(users, identity=5)
    assert auth.authorize("alice", frozenset({PW}), None, NOW).ok


# -- the property: whatever the proofs, an Accept means the policy held ---------------------

proofs = st.lists(
    st.builds(
        InnerProof,
        identity_type=st.sampled_from(["machine", "user"]),
        identity=st.sampled_from(["alice", "bob", "tom", "host/kiosk", "host/stolen", "x"]),
        method=st.sampled_from(["eap-tls", "eap-mschapv2", "basic-password"]),
        success=st.booleans(),
        factors=st.frozensets(st.sampled_from(list(Factor)), max_size=3),
    ),
    max_size=3,
)
rules = st.lists(
    st.builds(
        ChainingRule,
        st.frozensets(st.sampled_from([MC, PW]), max_size=2),
        st.frozensets(st.sampled_from([PW, OTP, UC]), max_size=2),
    ),
    max_size=2,
)


@settings(max_examples=150, deadline=None)
@given(inner=proofs, identity=st.integers(0, 5), rule_list=rules, bind=st.booleans())
def test_an_accept_means_every_requirement_held(
    tmp_path_factory: pytest.TempPathFactory,
    inner: list[InnerProof],
    identity: int,
    rule_list: list[ChainingRule],
    bind: bool,
) -> None:
    users = _shared_users(tmp_path_factory)
    bindings = (MachineBinding(("alice",), ("host/kiosk",)),) if bind else ()
    auth = authorizer(users, identity=identity, rules=tuple(rule_list), bindings=bindings)
    verdict = auth.authorize("outer", frozenset(), None, NOW, inner=inner)
    if not verdict.ok:
        return
    assert all(p.success for p in inner)
    kinds = {p.identity_type: p for p in inner}
    assert set(ChainingPolicy(identity=identity).required()) <= set(kinds)
    if rule_list:
        assert any(
            r.met(
                kinds["machine"].factors if "machine" in kinds else None,
                kinds["user"].factors if "user" in kinds else None,
            )
            for r in rule_list
        )
    if "machine" in kinds:
        assert verdict.machine in {"host/kiosk"}  # the one enabled machine account
    if "user" in kinds:
        assert not verdict.user.startswith("host/")
    if bind and "user" in kinds and verdict.user == "alice":
        assert verdict.machine == "host/kiosk"


_USERS: dict[str, LocalDirectory] = {}


def _shared_users(factory: pytest.TempPathFactory) -> LocalDirectory:
    if "d" not in _USERS:
        users = LocalDirectory(factory.mktemp("teap") / "u.db")
        for name in ("alice", "bob", "host/kiosk", "host/stolen"):
            users.add(name, "pw", iterations=1000)
        users.add("tom", "pw", second_factor="totp", iterations=1000)
        users.set_disabled("host/stolen", True)
        _USERS["d"] = users
    return _USERS["d"]


# -- through the RADIUS layer: the decision log names both identities ------------------------

TEAP = MethodId(0, 55)
SECRET = b"teap-policy-secret"
KEYS = KeyMaterial(os.urandom(64), os.urandom(64), b"\x37" + os.urandom(64))


class _Chained:
    """A stand-in TEAP authenticator: one round, then the outcome it was given."""

    method = TEAP

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def start(self) -> bytes:
        return b"\x01"

    def receive(self, type_data: bytes) -> Step:
        return Done(self.outcome)


class _Answer:
    method = TEAP

    def receive(self, type_data: bytes) -> Step:
        return Done(Outcome.ok(KEYS), type_data=b"\x01")


def _login(users: LocalDirectory, policy: ChainingPolicy, outcome: Outcome) -> tuple[bool, dict]:  # type: ignore[type-arg]
    log = io.StringIO()
    auth = Authorizer(users, chaining=policy)
    eap = EapAccess([MethodFactory(TEAP, lambda ctx: _Chained(outcome), "teap")], authorizer=auth)
    core = RadiusCore(
        ClientTable([Client.of("127.0.0.0/8", SECRET, "gw")]), eap, decisions=DecisionLog(log)
    )

    def peer(ctx: MethodContext) -> _Answer:
        return _Answer()

    async def run() -> bool:
        async with RadiusClient(addr, SECRET, timeout=1.0, retries=1) as client:
            session = PeerSession([MethodFactory(TEAP, peer, "teap")], "anonymous")
            return (await authenticate(client, session)).accepted

    with running(core) as addr:
        accepted = asyncio.run(run())
    return accepted, json.loads(log.getvalue().splitlines()[-1])


def test_decision_log_records_both_identities_and_what_each_proved(
    users: LocalDirectory,
) -> None:
    inner = (machine_cert(), user("tom", PW, OTP))
    outcome = Outcome(True, "ok", KEYS, "tom", factors=frozenset({MC, PW, OTP}), inner=inner)
    accepted, line = _login(users, ChainingPolicy(identity=5, rules=(CERT_PASSWORD_OTP,)), outcome)
    assert accepted and line["result"] == "accept" and line["user"] == "tom"
    assert line["machine"] == "host/alice-laptop.corp.example"
    assert line["inner"] == [
        {
            "type": "machine",
            "identity": "host/whatever-the-peer-said",
            "method": "eap-tls",
            "success": True,
            "factors": ["machine_certificate"],
        },
        {
            "type": "user",
            "identity": "tom",
            "method": "eap-mschapv2",
            "success": True,
            "factors": ["otp_device", "password"],
        },
    ]


def test_a_teap_success_the_policy_refuses_is_a_reject_with_its_reason(
    users: LocalDirectory,
) -> None:
    inner = (user("alice"),)  # no machine, machine required
    outcome = Outcome(True, "ok", KEYS, "alice", factors=frozenset({PW}), inner=inner)
    accepted, line = _login(users, ChainingPolicy(identity=5), outcome)
    assert not accepted
    assert (line["result"], line["reason"]) == ("reject", "machine_missing")
    assert line["inner"][0]["identity"] == "alice" and line["session_id"] == ""


def test_teap_without_inner_proofs_is_not_authorized_as_a_plain_login(
    users: LocalDirectory,
) -> None:
    """A TEAP outcome with no inner proof (a method bug) fails the required types."""
    outcome = Outcome(True, "ok", KEYS, "alice", factors=frozenset({PW}))
    accepted, line = _login(users, ChainingPolicy(identity=0), outcome)
    assert not accepted and line["reason"] == "identity_missing"
