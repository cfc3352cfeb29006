"""PEAPv0 (EAP type 25), both roles, as Windows, wpa_supplicant, hostapd and FreeRADIUS
speak it ([MS-PEAP], draft-kamath-pppext-peapv0-00, draft-josefsson-pppext-eap-tls-eap-10;
RFC 9427 for TLS 1.3).

The story of one conversation::

    S: PEAP Start (version 0)                 P: ClientHello ...
    ... the TLS handshake, as EAP-TLS carries it (eapkit.tlsio) ...
    S: its last handshake flight (TLS 1.2: ChangeCipherSpec, Finished; TLS 1.3: tickets)
    P: an empty PEAP Response (the acknowledgement)
    -- phase 2: one inner EAP conversation inside the tunnel --
    S: [01]                 inner Identity Request, header-less
    P: [01 alice]           inner Identity Response, header-less
    S: [1a 01 ...]          inner EAP-MSCHAPv2 Challenge (or EAP-GTC, or a Nak round)
    ...
    -- the result, an EAP-TLV (type 33) Extensions message with full EAP headers --
    S: [01 id len 21 | Result TLV = Success | Crypto-Binding TLV (Request)]
    P: [02 id len 21 | Result TLV = Success | Crypto-Binding TLV (Response)]
    S: EAP-Success (outside the tunnel), with the keys

Header-less inner messages (PEAPv0's own twist): every inner EAP Request and Response is
sent without its Code, Identifier and Length, only Type and Type-Data; the receiver adds
the header back (hostapd ``eap_peap_build_phase2_req`` / ``eap_peap_process_phase2``,
wpa_supplicant ``eap_peap_decrypt``, FreeRADIUS ``vp2eap`` / ``eap2vp``).  Two messages
keep their header: the Extensions (EAP-TLV, type 33) messages of the result exchange, and
the inner Identity Request FreeRADIUS sends (exactly five bytes ``01 id 00 05 01``), which
the peer recognises as wpa_supplicant does.

The inner conversation runs through :class:`eapkit.session.AuthenticatorSession` and
:class:`eapkit.session.PeerSession`, so inner methods are ordinary eapkit methods: the
server offers them in order (by default EAP-MSCHAPv2, then EAP-GTC) and the peer may Nak.
PEAPv0 sends no inner EAP-Success/Failure: the Result TLV replaces it, and the peer
acknowledges it with a Result TLV of its own ([MS-PEAP] §2.2.8.1.1, §3.2.5.4).  A Result
"failure" always ends in Failure; the peer answers "success" only when its inner method
finished and would accept a Success (RFC 4137 ``decision``).  Extensions TLVs that are not
mandatory (vendor TLVs such as Microsoft's SoH) are skipped; a mandatory unknown TLV ends
the conversation.

The server sends a Crypto-Binding Request with a Result Success (policy ``optional``, as
hostapd); a peer that answers it proves it holds the same tunnel and inner keys, and both
then use the compound keys (:mod:`eapkit.methods.peap_crypto_binding`, which tells the
derivations).  Without crypto-binding the keys are the tunnel's.

The outer identity may be anonymous: the result names the inner identity as the user,
and ``Outcome.attributes`` says which inner method ran (``inner_method``), the outer
identity, the TLS version and whether crypto-binding was used.

PEAPv1 (draft-josefsson-pppext-eap-tls-eap-05, hostapd ``eap_server_peap.c`` and
wpa_supplicant ``eap_peap.c``): the server offers its highest version in the Start
message's flags and the peer answers with the lower of the two (the version bits of
every later message carry it).  In version 1 the inner EAP messages keep their headers,
there is no Result TLV and no crypto-binding: the server ends phase 2 with an EAP
Success or Failure *inside* the tunnel and the peer acknowledges it with an empty PEAP
Response (wpa_supplicant's default), after which the outer Success or Failure follows.
The TLS 1.2 keys use the label ``"client EAP encryption"``, or ``"client PEAP
encryption"`` when both sides are set to the new label (wpa_supplicant ``peaplabel=1``;
hostapd 2.10 always uses the old one).

Fast reconnect ([MS-PEAP] §3.1.5.10): a resumed session whose record says phase 2
succeeded goes straight to the result (v0: the Result TLV; v1: the tunnelled Success;
see :mod:`eapkit.methods.tunnel`).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from eapkit.eap_tlv import CryptoBinding, Result, Tlv, TlvType
from eapkit.errors import DecodeError
from eapkit.methods.base import (
    Authenticator,
    Done,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.peap_crypto_binding import (
    bound_keys,
    compound_keys,
    compound_mac,
    inner_session_key,
    tunnel_key,
)
from eapkit.methods.peap_framing import HEADER as _HEADER
from eapkit.methods.peap_framing import extensions as _extensions
from eapkit.methods.peap_framing import is_full_request as _is_full_request
from eapkit.methods.peap_framing import is_full_response as _is_full_response
from eapkit.methods.peap_framing import parse_extensions as _parse_extensions
from eapkit.methods.peap_framing import strip_header as _strip_header
from eapkit.methods.peap_framing import version_bits as _version_bits
from eapkit.methods.peap_framing import with_header as _with_header
from eapkit.methods.tunnel import (
    TunnelAuthenticatorBase,
    TunnelPeerBase,
    inner_eap_name,
    inner_factors,
)
from eapkit.packet import Code, EapType, MethodId
from eapkit.session import (
    AuthenticatorSession,
    Finished,
    PeerSession,
    SessionConfig,
)
from eapkit.session import Result as SessionResult
from eapkit.tlsio import (
    Failed,
    Message,
    SessionCache,
    TlsConfig,
    TlsContext,
    TlsEapEngine,
    TlsRole,
    derive_keys,
)
from eapkit.tlsio.resume import ResumeRecord

__all__ = [
    "PEAP",
    "PEAP_VERSION",
    "PEAP_VERSION_1",
    "CryptoBindingPolicy",
    "PeapAuthenticator",
    "PeapPeer",
    "peap_authenticator",
    "peap_peer",
    "tunnel_key",
]

PEAP = MethodId.legacy(EapType.PEAP)
PEAP_VERSION = 0  # the version with the Result TLV and crypto-binding ([MS-PEAP])
PEAP_VERSION_1 = 1  # draft-josefsson-pppext-eap-tls-eap-05
PEAP_V1_NEW_LABEL = b"client PEAP encryption"
_TYPE_CODE = bytes([EapType.PEAP])

CryptoBindingPolicy = Literal["off", "optional", "required"]
"""``off``: never send or answer one; ``optional``: use it when the other side does (the
server sends it); ``required``: fail without it."""


# -- PEAPv1 keys, names ---------------------------------------------------------------------


def _v1_keys(engine: TlsEapEngine, new_label: bool) -> KeyMaterial:
    """PEAPv1 keys: TLS 1.2 with the old or the new label; TLS 1.3 as RFC 9427."""
    return derive_keys(engine, PEAP_V1_NEW_LABEL) if new_label else derive_keys(engine)


def _inner_method_name(method: MethodId | None, factories: Sequence[MethodFactory[object]]) -> str:
    return inner_eap_name(method, factories) if method is not None else "none"  # no method ran


# -- authenticator ---------------------------------------------------------------------------


class _AuthState(enum.Enum):
    HANDSHAKE = "handshake"
    WAIT_ACK = "wait_ack"  # our last handshake flight sent; the peer acknowledges
    PHASE2 = "phase2"
    RESULT = "result"  # Result TLV sent; the peer's Result TLV due
    ALERT = "alert"  # our TLS alert sent; its acknowledgement due
    DONE = "done"


class PeapAuthenticator(TunnelAuthenticatorBase):
    """The server role of PEAPv0 (see the module docstring)."""

    method = PEAP
    _label = "PEAP"

    def __init__(
        self,
        ctx: MethodContext,
        context: TlsContext,
        inner: Sequence[MethodFactory[Authenticator]],
        *,
        crypto_binding: CryptoBindingPolicy = "optional",
        inner_config: SessionConfig | None = None,
        max_version: int = PEAP_VERSION_1,
        new_label: bool = False,
    ) -> None:
        super().__init__(ctx, TlsEapEngine(context, EapType.PEAP, version=max_version))
        self._version: int | None = None  # negotiated with the peer's first Response
        self._max_version = max_version
        self._new_label = new_label
        self._inner_methods = tuple(inner)
        self._inner = AuthenticatorSession(
            inner, config=inner_config or SessionConfig(), now=ctx.now, random=ctx.random
        )
        self._binding_policy = crypto_binding
        self._state = _AuthState.HANDSHAKE
        self._inner_result: SessionResult | None = None
        self._tlv_id = 0
        self._sent_success = False
        self._binding_sent: CryptoBinding | None = None
        self._ipmk = b""
        self._cmk = b""
        self._resumed: ResumeRecord | None = None  # fast reconnect: phase 2 skipped

    @property
    def state(self) -> str:
        return self._state.value

    def _sending_alert(self) -> None:
        self._state = _AuthState.ALERT

    @property
    def version(self) -> int | None:
        """The PEAP version in use, once the peer has answered the Start."""
        return self._version

    def receive(self, type_data: bytes) -> Step:
        if self._version is None and (bits := _version_bits(type_data)) is not None:
            # The peer picks the lower version (draft-josefsson-...-05 §2.1.1); every
            # later message of ours carries it.
            self._version = min(bits, self._max_version)
            self._engine.version_bits = self._version
        return super().receive(type_data)

    def light(self, type_data: bytes, methods: frozenset[MethodId]) -> bool:
        """Whether :meth:`receive` of ``type_data`` reaches no check but those of
        ``methods`` (:meth:`eapkit.session.AuthenticatorSession.light`, issue 21).  The
        handshake cannot: tunnel data before phase 2 ends the conversation.  Phase 2 can
        when the inner session rests among ``methods``
        (:meth:`~eapkit.session.AuthenticatorSession.rests_among`): its Response is
        encrypted, so the inner method's state decides, not what the peer sent.  The
        Result TLV exchange checks only the crypto binding."""
        state = self._state
        if state is _AuthState.PHASE2:
            return self._inner.rests_among(methods)
        return state is not _AuthState.DONE

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if self._state is _AuthState.RESULT and self._version == PEAP_VERSION_1:
            return self._v1_result()
        if self._state is _AuthState.HANDSHAKE:
            if not engine.handshake_done:
                if event.empty and not engine.has_output:
                    return self._end(Outcome.failed("protocol_error", "empty Response"))
                return Reply(engine.next_type_data())
            if event.data:
                return self._end(Outcome.failed("protocol_error", "tunnel data before phase 2"))
            if engine.has_output:
                self._state = _AuthState.WAIT_ACK
                return Reply(engine.next_type_data())
            return self._start_phase2()
        if self._state is _AuthState.WAIT_ACK:
            if not event.empty:
                return self._end(
                    Outcome.failed("protocol_error", "expected the acknowledgement of Finished")
                )
            return self._start_phase2()
        if not event.data:
            return self._end(Outcome.failed("protocol_error", "no inner message in the tunnel"))
        if self._state is _AuthState.PHASE2:
            return self._phase2(event.data)
        return self._result(event.data)

    # -- phase 2 -----------------------------------------------------------------------------

    def _start_phase2(self) -> Step:
        record = self._resumable() if self._engine.resumed else None
        if record is not None:
            # [MS-PEAP] §3.1.5.10 fast reconnect: straight to the Result TLV (no inner
            # method, so no crypto binding: there is no inner key to bind)
            self._resumed = record
            self._state = _AuthState.RESULT
            self._sent_success = True
            if self._version == PEAP_VERSION_1:  # hostapd: SUCCESS_REQ at once
                return self._write(_HEADER.pack(Code.SUCCESS, self._inner_id, 4))
            self._tlv_id = (self._inner_id + 1) & 0xFF
            return self._write(
                _extensions(Code.REQUEST, self._tlv_id, [Tlv.result(Result.SUCCESS)])
            )
        self._state = _AuthState.PHASE2
        return self._inner_action(self._inner.start())

    def _keys(self) -> KeyMaterial:
        if self._version == PEAP_VERSION_1:
            return _v1_keys(self._engine, self._new_label)
        return derive_keys(self._engine)

    def _resumed_result(self, data: bytes, record: ResumeRecord) -> Step:
        """The peer's Result TLV after fast reconnect."""
        if not _is_full_response(data, self._tlv_id):
            return self._end(self._refused("protocol_error", "expected an Extensions Response"))
        try:
            tlvs = _parse_extensions(data[5:])
        except DecodeError as exc:
            return self._end(self._refused("malformed", str(exc)))
        if tlvs.result != Result.SUCCESS:
            return self._end(self._refused("peer_refused_success", "peer's Result TLV"))
        outcome = self._resumed_success(record)
        attrs = dict(outcome.attributes)
        attrs["crypto_binding"] = "no"
        return self._end(replace(outcome, attributes=attrs))

    def _phase2(self, data: bytes) -> Step:
        if self._version == PEAP_VERSION_1:  # whole inner packets
            return self._inner_action(self._inner.receive(data))
        packet = _with_header(Code.RESPONSE, self._inner_id, data)
        if packet is None:
            return self._end(Outcome.failed("malformed", "inner message too long"))
        return self._inner_action(self._inner.receive(packet))

    def _tunnel_packet(self, packet: bytes) -> bytes:
        return packet if self._version == PEAP_VERSION_1 else _strip_header(packet)

    def _inner_discarded(self, reason: str) -> Step:
        failed = SessionResult(False, "protocol_error", detail=f"inner: {reason}")
        return self._send_result(failed)

    def _inner_finished(self, result: SessionResult) -> Step:
        return self._send_result(result)

    def _send_result(self, inner: SessionResult) -> Step:
        self._inner_result = inner
        self._state = _AuthState.RESULT
        if self._version == PEAP_VERSION_1:  # an EAP Success/Failure inside the tunnel
            self._sent_success = inner.success
            code = Code.SUCCESS if inner.success else Code.FAILURE
            return self._write(_HEADER.pack(code, self._inner_id, 4))
        self._tlv_id = (self._inner_id + 1) & 0xFF
        self._sent_success = inner.success
        tlvs = [Tlv.result(Result.SUCCESS if inner.success else Result.FAILURE)]
        if inner.success and self._binding_policy != "off":
            tk = tunnel_key(self._engine)
            self._ipmk, self._cmk = compound_keys(tk, inner_session_key(inner))
            request = CryptoBinding(
                PEAP_VERSION,
                self._engine.peer_version_bits or 0,
                CryptoBinding.REQUEST,
                self._ctx.random.random_bytes(32),
                bytes(20),
            )
            request = replace(request, compound_mac=compound_mac(self._cmk, request))
            self._binding_sent = request
            tlvs.append(Tlv(TlvType.CRYPTO_BINDING, request.encode(), mandatory=False))
        return self._write(_extensions(Code.REQUEST, self._tlv_id, tlvs))

    # -- the result exchange ----------------------------------------------------------------

    def _result(self, data: bytes) -> Step:
        if self._resumed is not None:
            return self._resumed_result(data, self._resumed)
        inner = self._inner_result
        assert inner is not None
        if not self._sent_success:  # whatever the peer says, a Failure it is
            return self._end(self._inner_failure(inner))
        if not _is_full_response(data, self._tlv_id):
            return self._end(self._refused("protocol_error", "expected an Extensions Response"))
        try:
            tlvs = _parse_extensions(data[5:])
        except DecodeError as exc:
            return self._end(self._refused("malformed", str(exc)))
        if tlvs.result != Result.SUCCESS:
            return self._end(self._refused("peer_refused_success", "peer's Result TLV"))
        binding_used = False
        if tlvs.binding is not None and self._binding_sent is not None:
            problem = self._check_binding(tlvs.binding, tlvs.binding_mandatory)
            if problem is not None:
                return self._end(self._refused("crypto_binding_failed", problem))
            binding_used = True
        elif self._binding_policy == "required":
            return self._end(self._refused("crypto_binding_missing", "no Crypto-Binding TLV"))
        return self._end(self._success(inner, binding_used))

    def _v1_result(self) -> Step:
        """PEAPv1: the peer's answer to our tunnelled Success or Failure (an empty
        acknowledgement, or an EAP Success inside the tunnel) ends the conversation as
        hostapd's ``SUCCESS_REQ``/``FAILURE_REQ`` states do."""
        if self._resumed is not None:  # fast reconnect
            outcome = self._resumed_success(self._resumed)
            attrs = {**outcome.attributes, "crypto_binding": "no", "peap_version": "1"}
            return self._end(replace(outcome, attributes=attrs))
        inner = self._inner_result
        assert inner is not None
        if not self._sent_success:
            return self._end(self._inner_failure(inner))
        keys = _v1_keys(self._engine, self._new_label)
        attrs = self._attributes(inner, False)
        return self._end(
            self._tunnel_success(keys, inner.user or None, attrs, inner_factors(inner))
        )

    def _check_binding(self, got: CryptoBinding, mandatory: bool) -> str | None:
        sent = self._binding_sent
        assert sent is not None
        if got.version != PEAP_VERSION or got.subtype != CryptoBinding.RESPONSE:
            return "Crypto-Binding Response with the wrong version or subtype"
        if not hmac.compare_digest(got.nonce, sent.nonce):
            return "Crypto-Binding Response with another nonce"
        if not hmac.compare_digest(got.compound_mac, compound_mac(self._cmk, got, mandatory)):
            return "Compound MAC does not verify"
        return None

    def _success(self, inner: SessionResult, binding_used: bool) -> Outcome:
        engine = self._engine
        tunnel = derive_keys(engine)
        keys = bound_keys(tunnel, self._ipmk) if binding_used else tunnel
        attrs = self._attributes(inner, binding_used)
        return self._tunnel_success(keys, inner.user or None, attrs, inner_factors(inner))

    def _attributes(self, inner: SessionResult | None, binding_used: bool) -> dict[str, str]:
        name = _inner_method_name(inner.method, self._inner_methods) if inner is not None else None
        attrs = self._tunnel_attributes(name)
        attrs["crypto_binding"] = "yes" if binding_used else "no"
        attrs["peap_version"] = str(self._version or 0)
        if inner is not None:
            attrs["inner_identity"] = inner.identity
        return attrs

    def _inner_failure(self, inner: SessionResult) -> Outcome:
        return Outcome(
            False,
            inner.reason,
            None,
            inner.user or None,
            inner.detail,
            self._attributes(inner, False),
        )

    def _refused(self, reason: str, detail: str) -> Outcome:
        inner = self._inner_result
        user = inner.user if inner is not None and inner.user else None
        return Outcome(False, reason, None, user, detail, self._attributes(inner, False))

    def _tls_failed(self, failure: Failed) -> Outcome:
        outcome = super()._tls_failed(failure)
        if self._state in (_AuthState.PHASE2, _AuthState.RESULT, _AuthState.ALERT):
            attrs = dict(outcome.attributes)
            attrs["phase"] = "2" if self._engine.handshake_done else "1"
            return replace(outcome, attributes=attrs)
        return outcome

    def _end(self, outcome: Outcome) -> Done:
        self._state = _AuthState.DONE
        return super()._end(outcome)


