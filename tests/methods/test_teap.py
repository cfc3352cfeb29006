"""TEAP (RFC 9930) server against peer in one process: every identity policy (hostapd's
eap_teap_id 0-5) x inner methods x TLS 1.2/1.3 x compatibility mode, keys equal on both
sides; and each way it must fail (wrong machine password with the right user, a missing
required identity type, a revoked machine certificate, a tampered Crypto-Binding)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eapkit.credentials import PasswordAndCode, PasswordThenCode, Verdict
from eapkit.loopback import Conversation
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    MethodContext,
    MethodFactory,
    Peer,
    Step,
)
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.teap import (
    TEAP,
    InnerMethod,
    TeapAuthenticator,
    TeapPolicy,
    teap_authenticator,
)
from eapkit.methods.teap_keys import Compat
from eapkit.methods.teap_peer import PeerInner, TeapPeer, teap_peer
from eapkit.methods.tls import client_certificate, tls_authenticator, tls_peer
from eapkit.teap_tlv import CryptoBinding, Tlv, encode_tlvs
from eapkit.testing import InMemoryPasswords, StaticNtHashes
from eapkit.tlsio import FramingConfig, TlsConfig, TlsContext, TlsRole, TlsVersion
from tests.certs import lab, peer_config, run, server_config

PASSWORDS = {"alice": "wonderland", "host/pc1.example.org": "machine-secret"}
USER, MACHINE = "alice", "host/pc1.example.org"
VERSIONS = [TlsVersion.TLS1_2, TlsVersion.TLS1_3]
COMPATS: list[Compat] = ["rfc9930", "rfc7170"]
PAIRS = [
    ("eap-mschapv2", "eap-tls"),
    ("eap-tls", "eap-mschapv2"),
    ("basic-password", "eap-tls"),
    ("eap-mschapv2", "basic-password"),
    ("basic-password", "eap-mschapv2"),
]
# which identities each policy authenticates when the peer has both (hostapd's eap_teap_id)
RUNS = {0: ["user"], 1: ["user"], 2: ["machine"], 3: ["user"], 4: ["machine"]}
RUNS[5] = ["user", "machine"]
FACTOR = {"eap-tls": Factor.CERTIFICATE, "eap-mschapv2": Factor.PASSWORD}


def server_inner(kind: str, crls: tuple[bytes, ...] = ()) -> InnerMethod:
    if kind == "eap-mschapv2":
        return InnerMethod(
            kind, (mschapv2_authenticator(StaticNtHashes.from_passwords(PASSWORDS)),)
        )
    if kind == "eap-tls":
        cfg = server_config(lab("ec"), crls=crls)
        return InnerMethod(kind, (tls_authenticator(cfg, client_certificate),))
    return InnerMethod(kind, password=InMemoryPasswords(PASSWORDS))


def peer_inner(
    kind: str, who: str, password: str | None = None, revoked: bool = False
) -> PeerInner:
    lb = lab("ec")
    secret = password if password is not None else PASSWORDS[who]
    if kind == "eap-mschapv2":
        return PeerInner(who, kind, (mschapv2_peer(secret),))
    if kind == "eap-tls":
        client = lb.revoked_client if revoked else lb.client
        return PeerInner(who, kind, (tls_peer(peer_config(lb, client, resumption=False)),))
    return PeerInner(who, kind, password=secret)


def outer_tls(version: TlsVersion, role: TlsRole) -> TlsConfig:
    lb = lab("ec")
    if role is TlsRole.SERVER:
        return server_config(lb, verify_peer=False, max_version=version)
    return replace(peer_config(lb), certificate=None, private_key=None, max_version=version)


def converse_teap(
    policy: TeapPolicy,
    user: PeerInner | None,
    machine: PeerInner | None,
    version: TlsVersion = TlsVersion.TLS1_3,
    compat: Compat | None = None,
    peer_factory: MethodFactory[Peer] | None = None,
) -> Conversation:
    auth = teap_authenticator(outer_tls(version, TlsRole.SERVER), policy)
    peer = peer_factory or teap_peer(
        outer_tls(version, TlsRole.PEER), user, machine, compat=compat or policy.compat
    )
    return run(auth, peer, identity="anonymous")


@pytest.mark.parametrize("compat", COMPATS)
@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}+{p[1]}")
@pytest.mark.parametrize("identity", range(6))
def test_every_policy_inner_method_and_version(
    identity: int, pair: tuple[str, str], version: TlsVersion, compat: Compat
) -> None:
    user_kind, machine_kind = pair
    policy = TeapPolicy(
        server_inner(user_kind), server_inner(machine_kind), identity=identity, compat=compat
    )
    conv = converse_teap(
        policy, peer_inner(user_kind, USER), peer_inner(machine_kind, MACHINE), version
    )
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success, (a.reason, a.detail)
    assert p.success, (p.reason, p.detail)
    assert a.method == TEAP
    assert a.keys is not None and a.keys == p.keys  # MSK, EMSK and Session-Id
    assert a.keys.session_id[0] == 55
    # difference 5: Session-Id = 0x37 | tls-unique, or under TLS 1.3 in rfc9930 mode
    # 0x37 | the RFC 9427 Method-Id (64 octets); a TLS 1.3 Finished here is 32 octets
    tls13 = version is TlsVersion.TLS1_3
    assert len(a.keys.session_id) == (65 if tls13 and compat == "rfc9930" else 33 if tls13 else 13)
    outcome = a.outcome
    assert outcome is not None
    ran = RUNS[identity]
    assert [proof.identity_type for proof in outcome.inner] == ran
    assert all(proof.success for proof in outcome.inner)
    kinds = {"user": user_kind, "machine": machine_kind}
    for proof in outcome.inner:
        kind = kinds[proof.identity_type]
        assert proof.method == kind
        if kind == "eap-tls":
            want = (
                Factor.MACHINE_CERTIFICATE
                if proof.identity_type == "machine"
                else Factor.CERTIFICATE
            )
            assert proof.factors == {want}
        else:
            assert Factor.PASSWORD in proof.factors
    assert outcome.factors == frozenset().union(*(p.factors for p in outcome.inner))
    assert outcome.identity == (USER if "user" in ran else MACHINE)
    assert [(x.identity_type, x.method) for x in p.outcome.inner] == [  # type: ignore[union-attr]
        (x.identity_type, x.method) for x in outcome.inner
    ]


def test_compat_modes_give_different_keys_with_inner_mschapv2() -> None:
    """RFC 9930 swaps the inner MS-CHAPv2 MSK halves (EAP-FAST-MSCHAPv2); a peer in the
    other mode fails the Crypto-Binding, and each side says so."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), compat="rfc9930")
    conv = converse_teap(policy, peer_inner("eap-mschapv2", USER), None, compat="rfc7170")
    assert conv.peer is not None and conv.authenticator is not None
    assert conv.peer.reason == "crypto_binding_failed"
    assert not conv.authenticator.success
    assert conv.authenticator.reason == "crypto_binding_failed"


