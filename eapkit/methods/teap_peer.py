"""EAP-TEAP (RFC 9930), the peer role (the conversation is drawn in
:mod:`eapkit.methods.teap`).

The peer answers what the server asks, in the order it asks: each Identity-Type TLV
(RFC 9930 §4.2.3) starts an inner authentication as that identity, with the
credentials given for it (:class:`PeerInner`); without an Identity-Type TLV the user's
credentials are used (hostapd ``eap_teap_id=0``).  Asked for an identity type it has no
credentials for, the peer answers as the other type (its Identity-Type TLV says so), as
wpa_supplicant does, and the server's policy decides whether that type will do.  An
inner method it cannot run (a password where a certificate is asked) is declined with
a NAK TLV naming the TLV (EAP-Payload or Basic-Password-Auth-Req).

After each inner method the server's Intermediate-Result and Crypto-Binding request
arrive; the peer checks the Compound MAC (RFC 9930 §6.3), answers with its own, and
the final Result=Success gets Result=Success back, and only when no inner method is
still running and the last one was bound (a server that skips a started method gets
Result=Failure).  Anything malformed, a mandatory TLV
we do not support, or a Compound MAC that does not verify ends in Result=Failure (with an
Error TLV) as our last word, and a failed outcome with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from eapkit.errors import DecodeError
from eapkit.methods.base import (
    Done,
    Factor,
    InnerProof,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.teap import INNER_KINDS, MSCHAPV2, TEAP, proof_factors
from eapkit.methods.teap_keys import Compat, KeyChain
from eapkit.methods.tls import TLS, TlsPeer
from eapkit.methods.tunnel import TunnelPeerBase, inner_eap_name
from eapkit.packet import Code, EapType
from eapkit.session import Finished, PeerSession, Send
from eapkit.session import Result as SessionResult
from eapkit.teap_tlv import (
    TEAP_VERSION,
    BasicPasswordResponse,
    CryptoBinding,
    ErrorCode,
    IdentityType,
    Status,
    TeapMessage,
    Tlv,
    TlvType,
    encode_tlvs,
    parse_message,
    split_outer,
)
from eapkit.tlsio import Message, SessionCache, TlsConfig, TlsContext, TlsRole, derive_keys

__all__ = ["PeerInner", "TeapPeer", "teap_peer"]

_NAMES = {IdentityType.USER: "user", IdentityType.MACHINE: "machine"}


@dataclass(frozen=True, slots=True)
class PeerInner:
    """The credentials of one identity type: inner EAP methods (``eap``) or a password
    for Basic-Password-Auth (and ``otp``, the answer to a second prompt)."""

    identity: str
    kind: str  # "eap-tls" | "eap-mschapv2" | "basic-password"
    eap: tuple[MethodFactory[Peer], ...] = ()
    password: str | None = field(default=None, repr=False)
    otp: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in INNER_KINDS:
            raise ValueError(f"TEAP inner method {self.kind!r}: one of {', '.join(INNER_KINDS)}")
        if self.kind == "basic-password" and self.password is None:
            raise ValueError("Basic-Password-Auth needs a password")
        if self.kind != "basic-password" and not self.eap:
            raise ValueError(f"TEAP inner method {self.kind!r} needs its EAP method")


@dataclass(slots=True)
class _Step:
    kind: IdentityType
    creds: PeerInner
    session: PeerSession | None = None
    prompts: int = 0
    done: bool = False
    made: list[Peer] = field(default_factory=list)  # the inner method instances

    def factories(self) -> list[MethodFactory[Peer]]:
        """The inner EAP methods, each keeping the instance it makes in ``made``."""

        def keep(factory: MethodFactory[Peer]) -> MethodFactory[Peer]:
            def create(ctx: MethodContext) -> Peer:
                peer = factory.create(ctx)
                self.made.append(peer)
                return peer

            return MethodFactory(factory.method, create, factory.name)

        return [keep(f) for f in self.creds.eap]


class TeapPeer(TunnelPeerBase):
    """The peer role of TEAP (see the module docstring)."""

    method = TEAP
    _label = "TEAP"

    def __init__(
        self,
        ctx: MethodContext,
        context: TlsContext,
        user: PeerInner | None,
        machine: PeerInner | None = None,
        *,
        compat: Compat = "rfc9930",
        cache: SessionCache | None = None,
    ) -> None:
        key = (context.config.server_name or "", ctx.identity, "teap")
        super().__init__(
            ctx, context, EapType.TEAP, version=TEAP_VERSION, cache=cache, cache_key=key
        )
        self._creds = {IdentityType.USER: user, IdentityType.MACHINE: machine}
        self._compat: Compat = compat
        self._first = True
        self._server_outer = b""
        self._chain: KeyChain | None = None
        self._step: _Step | None = None
        self._proofs: list[InnerProof] = []
        self._bound = False  # the last inner method's Crypto-Binding verified

    def receive(self, type_data: bytes) -> Step:
        if self._first:
            self._first = False
            try:
                type_data, self._server_outer = split_outer(type_data)
            except DecodeError as exc:
                return Done(Outcome.failed("malformed", f"Outer TLVs: {exc.reason}"))
        return super().receive(type_data)

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if self._final is not None:
            return self._end(
                Outcome.failed("protocol_error", "more after the result"), engine.ack()
            )
        if not engine.handshake_done or not event.data:
            return self._write_or_ack()
        if self._chain is None:
            self._chain = KeyChain.start(engine, self._compat)
        try:
            msg = parse_message(event.data)
        except DecodeError as exc:
            return self._refuse("malformed", exc.reason, ErrorCode.UNEXPECTED_TLVS)
        if msg.unsupported:
            naks = [Tlv.nak(kind) for kind in msg.unsupported]
            names = ", ".join(str(k) for k in msg.unsupported)
            outcome = self._failed("unexpected_tlv", f"mandatory TLVs {names}")
            return self._write_last(encode_tlvs([*naks, *self._result(False)]), outcome)
        if msg.result is Status.FAILURE:
            self._end_inner(False)
            detail = "the server's Result TLV says failure"
            if msg.errors:
                detail += f" (Error {', '.join(map(str, msg.errors))})"
            return self._write_last(
                encode_tlvs(self._result(False)), self._failed(self._failure_reason(), detail)
            )
        return self._phase2(msg)

    def _write_or_ack(self) -> Step:
        return Reply(self._engine.next_type_data())

    # -- phase 2 --------------------------------------------------------------------------------

    def _phase2(self, msg: TeapMessage) -> Step:
        out: list[Tlv] = []
        if msg.intermediate_result is not None:
            ended = self._end_inner(msg.intermediate_result is Status.SUCCESS)
            if msg.intermediate_result is Status.SUCCESS and ended is False:
                # mutual authentication: the server's word does not override our inner
                # method's own check of the server (an MS-CHAPv2 authenticator response)
                return self._refuse(
                    "inner_method_failed",
                    "Intermediate-Result=Success for an inner method that failed here",
                    ErrorCode.INNER_METHOD_ERROR,
                )
            out.append(Tlv.status(TlvType.INTERMEDIATE_RESULT, msg.intermediate_result))
            if msg.intermediate_result is Status.SUCCESS and msg.crypto_binding is None:
                return self._refuse(
                    "crypto_binding_missing", "no Crypto-Binding TLV", ErrorCode.TUNNEL_COMPROMISE
                )
        if msg.crypto_binding is not None:
            response = self._bind(msg.crypto_binding)
            if isinstance(response, str):
                return self._refuse("crypto_binding_failed", response, ErrorCode.TUNNEL_COMPROMISE)
            out.append(response.tlv())
        if msg.result is Status.SUCCESS:
            return self._finish(out)
        starts = msg.eap_payload is not None or msg.basic_password_request is not None
        new_step = self._step is None or self._step.done or msg.identity_type is not None
        if starts and new_step:
            asked = msg.identity_type or IdentityType.USER
            kind = asked
            if self._creds[kind] is None:  # as wpa_supplicant: answer as the other type
                kind = IdentityType.MACHINE if asked is IdentityType.USER else IdentityType.USER
            creds = self._creds[kind]
            if creds is None:  # pragma: no cover - teap_peer needs one of the two
                self._step = None
                declined = (
                    TlvType.EAP_PAYLOAD
                    if msg.eap_payload is not None
                    else TlvType.BASIC_PASSWORD_AUTH_REQ
                )
                return self._write(encode_tlvs([*out, Tlv.nak(declined)]))
            self._step = _Step(kind, creds)
            self._bound = False  # this method's own Crypto-Binding is due
            if msg.identity_type is not None or kind is not asked:
                out.append(Tlv.identity_type(kind))
        if not starts:
            if out:
                return self._write(encode_tlvs(out))
            return self._refuse(
                "protocol_error", "a TEAP Request that asks nothing", ErrorCode.UNEXPECTED_TLVS
            )
        step = self._step
        assert step is not None
        if msg.basic_password_request is not None:
            return self._basic_password(step, out)
        assert msg.eap_payload is not None
        return self._inner_eap(step, msg.eap_payload, out)

    def _basic_password(self, step: _Step, out: list[Tlv]) -> Step:
        creds = step.creds
        if creds.kind != "basic-password" or creds.password is None:
            return self._write(encode_tlvs([*out, Tlv.nak(TlvType.BASIC_PASSWORD_AUTH_REQ)]))
        step.prompts += 1
        secret = creds.password if step.prompts == 1 else (creds.otp or "")
        answer = BasicPasswordResponse(creds.identity.encode(), secret.encode())
        return self._write(encode_tlvs([*out, answer.tlv()]))

    def _inner_eap(self, step: _Step, packet: bytes, out: list[Tlv]) -> Step:
        creds = step.creds
        if creds.kind == "basic-password":
            return self._write(encode_tlvs([*out, Tlv.nak(TlvType.EAP_PAYLOAD)]))
        if step.session is None:
            step.session = PeerSession(
                step.factories(), creds.identity, now=self._ctx.now, random=self._ctx.random
            )
        action = step.session.receive(packet)
        if not isinstance(action, Send):
            reason = action.reason if not isinstance(action, Finished) else action.result.reason
            return self._refuse(
                "protocol_error", f"inner EAP: {reason}", ErrorCode.INNER_METHOD_ERROR
            )
        self._inner_id = action.packet[1]
        return self._write(encode_tlvs([*out, Tlv.eap_payload(action.packet)]))

    def _end_inner(self, success: bool) -> bool | None:
        """The server's Intermediate-Result: end the inner method as an EAP Success or
        Failure would, record what it proved and feed its keys to the chain.  Whether
        it succeeded on our side, or None when no inner method was running."""
        step = self._step
        if step is None or step.done:
            return None
        step.done = True
        result: SessionResult | None = None
        concluded = _tls13_concluded(step) if success else None
        if concluded is not None:
            result = concluded
        elif step.session is not None:
            if not step.session.finished:
                code = Code.SUCCESS if success else Code.FAILURE
                ident = self._inner_id or 0
                action = step.session.receive(bytes([code, ident, 0, 4]))
                result = action.result if isinstance(action, Finished) else None
            else:
                result = step.session.result
        ok = success and (step.session is None or (result is not None and result.success))
        name_of = _NAMES[step.kind]
        method = step.creds.kind
        if result is not None and result.method is not None:
            method = inner_eap_name(result.method, list(step.creds.eap))
        factors = proof_factors(step.creds.kind, name_of, frozenset()) if ok else frozenset()
        self._proofs.append(InnerProof(name_of, step.creds.identity, method, ok, factors))
        if ok and self._chain is not None:
            keys = result.keys if result is not None else None
            mschapv2 = result is not None and result.method == MSCHAPV2
            self._chain.add_inner(keys, mschapv2=mschapv2)
        return ok

    def _bind(self, request: CryptoBinding) -> CryptoBinding | str:
        chain = self._chain
        assert chain is not None
        if request.version != TEAP_VERSION or request.subtype != CryptoBinding.REQUEST:
            return "Crypto-Binding request with the wrong version or Sub-Type"
        if request.received_version != TEAP_VERSION:  # RFC 9930 §4.2.13: what we sent
            return "Crypto-Binding request with the wrong Received-Ver"
        if request.nonce[-1] & 1:
            return "Crypto-Binding request nonce ends in a 1 bit"
        problem = chain.verify(request, self._server_outer, b"")
        if problem is not None:
            return problem
        self._bound = True
        nonce = request.nonce[:-1] + bytes([request.nonce[-1] | 1])
        template = CryptoBinding(TEAP_VERSION, request.version, 0, CryptoBinding.RESPONSE, nonce)
        if chain.bound_with_emsk:
            return chain.binding(template, self._server_outer, b"")
        # the EMSK MAC was not checked: answer with the MSK one only (RFC 9930 §6.2)
        saved, chain.cmk_emsk = chain.cmk_emsk, None
        try:
            return chain.binding(template, self._server_outer, b"")
        finally:
            chain.cmk_emsk = saved

    def _finish(self, out: list[Tlv]) -> Step:
        """The server's Result=Success: agree if an inner method succeeded, no inner
        method is still running (its Intermediate-Result ends it) and the last one's
        Crypto-Binding verified (RFC 9930 §3.9.2: the final Result goes with the last
        Intermediate-Result and Crypto-Binding)."""
        good = [p for p in self._proofs if p.success]
        if self._step is not None and not self._step.done:
            return self._refuse(
                "protocol_error",
                "Result=Success while an inner method runs",
                ErrorCode.UNEXPECTED_TLVS,
            )
        if not good or not self._bound:
            return self._refuse(
                "protocol_error", "Result=Success before an inner method was bound", None
            )
        chain = self._chain
        assert chain is not None
        out.append(Tlv.status(TlvType.RESULT, Status.SUCCESS))
        keys = chain.final_keys(self._engine)
        outcome = self._outcome(True, "ok", "")
        # MAY_CONT (RFC 4137 §4.1): the server may still refuse our Crypto-Binding
        return self._write_last(encode_tlvs(out), replace(outcome, keys=keys), final=False)

    def _tunnel_packet(self, packet: bytes) -> bytes:  # pragma: no cover - see _inner_eap
        return encode_tlvs([Tlv.eap_payload(packet)])

    def _inner_discarded(self, reason: str) -> Step:  # pragma: no cover - see _inner_eap
        return self._refuse("protocol_error", f"inner: {reason}", ErrorCode.INNER_METHOD_ERROR)

    def _inner_finished(self, result: SessionResult) -> Step:  # pragma: no cover
        return self._refuse("protocol_error", "inner method ended out of turn", None)

    # -- endings --------------------------------------------------------------------------------

    def _result(self, success: bool) -> list[Tlv]:
        return [Tlv.status(TlvType.RESULT, Status.SUCCESS if success else Status.FAILURE)]

    def _refuse(self, reason: str, detail: str, error: int | None) -> Step:
        tlvs = self._result(False)
        if error is not None:
            tlvs.append(Tlv.error(error))
        return self._write_last(encode_tlvs(tlvs), self._failed(reason, detail))

    def _failure_reason(self) -> str:
        failed = [p for p in self._proofs if not p.success]
        return "inner_method_failed" if failed else "eap_failure"

    def _failed(self, reason: str, detail: str) -> Outcome:
        return self._outcome(False, reason, detail)

    def _outcome(self, success: bool, reason: str, detail: str) -> Outcome:
        proofs = tuple(self._proofs)
        good = [p for p in proofs if p.success]
        users = [p for p in good if p.identity_type == "user"]
        named = users or good
        factors: frozenset[Factor] = frozenset().union(*(p.factors for p in good))
        attrs = self._tunnel_attributes(
            "+".join(f"{p.identity_type}:{p.method}" for p in proofs) or "none"
        )
        attrs["teap_compat"] = self._compat
        identity = named[0].identity if named else None
        return Outcome(
            success,
            reason,
            None,
            identity,
            detail,
            attrs,
            factors if success else frozenset(),
            None,
            proofs,
        )


def _tls13_concluded(step: _Step) -> SessionResult | None:
    """An inner EAP-TLS 1.3 peer whose handshake is done but which still waits for the
    server's commitment (0x00, RFC 9190 §2.1.1): hostapd's TEAP server ends the inner
    method with the Intermediate-Result instead (the protected result TEAP provides), so
    that stands in for the commitment.  None for anything else."""
    if step.session is None or step.session.finished or not step.made:
        return None
    inner = step.made[-1]
    if not isinstance(inner, TlsPeer):
        return None
    engine = inner.engine
    if not (engine.is_tls13 and engine.handshake_done) or engine.failure is not None:
        return None
    return SessionResult(True, "ok", user=step.creds.identity, method=TLS, keys=derive_keys(engine))


def teap_peer(
    config: TlsConfig | TlsContext,
    user: PeerInner | None,
    machine: PeerInner | None = None,
    *,
    compat: Compat = "rfc9930",
    cache: SessionCache | None = None,
) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`: TEAP with the user's and the
    machine's credentials (either may be None, not both)."""
    if user is None and machine is None:
        raise ValueError("TEAP needs the user's or the machine's credentials")
    context = config if isinstance(config, TlsContext) else TlsContext(config, TlsRole.PEER)
    return MethodFactory(
        TEAP,
        lambda ctx: TeapPeer(ctx, context, user, machine, compat=compat, cache=cache),
        "teap",
    )
