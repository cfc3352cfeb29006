"""EAP-TEAP (RFC 9930), the server role, on the tunnel base; the peer role is in
:mod:`eapkit.methods.teap_peer`, the TLVs in :mod:`eapkit.teap_tlv`, the keys
in :mod:`eapkit.methods.teap_keys` (which lists the RFC 9930 / RFC 7170 differences).

One conversation (TLS 1.2 or 1.3, RFC 9930 §3, RFC 9427 §2)::

    S: Start, Outer TLV Authority-ID (O flag)      P: ClientHello
    ... the TLS handshake as EAP-TLS carries it (eapkit.tlsio) ...
    S: last handshake flight + phase 2's first message, e.g.
       [Identity-Type=machine, EAP-Payload(Identity Request)]
    P: [Identity-Type=machine, EAP-Payload(Identity Response)]
    ... the inner method in EAP-Payload TLVs (or Basic-Password-Auth-Req/Resp) ...
    S: [Intermediate-Result=Success, Crypto-Binding request]
    P: [Intermediate-Result=Success, Crypto-Binding response]
    S: [Identity-Type=machine, EAP-Payload(Identity Request)]    (the next inner method)
    ...
    S: [Intermediate-Result=Success, Result=Success, Crypto-Binding request]
    P: [Intermediate-Result=Success, Result=Success, Crypto-Binding response]
    S: EAP-Success, the keys of RFC 9930 §6.4

Which inner methods run (RFC 9930 §3.6 Identity-Type) follows hostapd 2.10's
``eap_teap_id`` (``src/eap_server/eap.h``): 0 no Identity-Type TLV, one method as
whoever answers; 1 require the user; 2 require the machine; 3 ask for the user, accept
the machine; 4 ask for the machine, accept the user; 5 require both, user then machine
(hostapd's order).  A peer that answers an accepted other type (its Identity-Type TLV)
gets that type's inner method from the start.

Failures end in Result=Failure with an Error TLV (RFC 9930 §3.9), the peer's answer,
then EAP-Failure, with a reason: ``bad_password``/the inner method's reason for an inner
failure, ``identity_type_missing`` when the identity type the policy needs was
declined or another one answered, ``inner_method_declined`` when the peer NAKs the
inner method (a password where a certificate is asked), ``identity_reused`` when the
second identity type answers with the first one's identity or certificate (one
credential does not satisfy "both"), ``crypto_binding_failed`` for a Compound MAC that
does not verify or a response whose Version, Received-Ver, Sub-Type or nonce is not the
one asked for, ``malformed`` for TLVs that do not parse, ``unexpected_tlv`` for
mandatory TLVs we do not support.  The identity type recorded is the one whose inner
method ran: a peer claiming "machine" where the policy has no machine method proves a
user.

``Outcome.inner`` lists each inner authentication (:class:`~eapkit.methods.base.InnerProof`);
``Outcome.identity`` is the user's identity when a user method succeeded, else the
machine's; ``Outcome.factors`` is the union of what the successful ones proved (a machine
certificate proves ``MACHINE_CERTIFICATE``, a user certificate ``CERTIFICATE``).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field, replace

from eapkit.credentials import CHALLENGE, ResponseCheck
from eapkit.errors import DecodeError
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    InnerProof,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Reply,
    Step,
)
from eapkit.methods.teap_keys import Compat, KeyChain
from eapkit.methods.tunnel import TunnelAuthenticatorBase, inner_eap_name
from eapkit.packet import EapType, MethodId
from eapkit.session import AuthenticatorSession, Discard, Send
from eapkit.session import Result as SessionResult
from eapkit.teap_tlv import (
    TEAP_VERSION,
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
    with_outer,
)
from eapkit.tlsio import Message, TlsConfig, TlsContext, TlsEapEngine, TlsRole

__all__ = [
    "INNER_KINDS",
    "TEAP",
    "InnerMethod",
    "TeapAuthenticator",
    "TeapPolicy",
    "proof_factors",
    "teap_authenticator",
]

TEAP = MethodId.legacy(EapType.TEAP)
MSCHAPV2 = MethodId.legacy(EapType.MSCHAPV2)
INNER_KINDS = ("eap-tls", "eap-mschapv2", "basic-password")
_TYPE_NAMES = {IdentityType.USER: "user", IdentityType.MACHINE: "machine"}


@dataclass(frozen=True, slots=True)
class InnerMethod:
    """How the server authenticates one identity type: inner EAP methods (``eap``, in
    order of preference) or Basic-Password-Auth (``password``: a cleartext check, and
    ``code`` for the second round a CHALLENGE verdict asks for)."""

    kind: str  # "eap-tls" | "eap-mschapv2" | "basic-password"
    eap: tuple[MethodFactory[Authenticator], ...] = ()
    password: ResponseCheck | None = None
    code: ResponseCheck | None = None

    def __post_init__(self) -> None:
        if self.kind not in INNER_KINDS:
            raise ValueError(f"TEAP inner method {self.kind!r}: one of {', '.join(INNER_KINDS)}")
        if (self.kind == "basic-password") != (self.password is not None) or (
            self.kind != "basic-password" and not self.eap
        ):
            raise ValueError(f"TEAP inner method {self.kind!r} without its credentials")


@dataclass(frozen=True, slots=True)
class TeapPolicy:
    """``identity``: hostapd's ``eap_teap_id`` 0-5 (module docstring); ``compat``:
    ``"rfc9930"`` or ``"rfc7170"`` (:mod:`eapkit.methods.teap_keys`);
    ``require_emsk_binding``: when the server sends the EMSK Compound MAC (its inner
    method exported an EMSK), refuse a response with the MSK one only (RFC 9930 §6.3; off
    by default, as Windows' inner EAP-TLS exports no EMSK and answers MSK-only)."""

    user: InnerMethod
    machine: InnerMethod | None = None
    identity: int = 0
    compat: Compat = "rfc9930"
    authority_id: bytes = b"eapkit"
    require_emsk_binding: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.identity <= 5:
            raise ValueError(f"teap_identity {self.identity}: 0 to 5")
        if self.compat not in ("rfc9930", "rfc7170"):
            raise ValueError(f"teap_compat {self.compat!r}: rfc9930 or rfc7170")
        if self.identity >= 2 and self.machine is None:
            raise ValueError(f"teap_identity {self.identity} needs a machine inner method")

    def steps(self) -> list[tuple[IdentityType | None, frozenset[IdentityType]]]:
        """The inner authentications in order, each required: (identity type asked,
        identity types accepted in answer)."""
        user, machine = IdentityType.USER, IdentityType.MACHINE
        both = frozenset({user, machine})
        table: dict[int, list[tuple[IdentityType | None, frozenset[IdentityType]]]] = {
            0: [(None, both)],
            1: [(user, frozenset({user}))],
            2: [(machine, frozenset({machine}))],
            3: [(user, both)],
            4: [(machine, both)],
            5: [(user, frozenset({user})), (machine, frozenset({machine}))],
        }
        return table[self.identity]


def proof_factors(kind: str, identity_type: str, factors: frozenset[Factor]) -> frozenset[Factor]:
    """What one inner authentication proved: a certificate is the machine's or the
    user's by the identity type it answered; a password method proves at least the
    password (and the one-time code its check found)."""
    if kind == "eap-tls":
        machine = identity_type == "machine"
        return frozenset({Factor.MACHINE_CERTIFICATE if machine else Factor.CERTIFICATE})
    return factors | {Factor.PASSWORD}


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    INNER = "inner"  # an inner method runs
    BINDING = "binding"  # Crypto-Binding request sent; its response due
    FAILING = "failing"  # Result=Failure sent; the peer's answer due
    DONE = "done"


@dataclass(slots=True)
class _Step:
    """One inner authentication in progress."""

    asked: IdentityType | None
    accepted: frozenset[IdentityType]
    method: InnerMethod
    answered: IdentityType | None = None  # the type the peer's first answer named
    session: AuthenticatorSession | None = None
    user: str = ""  # Basic-Password-Auth: the user of a CHALLENGE round
    challenged: bool = False
    proved: frozenset[str] = frozenset()  # what the password round proved
    proofs: list[InnerProof] = field(default_factory=list)

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.answered or self.asked or IdentityType.USER]


