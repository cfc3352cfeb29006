"""Attacks on TEAP's chaining, the peer role against a hostile server (RFC 9930 §3.9,
§4.2.13, §6.3): the peer must not report success nor export keys unless every inner
method it ran succeeded on its own side and was bound.  Each test marked "finding" failed
on the code before the fix that names it (issue 19's attack pass); the server role's
attacks are in ``test_teap_attacks.py``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from eapkit.loopback import Conversation
from eapkit.methods.base import Authenticator, InnerProof, MethodContext, MethodFactory, Peer, Step
from eapkit.methods.mschapv2 import mschapv2_authenticator
from eapkit.methods.teap import TEAP, InnerMethod, TeapAuthenticator, TeapPolicy
from eapkit.methods.teap import _Step as _ServerStep
from eapkit.methods.teap_peer import PeerInner, TeapPeer
from eapkit.session import Result as SessionResult
from eapkit.teap_tlv import CryptoBinding, Status, TeapMessage, Tlv, TlvType
from eapkit.testing import StaticNtHashes
from eapkit.tlsio import Message, TlsContext, TlsRole, TlsVersion
from tests.certs import run
from tests.methods.test_teap import MACHINE, PASSWORDS, USER, outer_tls, peer_inner, server_inner


def _hostile_server(
    server: type[TeapAuthenticator],
    policy: TeapPolicy,
    user: PeerInner | None,
    machine: PeerInner | None,
) -> Conversation:
    server_ctx = TlsContext(outer_tls(TlsVersion.TLS1_3, TlsRole.SERVER), TlsRole.SERVER)
    peer_ctx = TlsContext(outer_tls(TlsVersion.TLS1_3, TlsRole.PEER), TlsRole.PEER)

    def make_server(ctx: MethodContext) -> Authenticator:
        return server(ctx, server_ctx, policy)

    def make_peer(ctx: MethodContext) -> Peer:
        return TeapPeer(ctx, peer_ctx, user, machine)

    return run(MethodFactory(TEAP, make_server), MethodFactory(TEAP, make_peer), "anonymous")


def _kinds(tlvs: list[Tlv]) -> set[int]:
    return {t.type for t in tlvs}


class _SkippingServer(TeapAuthenticator):
    """Once the second inner method has started, says Result=Success (``forge`` adds
    what else goes with it) instead of the inner method's next request."""

    forge: Callable[[TeapAuthenticator], list[Tlv]] = staticmethod(lambda s: [])

    def _send(self, tlvs: list[Tlv]) -> Step:
        started = len(self._proofs) == 1 and self.state == "inner"
        if (
            started
            and TlvType.EAP_PAYLOAD in _kinds(tlvs)
            and TlvType.IDENTITY_TYPE not in _kinds(tlvs)
        ):
            tlvs = [Tlv.status(TlvType.RESULT, Status.SUCCESS), *self.forge(self)]
            self.forged = True
        return super()._send(tlvs)

    forged = False

    def _message(self, event: Message) -> Step:
        if self.forged:  # whatever the peer answers: EAP-Success and keys
            return self._end(self._outcome(True, "ok", ""))
        return super()._message(event)


def _stale_binding(server: TeapAuthenticator) -> list[Tlv]:
    """A Crypto-Binding request computed with the first inner method's CMK: valid MACs,
    but for a chain the second method never joined."""
    chain = server._chain
    assert chain is not None
    nonce = bytes(31) + b"\x02"
    template = CryptoBinding(1, 1, 0, CryptoBinding.REQUEST, nonce)
    return [chain.binding(template, server._server_outer, b"").tlv()]


@pytest.mark.parametrize("forge", [lambda s: [], _stale_binding], ids=["bare", "stale-binding"])
def test_peer_refuses_result_success_in_the_middle_of_an_inner_method(
    forge: Callable[[TeapAuthenticator], list[Tlv]],
) -> None:
    """Finding: after the first inner method was bound, a server could skip the second
    one (started, not finished) with a bare Result=Success, or one with a Crypto-Binding
    from the first method's keys; the peer reported success and exported keys."""

    class Server(_SkippingServer):
        pass

    Server.forge = staticmethod(forge)
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-mschapv2"), identity=5)
    user, machine = peer_inner("eap-mschapv2", USER), peer_inner("eap-mschapv2", MACHINE)
    conv = _hostile_server(Server, policy, user, machine)
    p = conv.peer
    assert p is not None
    assert not p.success, (p.reason, p.detail)
    assert p.keys is None
    assert p.reason == "protocol_error" and "inner method runs" in p.detail