def test_wrong_machine_password_with_right_user_is_rejected() -> None:
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-mschapv2"), identity=5)
    conv = converse_teap(
        policy,
        peer_inner("eap-mschapv2", USER),
        peer_inner("eap-mschapv2", MACHINE, password="wrong"),
    )
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert not a.success and not p.success
    assert a.reason == "bad_password"
    assert a.outcome is not None
    assert [(x.identity_type, x.success) for x in a.outcome.inner] == [
        ("user", True),
        ("machine", False),
    ]
    assert a.outcome.factors == frozenset()
    assert p.reason == "inner_method_failed"


def test_revoked_machine_certificate_is_rejected() -> None:
    lb = lab("ec")
    policy = TeapPolicy(
        server_inner("eap-mschapv2"), server_inner("eap-tls", (lb.crl_pem,)), identity=2
    )
    conv = converse_teap(
        policy, peer_inner("eap-mschapv2", USER), peer_inner("eap-tls", MACHINE, revoked=True)
    )
    a = conv.authenticator
    assert a is not None and not a.success
    assert a.reason == "certificate_revoked"
    assert a.outcome is not None
    assert [(x.identity_type, x.success) for x in a.outcome.inner] == [("machine", False)]


@pytest.mark.parametrize("identity", [2, 5])
def test_missing_required_machine_is_rejected(identity: int) -> None:
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-tls"), identity=identity)
    conv = converse_teap(policy, peer_inner("eap-mschapv2", USER), None)
    a = conv.authenticator
    assert a is not None and not a.success
    assert a.reason == "identity_type_missing"
    assert conv.peer is not None and not conv.peer.success