# -- peer --------------------------------------------------------------------------------------


class PeapPeer(TunnelPeerBase):
    """The peer role of PEAPv0 (see the module docstring)."""

    method = PEAP
    _label = "PEAP"

    def __init__(
        self,
        ctx: MethodContext,
        context: TlsContext,
        inner: Sequence[MethodFactory[Peer]],
        identity: bytes,
        *,
        crypto_binding: CryptoBindingPolicy = "optional",
        inner_config: SessionConfig | None = None,
        max_version: int = PEAP_VERSION,
        new_label: bool = False,
        cache: SessionCache | None = None,
    ) -> None:
        key = (context.config.server_name or "", ctx.identity, identity)
        super().__init__(
            ctx, context, EapType.PEAP, version=max_version, cache=cache, cache_key=key
        )
        self._version: int | None = None  # the lower of the server's and ours
        self._max_version = max_version
        self._new_label = new_label
        self._inner_methods = tuple(inner)
        self._inner = PeerSession(
            inner,
            identity,
            config=inner_config or SessionConfig(),
            now=ctx.now,
            random=ctx.random,
        )
        self._binding_policy = crypto_binding
        self._inner_id: int | None = None

    @property
    def version(self) -> int | None:
        """The PEAP version in use, once the server's Start has arrived."""
        return self._version

    def receive(self, type_data: bytes) -> Step:
        if self._version is None and (bits := _version_bits(type_data)) is not None:
            self._version = min(bits, self._max_version)  # our answer carries our pick
            self._engine.version_bits = self._version
        return super().receive(type_data)

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if self._final is not None:
            return self._end(
                Outcome.failed("protocol_error", "more after the result"), engine.ack()
            )
        commitment = engine.is_tls13 and event.data == b"\x00"
        if not engine.handshake_done or not event.data or commitment:
            # Handshake flights, tickets, empty Requests, a TLS 1.3 commitment (0x00,
            # FreeRADIUS after a resumed handshake): our next flight or an ACK.
            return Reply(engine.next_type_data())
        return self._tunnel_data(event.data)

    def _tunnel_data(self, data: bytes) -> Step:
        if _is_full_request(data, EapType.TLV):
            return self._extensions(data)
        if self._version == PEAP_VERSION_1:
            return self._v1_tunnel_data(data)
        if len(data) == 5 and _is_full_request(data, EapType.IDENTITY):
            packet = data  # FreeRADIUS sends the inner Identity Request whole
        else:
            identifier = ((self._inner_id if self._inner_id is not None else -1) + 1) & 0xFF
            full = _with_header(Code.REQUEST, identifier, data)
            if full is None:
                return self._send_last(Outcome.failed("malformed", "inner message too long"))
            packet = full
        self._inner_id = packet[1]
        return self._inner_action(self._inner.receive(packet))

    def _tunnel_packet(self, packet: bytes) -> bytes:
        return packet if self._version == PEAP_VERSION_1 else _strip_header(packet)

    def _v1_tunnel_data(self, data: bytes) -> Step:
        """PEAPv1: whole inner packets; the server's EAP Success or Failure inside the
        tunnel ends phase 2, acknowledged with an empty Response (as wpa_supplicant)."""
        if len(data) < 4 or data[0] not in (Code.REQUEST, Code.SUCCESS, Code.FAILURE):
            return self._send_last(Outcome.failed("malformed", "not an inner EAP Request"))
        if data[0] == Code.REQUEST:
            self._inner_id = data[1]
            return self._inner_action(self._inner.receive(data))
        # hostapd gives the tunnelled Success the outer Identifier: the inner session
        # hears it under the Identifier of its own last Request (as wpa_supplicant).
        inner = self._finish_inner(data[0] == Code.SUCCESS)
        keys = _v1_keys(self._engine, self._new_label)
        if inner is None and self._engine.resumed and data[0] == Code.SUCCESS:
            # fast reconnect: the server skipped phase 2
            attrs = {**self._tunnel_attributes("none"), "crypto_binding": "no"}
            attrs["peap_version"] = str(PEAP_VERSION_1)
            return self._send_last(Outcome(True, "ok", keys, None, "", attrs))
        if inner is None or not inner.success:
            return self._send_last(self._inner_failed(inner))
        attrs = self._tunnel_attributes(_inner_method_name(inner.method, self._inner_methods))
        attrs["crypto_binding"] = "no"
        attrs["peap_version"] = str(PEAP_VERSION_1)
        return self._send_last(Outcome(True, "ok", keys, inner.identity or None, "", attrs))

    def _inner_discarded(self, reason: str) -> Step:
        return self._send_last(Outcome.failed("protocol_error", f"inner: {reason}"))

    def _inner_finished(self, result: SessionResult) -> Step:
        return self._send_last(self._inner_outcome(result))

    def _extensions(self, data: bytes) -> Step:
        identifier = data[1]
        try:
            tlvs = _parse_extensions(data[5:])
        except DecodeError as exc:
            return self._answer(identifier, False, None, Outcome.failed("malformed", str(exc)))
        if tlvs.result is None:
            # Only TLVs we may ignore (vendor TLVs, SoH): acknowledge with none.
            return self._write(_extensions(Code.RESPONSE, identifier, []))
        inner = self._finish_inner(tlvs.result == Result.SUCCESS)
        if tlvs.result != Result.SUCCESS:
            return self._answer(identifier, False, None, self._inner_failed(inner))
        if inner is None and self._engine.resumed and tlvs.binding is None:
            # [MS-PEAP] §3.1.5.10 fast reconnect: the server skipped phase 2
            attrs = {**self._tunnel_attributes("none"), "crypto_binding": "no"}
            outcome = Outcome(True, "ok", derive_keys(self._engine), None, "", attrs)
            return self._answer(identifier, True, None, outcome)
        if inner is None and self._engine.resumed and tlvs.binding is not None:
            return self._fast_reconnect_bound(identifier, tlvs.binding, tlvs.binding_mandatory)
        if inner is None or not inner.success:
            reason = inner.reason if inner is not None else "no_inner_method"
            detail = "the server sent Success before the inner method succeeded"
            return self._answer(identifier, False, None, Outcome.failed(reason, detail))
        if tlvs.binding is None or self._binding_policy == "off":
            if self._binding_policy == "required":
                return self._answer(
                    identifier,
                    False,
                    None,
                    Outcome.failed("crypto_binding_missing", "no Crypto-Binding TLV"),
                )
            return self._answer(identifier, True, None, self._success(inner, None))
        verified = self._verify_binding(
            tlvs.binding, tlvs.binding_mandatory, inner_session_key(inner)
        )
        if verified is None:
            return self._answer(
                identifier,
                False,
                None,
                Outcome.failed("crypto_binding_failed", "Compound MAC does not verify"),
            )
        ipmk, cmk, export_size = verified
        response = CryptoBinding(
            PEAP_VERSION, PEAP_VERSION, CryptoBinding.RESPONSE, tlvs.binding.nonce, bytes(20)
        )
        response = replace(response, compound_mac=compound_mac(cmk, response))
        outcome = self._success(inner, ipmk)
        if self._engine.is_tls13:
            attrs = {**outcome.attributes, "tk_export_bytes": str(export_size)}
            outcome = replace(outcome, attributes=attrs)
        return self._answer(identifier, True, response, outcome)

    def _fast_reconnect_bound(
        self, identifier: int, binding: CryptoBinding, mandatory: bool
    ) -> Step:
        """Fast reconnect with a Crypto-Binding TLV (hostapd): no inner method ran, so
        IPMK | CMK = TK (hostapd and wpa_supplicant ``eap_peap_derive_cmk``)."""
        verified = self._verify_binding(binding, mandatory, b"", fast_reconnect=True)
        if verified is None:
            failed = Outcome.failed("crypto_binding_failed", "Compound MAC does not verify")
            return self._answer(identifier, False, None, failed)
        ipmk, cmk, _ = verified
        response = CryptoBinding(
            PEAP_VERSION, PEAP_VERSION, CryptoBinding.RESPONSE, binding.nonce, bytes(20)
        )
        response = replace(response, compound_mac=compound_mac(cmk, response))
        attrs = {**self._tunnel_attributes("none"), "crypto_binding": "yes"}
        keys = bound_keys(derive_keys(self._engine), ipmk)
        return self._answer(identifier, True, response, Outcome(True, "ok", keys, None, "", attrs))

    def _verify_binding(
        self, request: CryptoBinding, mandatory: bool, isk: bytes, *, fast_reconnect: bool = False
    ) -> tuple[bytes, bytes, int] | None:
        if request.version != PEAP_VERSION or request.subtype != CryptoBinding.REQUEST:
            return None
        sizes = (128, 64) if self._engine.is_tls13 else (128,)
        for size in sizes:  # 64: hostapd 2.10's TLS 1.3 server (module docstring)
            tk = tunnel_key(self._engine, size)
            ipmk, cmk = (tk[:40], tk[40:60]) if fast_reconnect else compound_keys(tk, isk)
            expected = compound_mac(cmk, request, mandatory)
            if hmac.compare_digest(expected, request.compound_mac):
                return ipmk, cmk, size
        return None

    def _finish_inner(self, success: bool) -> SessionResult | None:
        """Tell the inner session the outcome the Result TLV carries, as an EAP Success or
        Failure would (PEAPv0 sends neither inside the tunnel)."""
        if self._inner.finished:
            return self._inner.result
        if self._inner_id is None:
            return None
        code = Code.SUCCESS if success else Code.FAILURE
        action = self._inner.receive(_HEADER.pack(code, self._inner_id, 4))
        return action.result if isinstance(action, Finished) else None

    def _inner_failed(self, inner: SessionResult | None) -> Outcome:
        if inner is not None and inner.reason not in ("eap_failure", "ok"):
            return Outcome.failed(inner.reason, inner.detail)
        return Outcome.failed("eap_failure", "the server's Result TLV says failure")

    def _inner_outcome(self, inner: SessionResult) -> Outcome:
        return Outcome.failed(inner.reason, f"inner conversation ended: {inner.detail}")

    def _success(self, inner: SessionResult, ipmk: bytes | None) -> Outcome:
        tunnel = derive_keys(self._engine)
        keys = bound_keys(tunnel, ipmk) if ipmk is not None else tunnel
        attrs = self._tunnel_attributes(_inner_method_name(inner.method, self._inner_methods))
        attrs["crypto_binding"] = "yes" if ipmk is not None else "no"
        attrs["peap_version"] = str(PEAP_VERSION)
        return Outcome(True, "ok", keys, inner.identity or None, "", attrs)

    def _answer(
        self,
        identifier: int,
        success: bool,
        binding: CryptoBinding | None,
        outcome: Outcome,
    ) -> Step:
        tlvs = [Tlv.result(Result.SUCCESS if success else Result.FAILURE)]
        if binding is not None:
            tlvs.append(Tlv(TlvType.CRYPTO_BINDING, binding.encode(), mandatory=False))
        return self._write_last(_extensions(Code.RESPONSE, identifier, tlvs), outcome)


