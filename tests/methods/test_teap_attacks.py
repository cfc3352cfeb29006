"""Attacks on TEAP's chaining (RFC 9930 §3.6, §3.9, §4.2.13, §6.3), the server role: a
hostile peer against :class:`TeapAuthenticator` (the peer role against a hostile server
is in ``test_teap_attacks_peer.py``).  Every test states what must not happen; the ones
marked "finding" failed on the code before the fix that names them (issue 19's attack
pass); the others pin attacks that already failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from eapkit.loopback import Conversation
from eapkit.methods.base import (
    Authenticator,
    Factor,
    MethodContext,
    MethodFactory,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.teap import TEAP, TeapAuthenticator, TeapPolicy, teap_authenticator
from eapkit.methods.teap_peer import PeerInner, TeapPeer, teap_peer
from eapkit.methods.tls import tls_peer
from eapkit.teap_tlv import (
    CryptoBinding,
    ErrorCode,
    Status,
    Tlv,
    TlvType,
    decode_tlvs,
    encode_tlvs,
    with_outer,
)
from eapkit.tlsio import SessionCache, TlsContext, TlsRole, TlsVersion
from tests.certs import lab, peer_config, run
from tests.methods.test_teap import MACHINE, USER, outer_tls, peer_inner, server_inner

Rewrite = Callable[[int, list[Tlv]], list[Tlv]]


class _HostilePeer(TeapPeer):
    """A peer whose ``n``-th message inside the tunnel is rewritten by ``rewrite``."""

    rewrite: Rewrite = staticmethod(lambda n, tlvs: tlvs)
    written = 0

    def _write_failed(self, data: bytes) -> object:  # type: ignore[override]
        tlvs = self.rewrite(self.written, list(decode_tlvs(data)))
        self.written += 1
        return super()._write_failed(encode_tlvs(tlvs))


def _against_server(
    policy: TeapPolicy,
    user: PeerInner | None,
    machine: PeerInner | None,
    rewrite: Rewrite | None = None,
    peer_class: type[TeapPeer] = _HostilePeer,
    version: TlsVersion = TlsVersion.TLS1_3,
) -> Conversation:
    server_ctx = TlsContext(outer_tls(version, TlsRole.SERVER), TlsRole.SERVER)
    peer_ctx = TlsContext(outer_tls(version, TlsRole.PEER), TlsRole.PEER)

    def make_server(ctx: MethodContext) -> Authenticator:
        return TeapAuthenticator(ctx, server_ctx, policy)

    def make_peer(ctx: MethodContext) -> Peer:
        peer = peer_class(ctx, peer_ctx, user, machine)
        if rewrite is not None and isinstance(peer, _HostilePeer):
            peer.rewrite = rewrite
        return peer

    return run(MethodFactory(TEAP, make_server), MethodFactory(TEAP, make_peer), "anonymous")


def _rejected(conv: Conversation, reason: str | None = None) -> None:
    a = conv.authenticator
    assert a is not None and not a.success, a and (a.reason, a.detail)
    assert a.keys is None
    assert a.outcome is not None and a.outcome.factors == frozenset()
    if reason is not None:
        assert a.reason == reason, (a.reason, a.detail)


def _kinds(tlvs: list[Tlv]) -> set[int]:
    return {t.type for t in tlvs}


# -- skipping inner authentication ---------------------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        [Tlv.status(TlvType.RESULT, Status.SUCCESS)],
        [Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS)],
        [
            Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS),
            Tlv.status(TlvType.RESULT, Status.SUCCESS),
            CryptoBinding(1, 1, CryptoBinding.MSK, CryptoBinding.RESPONSE, bytes(31) + b"\1").tlv(),
        ],
    ],
    ids=["result", "intermediate-result", "with-crypto-binding"],
)
def test_success_claimed_before_any_inner_method(forged: list[Tlv]) -> None:
    """The peer's first tunnel message claims success instead of answering the inner
    method: no success, no keys."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    conv = _against_server(
        policy, peer_inner("eap-mschapv2", USER), None, lambda n, t: forged if n == 0 else t
    )
    _rejected(conv)