@pytest.mark.parametrize("kind", ["eap-tls", "basic-password"])
def test_policy_4_accepts_the_user(kind: str) -> None:
    """eap_teap_id=4 asks for the machine; a peer without one answers as the user."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner(kind), identity=4)
    conv = converse_teap(policy, peer_inner("eap-mschapv2", USER), None)
    a = conv.authenticator
    assert a is not None
    assert a.success, (a.reason, a.detail)
    assert a.outcome is not None
    assert [(x.identity_type, x.method, x.success) for x in a.outcome.inner] == [
        ("user", "eap-mschapv2", True)
    ]
    assert a.outcome.factors == {Factor.PASSWORD}
    assert conv.peer is not None and conv.peer.keys == a.keys


def test_policy_3_accepts_the_machine() -> None:
    """eap_teap_id=3 asks for the user; a machine-only peer gets the machine's method."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-tls"), identity=3)
    conv = converse_teap(policy, None, peer_inner("eap-tls", MACHINE))
    a = conv.authenticator
    assert a is not None
    assert a.success, (a.reason, a.detail)
    assert a.identity == "anonymous" and a.user == MACHINE
    assert a.outcome is not None and a.outcome.factors == {Factor.MACHINE_CERTIFICATE}


def test_wrong_basic_password_is_rejected() -> None:
    policy = TeapPolicy(server_inner("basic-password"), identity=1)
    conv = converse_teap(policy, peer_inner("basic-password", USER, password="nope"), None)
    a = conv.authenticator
    assert a is not None and not a.success
    assert a.reason == "bad_password"


class _TamperingPeer(TeapPeer):
    """Flips one bit of the MSK Compound MAC it sends."""

    def _bind(self, request: CryptoBinding) -> CryptoBinding | str:
        response = super()._bind(request)
        if isinstance(response, str):
            return response
        mac = bytes([response.msk_mac[0] ^ 1]) + response.msk_mac[1:]
        return replace(response, msk_mac=mac)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_tampered_crypto_binding_is_rejected(version: TlsVersion) -> None:
    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    context = TlsContext(outer_tls(version, TlsRole.PEER), TlsRole.PEER)
    user = peer_inner("eap-mschapv2", USER)

    def create(ctx: MethodContext) -> Peer:
        return _TamperingPeer(ctx, context, user)

    conv = converse_teap(policy, None, None, version, peer_factory=MethodFactory(TEAP, create))
    a = conv.authenticator
    assert a is not None and not a.success
    assert a.reason == "crypto_binding_failed"
    assert a.keys is None


@dataclass
class _Expect:
    identity: int
    user: bool
    machine: bool
    ok: bool


@pytest.mark.parametrize(
    "case",
    [
        _Expect(1, False, True, False),  # user required, the peer has only a machine
        _Expect(0, False, True, True),  # anyone
        _Expect(5, False, True, False),  # both required
        _Expect(5, True, False, False),
        _Expect(2, True, False, False),
        _Expect(4, False, False, False),  # an unknown machine
    ],
    ids=str,
)
def test_which_identities_suffice(case: _Expect) -> None:
    policy = TeapPolicy(
        server_inner("eap-mschapv2"), server_inner("eap-tls"), identity=case.identity
    )
    user = peer_inner("eap-mschapv2", USER) if case.user else None
    machine = peer_inner("eap-tls", MACHINE) if case.machine else None
    if user is None and machine is None:
        machine = peer_inner("eap-mschapv2", "nobody", password="x")  # unknown machine
    conv = converse_teap(policy, user, machine)
    a = conv.authenticator
    assert a is not None
    assert a.success is case.ok, (a.reason, a.detail)


# -- garbage at every state (hypothesis) ---------------------------------------------------------

_tlvs = st.builds(
    Tlv,
    st.one_of(st.integers(1, 19), st.integers(0, 0x3FFF)),
    st.binary(max_size=80),
    st.booleans(),
)
garbage = st.one_of(st.binary(max_size=120), st.lists(_tlvs, max_size=5).map(encode_tlvs))


class _GarblingPeer(TeapPeer):
    """Sends ``garbage`` instead of its ``at``-th message inside the tunnel."""

    at = 0
    garbage = b""
    written = 0
    swapped = False

    def _write_failed(self, data: bytes) -> Done | None:
        if self.written == self.at:
            data, self.swapped = self.garbage, True
        self.written += 1
        return super()._write_failed(data)


class _GarblingServer(TeapAuthenticator):
    at = 0
    garbage = b""
    written = 0
    swapped = False

    def _write(self, data: bytes) -> Step:
        if self.written == self.at:
            data, self.swapped = self.garbage, True
        self.written += 1
        return super()._write(data)