class TeapAuthenticator(TunnelAuthenticatorBase):
    """The server role of TEAP (see the module docstring)."""

    method = TEAP
    _label = "TEAP"

    def __init__(self, ctx: MethodContext, context: TlsContext, policy: TeapPolicy) -> None:
        super().__init__(ctx, TlsEapEngine(context, EapType.TEAP, version=TEAP_VERSION))
        self._policy = policy
        self._state = _State.HANDSHAKE
        self._server_outer = b""
        self._peer_outer = b""
        self._first = True
        self._todo = list(policy.steps())
        self._step: _Step | None = None
        self._proofs: list[InnerProof] = []
        self._chain: KeyChain | None = None
        self._sent_binding: CryptoBinding | None = None
        self._final_sent = False
        self._failure: Outcome | None = None

    @property
    def state(self) -> str:
        return self._state.value

    def start(self) -> bytes:
        authority = Tlv(TlvType.AUTHORITY_ID, self._policy.authority_id, mandatory=False)
        self._server_outer = authority.encode()
        return with_outer(self._engine.start(), self._server_outer)

    def receive(self, type_data: bytes) -> Step:
        if self._first and self._state is _State.HANDSHAKE:
            self._first = False
            try:
                type_data, self._peer_outer = split_outer(type_data)
            except DecodeError as exc:
                return self._end(Outcome.failed("malformed", f"Outer TLVs: {exc.reason}"))
        return super().receive(type_data)

    # -- the tunnel ---------------------------------------------------------------------------

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if self._state is _State.HANDSHAKE:
            if not engine.handshake_done:
                if event.empty and not engine.has_output:
                    return self._end(Outcome.failed("protocol_error", "empty Response"))
                return Reply(engine.next_type_data())
            if event.data:
                return self._end(Outcome.failed("protocol_error", "tunnel data before phase 2"))
            self._chain = KeyChain.start(engine, self._policy.compat)
            return self._send(self._next_step([]))
        if self._state is _State.FAILING:
            assert self._failure is not None
            return self._end(self._failure)
        if not event.data:
            return self._fail("protocol_error", "no TLVs in the tunnel", ErrorCode.UNEXPECTED_TLVS)
        try:
            msg = parse_message(event.data)
        except DecodeError as exc:
            return self._fail("malformed", exc.reason, ErrorCode.UNEXPECTED_TLVS)
        if msg.unsupported:
            names = ", ".join(str(t) for t in msg.unsupported)
            return self._fail(
                "unexpected_tlv", f"mandatory TLVs {names}", ErrorCode.UNEXPECTED_TLVS
            )
        if msg.result is Status.FAILURE:  # the peer gives up: EAP-Failure at once
            if ErrorCode.TUNNEL_COMPROMISE in msg.errors:  # the peer's check of our binding
                why = ("crypto_binding_failed", "the peer reports Error 2001 (tunnel compromise)")
            else:
                why = ("peer_refused_success", "the peer's Result TLV says failure")
            return self._end(self._outcome(False, *why))
        if self._state is _State.BINDING:
            return self._binding_answer(msg)
        return self._inner_message(msg)

    def _send(self, tlvs: list[Tlv]) -> Step:
        return self._write(encode_tlvs(tlvs))

    def _fail(
        self,
        reason: str,
        detail: str,
        error: int | None = ErrorCode.UNSPECIFIED_AUTHENTICATION_FAILURE,
    ) -> Step:
        """Result=Failure (and an Error TLV) in the tunnel; EAP-Failure after the peer's
        answer (RFC 9930 §3.9.3)."""
        self._failure = self._outcome(False, reason, detail)
        self._state = _State.FAILING
        tlvs = [Tlv.status(TlvType.RESULT, Status.FAILURE)]
        if error is not None:
            tlvs.append(Tlv.error(error))
        return self._send(tlvs)

    # -- inner methods ------------------------------------------------------------------------

    def _next_step(self, tlvs: list[Tlv]) -> list[Tlv]:
        """``tlvs`` plus the first message of the next inner authentication."""
        asked, accepted = self._todo.pop(0)
        return self._start_step(tlvs, asked, accepted)

    def _start_step(
        self, tlvs: list[Tlv], asked: IdentityType | None, accepted: frozenset[IdentityType]
    ) -> list[Tlv]:
        machine = asked is IdentityType.MACHINE
        method = self._policy.machine if machine and self._policy.machine else self._policy.user
        step = _Step(asked, accepted, method)
        self._step = step
        self._state = _State.INNER
        if asked is not None:
            tlvs.append(Tlv.identity_type(asked))
        if method.kind == "basic-password":
            tlvs.append(Tlv.basic_password_request())
            return tlvs
        step.session = AuthenticatorSession(method.eap, now=self._ctx.now, random=self._ctx.random)
        first = step.session.start()
        assert isinstance(first, Send)
        self._inner_id = first.packet[1]
        tlvs.append(Tlv.eap_payload(first.packet))
        return tlvs

    def _inner_message(self, msg: TeapMessage) -> Step:
        step = self._step
        assert step is not None
        answered = msg.identity_type
        if step.answered is None and answered is not None and answered is not step.asked:
            if answered not in step.accepted:
                why = f"{_TYPE_NAMES[answered]} answered; the policy needs another"
                return self._step_done(step, None, "identity_type_missing", why)
            other = self._policy.machine if answered is IdentityType.MACHINE else None
            if step.asked is not None or (other is not None and other != step.method):
                # an accepted other type: its own inner method, from the start
                return self._send(self._start_step([], answered, frozenset({answered})))
            if answered is IdentityType.MACHINE and other is None:
                # no machine method: the user's runs, and it proves a user (what the
                # server asked for, not what the peer claims)
                answered = None
        if step.answered is None:
            step.answered = answered or step.asked
        if step.method.kind == "basic-password":
            return self._basic_password(step, msg)
        if msg.eap_payload is None:
            if any(nak[1] == TlvType.EAP_PAYLOAD for nak in msg.naks):
                return self._step_done(step, None, "inner_method_declined", "the peer NAKed it")
            return self._fail("protocol_error", "no EAP-Payload TLV", ErrorCode.UNEXPECTED_TLVS)
        assert step.session is not None
        action = step.session.receive(msg.eap_payload)
        if isinstance(action, Send):
            self._inner_id = action.packet[1]
            return self._send([Tlv.eap_payload(action.packet)])
        if isinstance(action, Discard):
            return self._step_done(step, None, "protocol_error", f"inner: {action.reason}")
        result = action.result
        if not result.success:
            return self._step_done(step, result, result.reason, result.detail)
        return self._step_done(step, result, "ok", "")

    def _basic_password(self, step: _Step, msg: TeapMessage) -> Step:
        """RFC 9930 §3.5.2: Basic-Password-Auth-Resp, checked against the directory; a
        CHALLENGE verdict asks again with its prompt (the one-time code)."""
        answer = msg.basic_password_response
        if answer is None:
            if any(nak[1] == TlvType.BASIC_PASSWORD_AUTH_REQ for nak in msg.naks):
                return self._step_done(step, None, "inner_method_declined", "the peer NAKed it")
            return self._fail(
                "protocol_error", "no Basic-Password-Auth-Resp", ErrorCode.UNEXPECTED_TLVS
            )
        user = answer.username.decode("utf-8", "backslashreplace")
        secret = answer.password.decode("utf-8", "backslashreplace")
        check = step.method.code if step.challenged else step.method.password
        assert check is not None
        if step.challenged and user != step.user:
            return self._step_done(step, None, "protocol_error", "another user in the code round")
        verdict = check(user, secret, self._ctx.now)
        if verdict.reason == CHALLENGE and not step.challenged and step.method.code is not None:
            step.challenged, step.user, step.proved = True, user, verdict.factors
            prompt = (verdict.detail or "One-time code: ").encode()
            return self._send([Tlv.basic_password_request(prompt)])
        proof_user = verdict.user or user
        if not verdict.ok:
            proof = InnerProof(step.type_name, proof_user, "basic-password", False)
            return self._step_done(step, None, verdict.reason, verdict.detail, proof)
        factors = proof_factors(
            "basic-password", step.type_name, frozenset(map(Factor, step.proved | verdict.factors))
        )
        proof = InnerProof(step.type_name, proof_user, "basic-password", True, factors)
        return self._step_done(step, None, "ok", "", proof)

    def _step_done(
        self,
        step: _Step,
        result: SessionResult | None,
        reason: str,
        detail: str,
        proof: InnerProof | None = None,
    ) -> Step:
        """One inner authentication has ended: bind it, go on, or fail."""
        ok = reason == "ok"
        if proof is None:
            name = (
                inner_eap_name(result.method, list(step.method.eap))
                if result is not None and result.method is not None
                else step.method.kind
            )
            user = (result.user or result.identity) if result is not None else ""
            inner_outcome = result.outcome if result is not None else None
            factors = inner_outcome.factors if inner_outcome is not None and ok else frozenset()
            certificate = inner_outcome.certificate if inner_outcome is not None else None
            proof = InnerProof(
                step.type_name,
                user,
                name,
                ok,
                proof_factors(step.method.kind, step.type_name, factors) if ok else frozenset(),
                certificate,
            )
        reused = self._reused(proof) if ok else None
        if reused is not None:
            proof = replace(proof, success=False, factors=frozenset())
            ok, reason, detail = False, "identity_reused", reused
        self._proofs.append(proof)
        if not ok:  # every step is required (TeapPolicy.steps)
            detail = detail or f"{step.type_name} authentication failed"
            return self._fail(reason, detail, ErrorCode.INNER_METHOD_ERROR)
        assert self._chain is not None
        keys = result.keys if result is not None else None
        self._chain.add_inner(keys, mschapv2=result is not None and result.method == MSCHAPV2)
        tlvs = [Tlv.status(TlvType.INTERMEDIATE_RESULT, Status.SUCCESS)]
        return self._send_binding(tlvs, final=not self._todo)

    def _reused(self, proof: InnerProof) -> str | None:
        """Why ``proof`` repeats an earlier identity type's identity or certificate, or
        None: a policy that needs both types (RFC 9930 §3.6) is not satisfied by one
        credential given twice."""
        for earlier in self._proofs:
            if not earlier.success or earlier.identity_type == proof.identity_type:
                continue
            same_name = bool(proof.identity) and (
                proof.identity.casefold() == earlier.identity.casefold()
            )
            same_cert = proof.certificate is not None and proof.certificate == earlier.certificate
            if same_name or same_cert:
                what = "identity" if same_name else "certificate"
                return (
                    f"the {proof.identity_type} {what} is the one the "
                    f"{earlier.identity_type} already proved ({earlier.identity})"
                )
        return None

    def _send_binding(self, tlvs: list[Tlv], *, final: bool) -> Step:
        chain = self._chain
        assert chain is not None
        nonce = bytearray(self._ctx.random.random_bytes(32))
        nonce[-1] &= 0xFE  # RFC 9930 §4.2.13: a request's nonce ends in a 0 bit
        template = CryptoBinding(
            TEAP_VERSION,
            self._engine.peer_version_bits or TEAP_VERSION,
            0,
            CryptoBinding.REQUEST,
            bytes(nonce),
        )
        binding = chain.binding(template, self._server_outer, self._peer_outer)
        self._sent_binding = binding
        self._final_sent = final
        if final:
            tlvs.append(Tlv.status(TlvType.RESULT, Status.SUCCESS))
        tlvs.append(binding.tlv())
        self._state = _State.BINDING
        # The next inner method starts after the peer's answer, not with this message:
        # wpa_supplicant 2.10 would start the next method before it computes CMK[j] and
        # fail the Compound MAC (its "Phase 2 EAP sequence - deinitialize").
        return self._send(tlvs)

    def _binding_answer(self, msg: TeapMessage) -> Step:
        """The peer's Crypto-Binding response (and, with it, the next inner method's first
        answer or the final Result)."""
        sent, chain = self._sent_binding, self._chain
        assert sent is not None and chain is not None
        got = msg.crypto_binding
        if got is None:
            return self._fail(
                "crypto_binding_missing", "no Crypto-Binding TLV", ErrorCode.TUNNEL_COMPROMISE
            )
        problem = self._binding_problem(sent, got) or chain.verify(
            got, self._server_outer, self._peer_outer
        )
        if problem is not None:
            return self._fail("crypto_binding_failed", problem, ErrorCode.TUNNEL_COMPROMISE)
        if msg.intermediate_result is Status.FAILURE:  # the peer's own check of the method
            return self._fail(
                "peer_refused_success",
                "the peer's Intermediate-Result says failure",
                ErrorCode.INNER_METHOD_ERROR,
            )
        if not self._final_sent:
            return self._send(self._next_step([]))
        if msg.result is not Status.SUCCESS:
            return self._fail(
                "protocol_error", "no Result TLV after the final Crypto-Binding", None
            )
        return self._end(self._outcome(True, "ok", ""))

    def _binding_problem(self, sent: CryptoBinding, got: CryptoBinding) -> str | None:
        if got.subtype != CryptoBinding.RESPONSE or got.version != TEAP_VERSION:
            return "Crypto-Binding response with the wrong version or Sub-Type"
        if got.received_version != sent.version:  # RFC 9930 §4.2.13: the version it got
            return "Crypto-Binding response with the wrong Received-Ver"
        if self._policy.require_emsk_binding and sent.has_emsk and not got.has_emsk:
            return "Crypto-Binding response without the EMSK Compound MAC we sent"
        want = sent.nonce[:-1] + bytes([sent.nonce[-1] | 1])
        if not hmac.compare_digest(want, got.nonce):
            return "Crypto-Binding response with another nonce"
        return None

    # -- the outcome ----------------------------------------------------------------------------

    def _outcome(self, success: bool, reason: str, detail: str) -> Outcome:
        proofs = tuple(self._proofs)
        good = [p for p in proofs if p.success]
        users = [p for p in good if p.identity_type == "user"]
        named = users or good or list(proofs)
        identity = named[0].identity if named else None
        factors: frozenset[Factor] = frozenset().union(*(p.factors for p in good))
        attrs = self._tunnel_attributes(
            "+".join(f"{p.identity_type}:{p.method}" for p in proofs) or "none"
        )
        attrs["teap_identity"] = str(self._policy.identity)
        attrs["teap_compat"] = self._policy.compat
        certificate = next((p.certificate for p in users if p.method == "eap-tls"), None)
        keys: KeyMaterial | None = None
        if success:
            assert self._chain is not None
            keys = self._chain.final_keys(self._engine)
            attrs["crypto_binding"] = "emsk" if self._chain.bound_with_emsk else "msk"
        return Outcome(
            success,
            reason,
            keys,
            identity or None,
            detail,
            attrs,
            factors if success else frozenset(),
            certificate,
            proofs,
        )

    def _keys(self) -> KeyMaterial:  # pragma: no cover - TEAP always runs phase 2
        raise RuntimeError("TEAP derives its keys from the inner methods")

    def _tunnel_packet(self, packet: bytes) -> bytes:  # pragma: no cover - see _next_step
        return encode_tlvs([Tlv.eap_payload(packet)])

    def _inner_discarded(self, reason: str) -> Step:  # pragma: no cover - see _inner_message
        return self._fail("protocol_error", f"inner: {reason}", ErrorCode.INNER_METHOD_ERROR)

    def _inner_finished(self, result: SessionResult) -> Step:  # pragma: no cover
        return self._fail(
            "protocol_error", "inner method ended out of turn", ErrorCode.INNER_METHOD_ERROR
        )

    def _end(self, outcome: Outcome) -> Done:
        self._state = _State.DONE
        return super()._end(outcome)


def teap_authenticator(
    config: TlsConfig | TlsContext, policy: TeapPolicy
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`: TEAP with ``policy``.
    The TLS context is built once and shared; TEAP servers usually ask no client
    certificate in phase 1 (give ``TlsConfig(verify_peer=False)``)."""
    context = config if isinstance(config, TlsContext) else TlsContext(config, TlsRole.SERVER)
    return MethodFactory(TEAP, lambda ctx: TeapAuthenticator(ctx, context, policy), "teap", True)