def test_result_success_after_a_failed_inner_method() -> None:
    """A wrong password, then the peer answers the server's Result=Failure with
    Result=Success: still a failure, with the inner method's reason."""
    policy = TeapPolicy(server_inner("basic-password"), identity=1)

    def flip(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        return [
            Tlv.status(TlvType.RESULT, Status.SUCCESS) if t.type == TlvType.RESULT else t
            for t in tlvs
        ]

    conv = _against_server(policy, peer_inner("basic-password", USER, password="x"), None, flip)
    _rejected(conv, "bad_password")


def test_basic_password_answer_where_eap_tls_was_asked() -> None:
    """The policy asks the machine for EAP-TLS; a Basic-Password-Auth-Resp with a valid
    password does not stand in for it."""
    policy = TeapPolicy(server_inner("basic-password"), server_inner("eap-tls"), identity=2)
    machine = peer_inner("basic-password", USER)

    def password(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        if TlvType.NAK in _kinds(tlvs):  # answer the EAP-Payload with a password instead
            from eapkit.teap_tlv import BasicPasswordResponse

            return [BasicPasswordResponse(USER.encode(), b"wonderland").tlv()]
        return tlvs

    conv = _against_server(policy, None, machine, password)
    _rejected(conv)


# -- Identity-Type: what the server asked for, not what the peer claims -----------------------


def test_machine_claim_without_a_machine_method_is_recorded_as_the_user() -> None:
    """Finding: with eap_teap_id=0 and no machine method, a peer answering
    Identity-Type=machine ran the *user's* EAP-TLS and got MACHINE_CERTIFICATE (a user
    certificate counted as a device certificate).  The server records the type whose
    method it ran."""
    policy = TeapPolicy(server_inner("eap-tls"), identity=0)
    conv = _against_server(policy, None, peer_inner("eap-tls", MACHINE))
    a = conv.authenticator
    assert a is not None and a.outcome is not None
    assert a.success, (a.reason, a.detail)
    assert [p.identity_type for p in a.outcome.inner] == ["user"]
    assert Factor.MACHINE_CERTIFICATE not in a.outcome.factors
    assert a.outcome.factors == frozenset({Factor.CERTIFICATE})


@pytest.mark.parametrize("kind", ["eap-mschapv2", "basic-password", "eap-tls"])
def test_one_identity_cannot_satisfy_both_types(kind: str) -> None:
    """Finding: eap_teap_id=5 (user and machine) was satisfied by the user's credentials
    given twice, once per Identity-Type.  The same identity (or the same certificate) for
    both types ends in a failure."""
    policy = TeapPolicy(server_inner(kind), server_inner(kind), identity=5)
    twice = peer_inner(kind, USER)
    conv = _against_server(policy, twice, twice)
    _rejected(conv, "identity_reused")
    a = conv.authenticator
    assert a is not None and "machine" in a.detail


# -- the Crypto-Binding response -----------------------------------------------------------------


class _BindingPeer(_HostilePeer):
    """Answers each Crypto-Binding request with ``change(response)``, MACs recomputed
    over the changed fields unless ``keep_macs``."""

    change: Callable[[CryptoBinding], CryptoBinding] = staticmethod(lambda b: b)
    keep_macs = False

    def _bind(self, request: CryptoBinding) -> CryptoBinding | str:
        response = super()._bind(request)
        if isinstance(response, str):
            return response
        changed = self.change(response)
        if self.keep_macs:
            return changed
        assert self._chain is not None
        return self._chain.binding(changed, self._server_outer, b"")


def _binding_attack(
    change: Callable[[CryptoBinding], CryptoBinding], keep_macs: bool = False
) -> Conversation:
    class Peer_(_BindingPeer):
        pass

    Peer_.change = staticmethod(change)
    Peer_.keep_macs = keep_macs
    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    return _against_server(policy, peer_inner("eap-mschapv2", USER), None, peer_class=Peer_)


@pytest.mark.parametrize(
    "change",
    [
        lambda b: replace(b, received_version=2),
        lambda b: replace(b, received_version=0),
        lambda b: replace(b, version=2),
        lambda b: replace(b, subtype=CryptoBinding.REQUEST),
        lambda b: replace(b, nonce=b.nonce[:-1] + bytes([b.nonce[-1] & 0xFE])),
        lambda b: replace(b, nonce=bytes(32)),
    ],
    ids=["received-version-2", "received-version-0", "version", "subtype", "nonce-lsb", "nonce"],
)
def test_crypto_binding_response_fields(change: Callable[[CryptoBinding], CryptoBinding]) -> None:
    """A response with a valid Compound MAC over a wrong Version, Received-Version
    (finding: it was not checked; RFC 9930 §4.2.13 says it echoes the request's
    Version), Sub-Type or nonce (the peer's nonce is ours with the last bit set)."""
    _rejected(_binding_attack(change), "crypto_binding_failed")


def test_crypto_binding_from_another_session_is_refused() -> None:
    """A response recorded from one session, replayed in another: the nonce and the
    Compound MAC belong to the other tunnel."""
    recorded: list[CryptoBinding] = []

    def record(binding: CryptoBinding) -> CryptoBinding:
        recorded.append(binding)
        return binding

    _binding_attack(record, keep_macs=True)
    assert recorded
    _rejected(_binding_attack(lambda b: recorded[0], keep_macs=True), "crypto_binding_failed")


def test_tunnel_compromise_error_code_goes_with_a_bad_binding() -> None:
    sent: list[list[Tlv]] = []

    class Listening(_BindingPeer):
        def _message(self, event):  # type: ignore[no-untyped-def]
            if event.data:
                sent.append(list(decode_tlvs(event.data)))
            return super()._message(event)

    Listening.change = staticmethod(lambda b: replace(b, received_version=9))
    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    conv = _against_server(policy, peer_inner("eap-mschapv2", USER), None, peer_class=Listening)
    _rejected(conv, "crypto_binding_failed")
    errors = [t.value for tlvs in sent for t in tlvs if t.type == TlvType.ERROR]
    assert ErrorCode.TUNNEL_COMPROMISE.to_bytes(4, "big") in errors


# -- the TLS layer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [TlsVersion.TLS1_2, TlsVersion.TLS1_3], ids=["tls12", "tls13"])
def test_a_resumed_tunnel_still_runs_every_inner_method(version: TlsVersion) -> None:
    """RFC 9930 allows resuming the tunnel; it does not vouch for the inner methods: a
    resumed tunnel with a wrong password fails, and a right one runs the method again."""
    policy = TeapPolicy(server_inner("basic-password"), identity=1)
    auth = teap_authenticator(
        TlsContext(outer_tls(version, TlsRole.SERVER), TlsRole.SERVER), policy
    )
    cache = SessionCache()
    peer_cfg = TlsContext(outer_tls(version, TlsRole.PEER), TlsRole.PEER)
    good = teap_peer(peer_cfg, peer_inner("basic-password", USER), cache=cache)
    bad = teap_peer(peer_cfg, peer_inner("basic-password", USER, password="x"), cache=cache)
    first = run(auth, good, "anonymous")
    assert first.authenticator is not None and first.authenticator.success
    second = run(auth, bad, "anonymous")
    p = second.peer
    assert p is not None and p.outcome is not None
    assert p.outcome.attributes["tls_resumed"] == "yes"  # the attack needs a resumed tunnel
    _rejected(second, "bad_password")
    third = run(auth, good, "anonymous")
    a = third.authenticator
    assert a is not None and a.success and a.outcome is not None
    assert [(i.identity_type, i.method) for i in a.outcome.inner] == [("user", "basic-password")]


def test_outer_tlvs_after_the_first_message_end_cleanly() -> None:
    """RFC 9930 §4.1: Outer TLVs go in the first message of each side only.  A later
    message with the O flag and Outer TLVs appended does not reach the TLVs' parser as
    tunnel data: the conversation ends in a failure with a reason, no traceback."""

    class Late(TeapPeer):
        sent = 0

        def receive(self, type_data: bytes) -> Step:
            step = super().receive(type_data)
            self.sent += 1
            if self.sent == 2 and isinstance(step, Reply) and step.type_data:
                extra = Tlv(TlvType.IDENTITY_TYPE, b"\x00\x02").encode()
                return Reply(with_outer(step.type_data, extra))
            return step

    policy = TeapPolicy(server_inner("basic-password"), identity=1)
    conv = _against_server(policy, peer_inner("basic-password", USER), None, peer_class=Late)
    _rejected(conv)
    a = conv.authenticator
    assert a is not None and a.reason


def test_inner_eap_packet_with_another_identifier() -> None:
    """The inner EAP Response must answer the inner Request's Identifier."""

    def other_id(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        out = []
        for t in tlvs:
            if t.type == TlvType.EAP_PAYLOAD:
                packet = bytearray(t.value)
                packet[1] ^= 0x55
                t = Tlv.eap_payload(bytes(packet))
            out.append(t)
        return out

    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    _rejected(_against_server(policy, peer_inner("eap-mschapv2", USER), None, other_id))


def test_a_nak_for_the_crypto_binding_is_a_failure() -> None:
    """The peer NAKs the Crypto-Binding TLV instead of answering it."""

    def nak(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        if TlvType.CRYPTO_BINDING in _kinds(tlvs):
            return [
                Tlv.nak(TlvType.CRYPTO_BINDING) if t.type == TlvType.CRYPTO_BINDING else t
                for t in tlvs
            ]
        return tlvs

    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    conv = _against_server(policy, peer_inner("eap-mschapv2", USER), None, nak)
    _rejected(conv, "crypto_binding_missing")


# -- downgrades of the Crypto-Binding ------------------------------------------------------------


def _tls_machine_policy(require: bool) -> TeapPolicy:
    return TeapPolicy(
        server_inner("eap-mschapv2"),
        server_inner("eap-tls"),
        identity=2,
        require_emsk_binding=require,
    )


@pytest.mark.parametrize("require", [False, True], ids=["default", "required"])
def test_emsk_compound_mac_stripped(require: bool) -> None:
    """The server sends both Compound MACs (inner EAP-TLS has an EMSK); the peer answers
    with the MSK one only (flags 2, valid MAC).  By default this is Windows' answer and
    is accepted, recorded as ``crypto_binding=msk``; with ``require_emsk_binding`` it is
    a downgrade and refused."""

    class Stripping(_BindingPeer):
        def _bind(self, request: CryptoBinding) -> CryptoBinding | str:
            assert request.has_emsk  # the attack needs the server to have sent both
            response = super()._bind(request)
            assert isinstance(response, CryptoBinding)
            chain = self._chain
            assert chain is not None
            saved, chain.cmk_emsk = chain.cmk_emsk, None
            try:
                return chain.binding(response, self._server_outer, b"")
            finally:
                chain.cmk_emsk = saved

    conv = _against_server(
        _tls_machine_policy(require), None, peer_inner("eap-tls", MACHINE), peer_class=Stripping
    )
    a = conv.authenticator
    assert a is not None
    if require:
        _rejected(conv, "crypto_binding_failed")
        assert "EMSK" in a.detail
    else:
        assert a.success and a.outcome is not None
        assert a.outcome.attributes["crypto_binding"] == "msk"


def test_emsk_binding_required_passes_with_both_macs() -> None:
    conv = _against_server(
        _tls_machine_policy(True), None, peer_inner("eap-tls", MACHINE), peer_class=TeapPeer
    )
    a = conv.authenticator
    assert a is not None and a.success, a and (a.reason, a.detail)
    assert a.outcome is not None and a.outcome.attributes["crypto_binding"] == "emsk"


def test_peer_intermediate_failure_with_a_valid_binding_is_a_failure() -> None:
    """Finding: the peer's answer to the final Crypto-Binding request said
    Intermediate-Result=Failure (its check of the inner method failed, e.g. the
    server's MS-CHAPv2 authenticator response) with a valid binding and Result=Success;
    the server ignored the Intermediate-Result and succeeded."""

    def fail_inner(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        if TlvType.CRYPTO_BINDING not in _kinds(tlvs):
            return tlvs
        return [
            Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.FAILURE)
            if t.type == TlvType.INTERMEDIATE_RESULT
            else t
            for t in tlvs
        ]

    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    conv = _against_server(policy, peer_inner("eap-mschapv2", USER), None, fail_inner)
    _rejected(conv, "peer_refused_success")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (Tlv(TlvType.PAC, b"\x00\x01", mandatory=True), "unexpected_tlv"),
        (Tlv(0x3FFF, b"", mandatory=True), "unexpected_tlv"),
        (Tlv.status(TlvType.RESULT, Status.SUCCESS), "malformed"),  # a duplicate Result
    ],
    ids=["mandatory-pac", "mandatory-unassigned", "duplicate-result"],
)
def test_tlvs_the_server_must_refuse(extra: Tlv, reason: str) -> None:
    """Added to the peer's final answer (which has a Result TLV already)."""

    def add(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        return [*tlvs, extra] if TlvType.RESULT in _kinds(tlvs) else tlvs

    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    _rejected(_against_server(policy, peer_inner("eap-mschapv2", USER), None, add), reason)


@pytest.mark.parametrize("which", ["expired_client", "rogue_client", "server"])
def test_inner_eap_tls_certificates_that_must_not_pass(which: str) -> None:
    """The machine's inner EAP-TLS with an expired certificate, one from a CA the
    server does not trust, or the outer tunnel's own server certificate replayed
    inside (no clientAuth EKU)."""
    lb = lab("ec")
    cert = getattr(lb, which)
    machine = PeerInner(MACHINE, "eap-tls", (tls_peer(peer_config(lb, cert, resumption=False)),))
    conv = _against_server(_tls_machine_policy(False), None, machine, peer_class=TeapPeer)
    _rejected(conv)
    a = conv.authenticator
    assert a is not None and a.outcome is not None
    assert [(p.identity_type, p.success) for p in a.outcome.inner] == [("machine", False)]


def test_a_result_tlv_inside_an_eap_payload() -> None:
    """The EAP-Payload TLV carries TEAP TLVs (Result=Success, Intermediate-Result)
    instead of an inner EAP packet: the inner method ends, the conversation fails."""
    inside = encode_tlvs(
        [
            Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS),
            Tlv.status(TlvType.RESULT, Status.SUCCESS),
        ]
    )

    def smuggle(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        return [Tlv.eap_payload(inside) if t.type == TlvType.EAP_PAYLOAD else t for t in tlvs]

    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    _rejected(_against_server(policy, peer_inner("eap-mschapv2", USER), None, smuggle))


@pytest.mark.parametrize("size", [30_000, 200_000], ids=["30k", "200k"])
def test_a_huge_tlv_stream_is_bounded(size: int) -> None:
    """Optional unknown TLVs of ``size`` octets in all with the first answer: within the
    TLS message cap (64 KiB) they are skipped and the login still needs its inner
    method; beyond it the server refuses the message.  Either way no success without
    the password and nothing raises."""
    chunk = Tlv(0x3FF0, bytes(60_000), mandatory=False)
    filler = [chunk] * (size // 60_000) + [Tlv(0x3FF0, bytes(size % 60_000))]

    def pad(n: int, tlvs: list[Tlv]) -> list[Tlv]:
        return [*tlvs, *filler] if n == 0 else tlvs

    policy = TeapPolicy(server_inner("basic-password"), identity=1)
    conv = _against_server(policy, peer_inner("basic-password", USER, password="x"), None, pad)
    _rejected(conv)