@dataclass(frozen=True)
class _Setup:
    """One server policy (eap_teap_id 5: the user, then the machine) and outer TLS
    version for the garbage test; the inner methods decide which states there are."""

    version: TlsVersion
    user: str
    machine: str

    def __str__(self) -> str:
        return f"tls{self.version.name[-3:].replace('_', '')}-{self.user}+{self.machine}"


GARBAGE_SETUPS = [
    _Setup(version, "eap-mschapv2", machine)
    for version in VERSIONS
    for machine in ("basic-password", "eap-tls")  # inner EAP-TLS: its handshake's states
] + [_Setup(TlsVersion.TLS1_2, "eap-tls", "eap-mschapv2")]


def _garbled(setup: _Setup, side: str, at: int, junk: bytes) -> tuple[Conversation, bool, int]:
    """The conversation of ``setup`` with ``side``'s ``at``-th tunnel message replaced
    by ``junk`` (at -1: none), whether a message was replaced, and how many ``side``
    wrote."""
    policy = TeapPolicy(server_inner(setup.user), server_inner(setup.machine), identity=5)
    server_ctx = TlsContext(outer_tls(setup.version, TlsRole.SERVER), TlsRole.SERVER)
    peer_ctx = TlsContext(outer_tls(setup.version, TlsRole.PEER), TlsRole.PEER)
    user, machine = peer_inner(setup.user, USER), peer_inner(setup.machine, MACHINE)

    def make_server(ctx: MethodContext) -> Authenticator:
        server = (_GarblingServer if side == "server" else TeapAuthenticator)(
            ctx, server_ctx, policy
        )
        if isinstance(server, _GarblingServer):
            server.at, server.garbage = at, junk
            made.append(server)
        return server

    def make_peer(ctx: MethodContext) -> Peer:
        peer = (_GarblingPeer if side == "peer" else TeapPeer)(ctx, peer_ctx, user, machine)
        if isinstance(peer, _GarblingPeer):
            peer.at, peer.garbage = at, junk
            made.append(peer)
        return peer

    made: list[_GarblingPeer | _GarblingServer] = []
    conv = run(MethodFactory(TEAP, make_server), MethodFactory(TEAP, make_peer), "anonymous")
    return conv, any(m.swapped for m in made), sum(m.written for m in made)


_MESSAGES: dict[tuple[_Setup, str], int] = {}


def _messages(setup: _Setup, side: str) -> int:
    """How many tunnel messages ``side`` writes in ``setup``'s conversation left alone
    (which must succeed): the states garbage can replace."""
    if (setup, side) not in _MESSAGES:
        conv, _, written = _garbled(setup, side, -1, b"")
        assert conv.authenticator is not None and conv.authenticator.success, setup
        _MESSAGES[(setup, side)] = written
    return _MESSAGES[(setup, side)]


# short by default (a few seconds); EAPKIT_TEAP_GARBAGE=800 for a long run
GARBAGE_EXAMPLES = int(os.environ.get("EAPKIT_TEAP_GARBAGE", "60"))