class _ImpostorServer(TeapAuthenticator):
    """A server that does not know the machine's password: when its check of the second
    inner method fails, it says Intermediate-Result=Success and Result=Success anyway,
    with a Crypto-Binding over the chain the failed method never joined."""

    def _step_done(
        self,
        step: _ServerStep,
        result: SessionResult | None,
        reason: str,
        detail: str,
        proof: InnerProof | None = None,
    ) -> Step:
        if self._proofs and reason != "ok":
            self._proofs.append(InnerProof("machine", MACHINE, "eap-mschapv2", True))
            return self._send_binding(
                [Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS)], final=True
            )
        return super()._step_done(step, result, reason, detail, proof)


def test_peer_refuses_intermediate_success_its_inner_method_did_not_reach() -> None:
    """Finding: the server's Intermediate-Result=Success was taken over the peer's own
    inner method, which had failed (the server never proved the machine password):
    the peer bound the chain without it, agreed to Result=Success and exported keys."""
    wrong = {USER: PASSWORDS[USER], MACHINE: "not-the-machine-password"}
    machine_check = InnerMethod(
        "eap-mschapv2", (mschapv2_authenticator(StaticNtHashes.from_passwords(wrong)),)
    )
    policy = TeapPolicy(server_inner("eap-mschapv2"), machine_check, identity=5)
    user, machine = peer_inner("eap-mschapv2", USER), peer_inner("eap-mschapv2", MACHINE)
    conv = _hostile_server(_ImpostorServer, policy, user, machine)
    p = conv.peer
    assert p is not None
    assert not p.success, (p.reason, p.detail)
    assert p.keys is None
    assert p.outcome is not None
    assert [(i.identity_type, i.success) for i in p.outcome.inner] == [
        ("user", True),
        ("machine", False),
    ]


class _VersionServer(TeapAuthenticator):
    """Sends its Crypto-Binding requests with Received-Ver 2 (valid MACs)."""

    def _send(self, tlvs: list[Tlv]) -> Step:
        out = []
        for t in tlvs:
            if t.type == TlvType.CRYPTO_BINDING:
                chain = self._chain
                assert chain is not None
                changed = replace(CryptoBinding.decode(t.value), received_version=2)
                t = chain.binding(changed, self._server_outer, b"").tlv()
            out.append(t)
        return super()._send(out)


def test_peer_refuses_a_request_with_another_received_version() -> None:
    """Finding: the peer did not check the request's Received-Ver (the version the
    server got from us, RFC 9930 §4.2.13; a version downgrade shows there)."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), identity=1)
    user = peer_inner("eap-mschapv2", USER)
    conv = _hostile_server(_VersionServer, policy, user, None)
    p = conv.peer
    assert p is not None and not p.success and p.keys is None
    assert p.reason == "crypto_binding_failed" and "Received-Ver" in p.detail


class _NoMethodServer(TeapAuthenticator):
    """After the peer's inner EAP-Identity answer of the second method, says
    Intermediate-Result=Success with a Crypto-Binding over no inner keys at all (zero
    IMSK, which anyone can compute) and Result=Success: no inner method ever ran."""

    def _inner_message(self, msg: TeapMessage) -> Step:
        if self._proofs and msg.eap_payload is not None:
            chain = self._chain
            assert chain is not None
            chain.add_inner(None)
            self._proofs.append(InnerProof("machine", MACHINE, "eap-mschapv2", True))
            return self._send_binding(
                [Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS)], final=True
            )
        return super()._inner_message(msg)


def test_peer_refuses_intermediate_success_before_its_inner_method_ran() -> None:
    """Only the inner EAP-Identity exchange happened; the peer must not count that as
    an inner method that succeeded."""
    policy = TeapPolicy(server_inner("eap-mschapv2"), server_inner("eap-mschapv2"), identity=5)
    user, machine = peer_inner("eap-mschapv2", USER), peer_inner("eap-mschapv2", MACHINE)
    conv = _hostile_server(_NoMethodServer, policy, user, machine)
    p = conv.peer
    assert p is not None
    assert not p.success, (p.reason, p.detail)
    assert p.keys is None