# -- factories ---------------------------------------------------------------------------------


def peap_authenticator(
    config: TlsConfig | TlsContext,
    inner: Sequence[MethodFactory[Authenticator]],
    *,
    crypto_binding: CryptoBindingPolicy = "optional",
    inner_config: SessionConfig | None = None,
    max_version: int = PEAP_VERSION_1,
    new_label: bool = False,
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`: PEAP offering the
    ``inner`` EAP methods in order, and versions up to ``max_version`` (1, as hostapd:
    the peer picks; Windows and FreeRADIUS-era peers pick 0).  ``new_label``: PEAPv1
    keys with "client PEAP encryption".  The TLS context is built once and shared.  PEAP
    servers usually ask no client certificate: give ``TlsConfig(verify_peer=False)``."""
    if max_version not in (PEAP_VERSION, PEAP_VERSION_1):
        raise ValueError(f"PEAP version {max_version!r}")
    if not inner:
        raise ValueError("PEAP needs at least one inner method")
    if crypto_binding not in ("off", "optional", "required"):
        raise ValueError(f"crypto_binding {crypto_binding!r}")
    context = config if isinstance(config, TlsContext) else TlsContext(config, TlsRole.SERVER)
    methods = list(inner)

    def create(ctx: MethodContext) -> Authenticator:
        return PeapAuthenticator(
            ctx,
            context,
            methods,
            crypto_binding=crypto_binding,
            inner_config=inner_config,
            max_version=max_version,
            new_label=new_label,
        )

    return MethodFactory(PEAP, create, "peap", pure_start=True)


def peap_peer(
    config: TlsConfig,
    inner: Sequence[MethodFactory[Peer]],
    identity: str | bytes,
    *,
    crypto_binding: CryptoBindingPolicy = "optional",
    inner_config: SessionConfig | None = None,
    max_version: int = PEAP_VERSION,
    new_label: bool = False,
    cache: SessionCache | None = None,
) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`: PEAP with the ``inner`` EAP
    methods and the inner ``identity`` (the outer one is the session's, e.g.
    ``anonymous@realm``), answering with version ``min(server's, max_version)``;
    ``new_label`` is wpa_supplicant's ``peaplabel=1`` (PEAPv1 keys).  With
    ``config.resumption`` (the default) the factory keeps the sessions (in ``cache``, or
    its own) and offers them again: fast reconnect."""
    if max_version not in (PEAP_VERSION, PEAP_VERSION_1):
        raise ValueError(f"PEAP version {max_version!r}")
    if not inner:
        raise ValueError("PEAP needs at least one inner method")
    if crypto_binding not in ("off", "optional", "required"):
        raise ValueError(f"crypto_binding {crypto_binding!r}")
    context = TlsContext(config, TlsRole.PEER)
    if cache is None and config.resumption:
        cache = SessionCache()
    methods = list(inner)
    inner_identity = identity.encode() if isinstance(identity, str) else bytes(identity)

    def create(ctx: MethodContext) -> Peer:
        return PeapPeer(
            ctx,
            context,
            methods,
            inner_identity,
            crypto_binding=crypto_binding,
            inner_config=inner_config,
            max_version=max_version,
            new_label=new_label,
            cache=cache,
        )

    return MethodFactory(PEAP, create, "peap")