@pytest.mark.parametrize("setup", GARBAGE_SETUPS, ids=str)
@settings(
    max_examples=GARBAGE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(side=st.sampled_from(["peer", "server"]), junk=garbage, data=st.data())
def test_garbage_at_every_state_ends_in_a_clean_failure(
    setup: _Setup, side: str, junk: bytes, data: st.DataObject
) -> None:
    """Random bytes or random TLVs in place of either side's k-th message in the tunnel,
    k drawn from every message that side writes (TLS 1.2 and 1.3; inner MS-CHAPv2,
    Basic-Password-Auth and EAP-TLS): the server never succeeds and nothing raises; the
    conversation ends."""
    at = data.draw(st.integers(0, _messages(setup, side) - 1), label="at")
    conv, swapped, _ = _garbled(setup, side, at, junk)
    assert swapped
    a = conv.authenticator
    if a is None:  # the peer gave up first; its own result says so
        assert conv.peer is None or not conv.peer.success
        return
    assert not a.success
    assert a.reason and a.keys is None


# -- Basic-Password-Auth with a one-time code ----------------------------------------------------


class _Codes:
    """A one-time code check that proves possession of the device."""

    def __call__(self, user: str, code: str, now: float, /) -> Verdict:
        if code != "123456":
            return Verdict.reject("bad_code")
        return Verdict(True, "ok", user, factors=frozenset({"otp_device"}))


@pytest.mark.parametrize(("code", "reason"), [("123456", "ok"), ("000000", "bad_code")])
def test_basic_password_then_code_in_a_second_round(code: str, reason: str) -> None:
    """A CHALLENGE verdict asks again (Basic-Password-Auth-Req with the prompt); the
    peer answers the second prompt with its one-time code."""
    check = PasswordThenCode(InMemoryPasswords(PASSWORDS), _Codes(), lambda u: True)
    policy = TeapPolicy(InnerMethod("basic-password", password=check, code=check.second))
    conv = converse_teap(
        policy, PeerInner(USER, "basic-password", password="wonderland", otp=code), None
    )
    a = conv.authenticator
    assert a is not None
    assert a.reason == reason
    if reason == "ok":
        assert a.outcome is not None
        assert a.outcome.factors == {Factor.PASSWORD, Factor.OTP_DEVICE}
        assert a.outcome.inner[0].factors == {Factor.PASSWORD, Factor.OTP_DEVICE}
        assert conv.peer is not None and conv.peer.keys == a.keys


def test_basic_password_and_code_in_one_answer() -> None:
    check = PasswordAndCode(InMemoryPasswords(PASSWORDS), _Codes(), lambda u: 6)
    policy = TeapPolicy(InnerMethod("basic-password", password=check))
    conv = converse_teap(
        policy, PeerInner(USER, "basic-password", password="wonderland123456"), None
    )
    a = conv.authenticator
    assert a is not None
    assert a.success, (a.reason, a.detail)
    assert a.outcome is not None and a.outcome.factors == {Factor.PASSWORD, Factor.OTP_DEVICE}


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_small_fragments_both_tunnels(version: TlsVersion) -> None:
    """TEAP fragmented at 120 octets (RFC 9930 uses EAP-TLS's framing): the inner
    EAP-TLS messages, whole in their EAP-Payload TLVs, span many outer fragments."""
    framing = FramingConfig(fragment_size=120)
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-tls"), identity=5)
    auth = teap_authenticator(replace(outer_tls(version, TlsRole.SERVER), framing=framing), policy)
    peer = teap_peer(
        replace(outer_tls(version, TlsRole.PEER), framing=framing),
        peer_inner("eap-mschapv2", USER),
        peer_inner("eap-tls", MACHINE),
    )
    conv = run(auth, peer, identity="anonymous")
    a = conv.authenticator
    assert a is not None
    assert a.success, (a.reason, a.detail)
    assert conv.peer is not None and conv.peer.keys == a.keys
    assert max(len(packet) for _, packet in conv.transcript) <= 120 + 20


class _NoEmsk:
    """An inner peer method that exports no EMSK (Windows' inner EAP-TLS, per the
    rfc7170bis interop notes and FreeRADIUS PR #5861)."""

    def __init__(self, inner: Peer) -> None:
        self.inner = inner
        self.method = inner.method

    def receive(self, type_data: bytes) -> Step:
        step = self.inner.receive(type_data)
        if isinstance(step, Done) and step.outcome.keys is not None:
            keys = replace(step.outcome.keys, emsk=b"")
            return replace(step, outcome=replace(step.outcome, keys=keys))
        return step


@pytest.mark.parametrize("compat", COMPATS)
def test_a_peer_without_inner_emsk_binds_with_the_msk(compat: Compat) -> None:
    """The server sends both Compound MACs; a peer without the inner EMSK checks and
    answers the MSK one only, and both sides take the keys from the MSK chain."""
    policy = TeapPolicy(
        server_inner("eap-mschapv2"), server_inner("eap-tls"), identity=2, compat=compat
    )
    factory = tls_peer(peer_config(lab("ec"), resumption=False))
    no_emsk = MethodFactory(factory.method, lambda ctx: _NoEmsk(factory.create(ctx)), "tls")
    conv = converse_teap(policy, None, PeerInner(MACHINE, "eap-tls", (no_emsk,)), compat=compat)
    a = conv.authenticator
    assert a is not None
    assert a.success, (a.reason, a.detail)
    assert conv.peer is not None and conv.peer.keys == a.keys
    assert a.outcome is not None and a.outcome.attributes["crypto_binding"] == "msk"


@pytest.mark.parametrize(
    ("server_kind", "peer_kind"),
    [("basic-password", "eap-mschapv2"), ("eap-tls", "basic-password")],
)
def test_an_inner_method_the_peer_cannot_run_is_declined(server_kind: str, peer_kind: str) -> None:
    policy = TeapPolicy(server_inner(server_kind), identity=1)
    conv = converse_teap(policy, peer_inner(peer_kind, USER), None)
    a = conv.authenticator
    assert a is not None and not a.success
    assert a.reason == "inner_method_declined"
