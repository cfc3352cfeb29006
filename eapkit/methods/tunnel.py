"""The tunnel base: what EAP-TTLS (RFC 5281), PEAPv0 ([MS-PEAP]) and every later tunnel
method (TEAP, RFC 7170) share once TLS is up, both roles.

A tunnel method is a TLS method (:mod:`eapkit.tlsio.method`) whose application data
authenticates the user: phase 2.  What goes in the tunnel is the method's own business
(Diameter AVPs for TTLS, header-less EAP and TLVs for PEAP, TLVs for TEAP); the rest is
the same in each::

    inner EAP session (eapkit.session)      the tunnel method
      Send(packet)         ----------->  _tunnel_packet(packet) -> write -> Reply
                                          (the Identifier of the inner Request is kept)
      Discard(reason)      ----------->  _inner_discarded(reason)
      Finished(result)     ----------->  _inner_finished(result)

- **Write, then check**: TLS may fail while it encrypts what we write (the engine's
  ``failure`` is set, RFC 5216 §2.1.3); a tunnel method never sends a record after that,
  it ends with the TLS failure.
- **Naming**: ``Outcome.attributes["inner_method"]`` is ``eap-<name>`` for an inner EAP
  method (the name its factory gives), a word of the method's own otherwise
  (``pap``, ``mschapv2``).
- **The final outcome**: the tunnel's keys, the inner identity as the user, the TLS,
  inner-method and outer-identity attributes, and the factors the inner method proved
  (DESIGN.md, "Authorization": policy reads factors, not the tunnel's name).

Identities: the outer EAP Identity may be anonymous; the inner one is the user.

Resumption (RFC 5281 §7.5; [MS-PEAP] §3.1.5.10 fast reconnect): a successful login
leaves a :class:`~eapkit.tlsio.resume.ResumeRecord` under the session's ids.  A resumed
handshake skips phase 2 only when the record of the id it resumed says phase 2
succeeded (:meth:`TunnelAuthenticatorBase._resumable`); its outcome carries the
record's user, factors and attributes, so authorization runs again on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from eapkit.methods.base import (
    Done,
    Factor,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Reply,
    Step,
)
from eapkit.packet import MethodId
from eapkit.session import Action, Discard, Send
from eapkit.session import Result as SessionResult
from eapkit.tlsio import SessionCache, TlsContext, TlsEapEngine
from eapkit.tlsio.method import (
    TlsAuthenticatorBase,
    TlsPeerBase,
    tls_attributes,
    tls_failure_outcome,
)
from eapkit.tlsio.resume import ResumeRecord

__all__ = [
    "TunnelAuthenticatorBase",
    "TunnelPeerBase",
    "inner_eap_name",
    "inner_factors",
]


def inner_eap_name(method: MethodId, factories: Sequence[MethodFactory[object]]) -> str:
    """``eap-<name>`` for an inner EAP method: the name its factory gives (eapkit's: the
    catalog's name), else its numbers."""
    for factory in factories:
        if factory.method == method and factory.name:
            return "eap-" + factory.name
    return f"eap-{method.vendor_id}:{method.vendor_type}"


def inner_factors(result: SessionResult | None) -> frozenset[Factor]:
    """The factors the inner EAP method proved (none without its outcome)."""
    if result is None or result.outcome is None:
        return frozenset()
    return result.outcome.factors


class _InnerEap(ABC):
    """Both roles: the actions of an inner EAP session (:mod:`eapkit.session`) become
    tunnel writes or the tunnel's end."""

    def _inner_action(self, action: Action) -> Step:
        """One action of the inner session."""
        if isinstance(action, Send):
            return self._inner_send(action.packet)
        if isinstance(action, Discard):
            return self._inner_discarded(action.reason)
        return self._inner_finished(action.result)

    @abstractmethod
    def _inner_send(self, packet: bytes) -> Step:
        """Send an inner EAP packet through the tunnel."""

    @abstractmethod
    def _tunnel_packet(self, packet: bytes) -> bytes:
        """An inner EAP packet as this method carries it in the tunnel."""

    @abstractmethod
    def _inner_discarded(self, reason: str) -> Step:
        """The inner session could not use the other side's message; in a tunnel the
        other side waits for us, so this ends phase 2."""

    @abstractmethod
    def _inner_finished(self, result: SessionResult) -> Step:
        """The inner conversation has ended."""


class TunnelAuthenticatorBase(TlsAuthenticatorBase, _InnerEap):
    """The server role's share of a tunnel method (see the module docstring).

    A subclass implements ``_message`` (from :class:`TlsAuthenticatorBase`),
    ``_tunnel_packet``, ``_inner_discarded`` and ``_inner_finished``; it runs its inner
    :class:`~eapkit.session.AuthenticatorSession` through ``_inner_action``.
    """

    # hostapd's behaviour (eapkit.tlsio.method): a failed handshake ends in a Failure at
    # once; wpa_supplicant's TTLS/PEAP would never acknowledge our alert.
    _alert_before_failure = False

    def __init__(self, ctx: MethodContext, engine: TlsEapEngine) -> None:
        super().__init__(engine)
        self._ctx = ctx
        self._inner_id = 0  # the Identifier of the inner Request last sent

    def _resumable(self) -> ResumeRecord | None:
        """The record of a resumed session whose phase 2 succeeded, else None."""
        engine = self._engine
        key = engine.resumed_session_key
        if key is None:
            return None
        record = engine.context.resume_records.recall(key, self._ctx.now)
        return record if record is not None and record.phase2 else None

    def _resumed_success(self, record: ResumeRecord) -> Outcome:
        """The outcome of a resumed login: fresh keys, the original user, factors and
        attributes (the TLS ones of this handshake)."""
        attrs = dict(record.attributes)
        attrs.update(self._tunnel_attributes(None))
        attrs["tls_resumed"] = "yes"
        return Outcome(True, "ok", self._keys(), record.identity, "", attrs, record.factors)

    @abstractmethod
    def _keys(self) -> KeyMaterial:
        """The tunnel's keys (no inner method: a resumed session)."""

    def _end(self, outcome: Outcome) -> Done:
        """A clean close keeps a successful session resumable (a failed one is dropped
        from OpenSSL's cache when freed) and records what it proved."""
        engine = self._engine
        engine.close(outcome.success)
        if outcome.success and outcome.identity is not None:
            attrs = {k: v for k, v in outcome.attributes.items() if not k.startswith("tls_")}
            record = ResumeRecord(outcome.identity, outcome.factors, attrs, phase2=True)
            engine.context.resume_records.remember(
                engine.issued_session_keys, record, self._ctx.now
            )
        return super()._end(outcome)

    def _inner_send(self, packet: bytes) -> Step:
        self._inner_id = packet[1]
        return self._write(self._tunnel_packet(packet))

    def _write(self, data: bytes) -> Step:
        """Send ``data`` through the tunnel, unless TLS fails while writing it."""
        engine = self._engine
        engine.write(data)
        if engine.failure is not None:
            return self._end(tls_failure_outcome(engine.failure, engine=engine))
        return Reply(engine.next_type_data())

    def _tunnel_attributes(self, inner_method: str | None) -> dict[str, str]:
        """TLS version and cipher, the outer identity and the inner method's name."""
        attrs = tls_attributes(self._engine)
        attrs["outer_identity"] = self._ctx.identity_text
        if inner_method is not None:
            attrs["inner_method"] = inner_method
        return attrs

    @staticmethod
    def _tunnel_success(
        keys: KeyMaterial,
        user: str | None,
        attributes: Mapping[str, str],
        factors: frozenset[Factor],
    ) -> Outcome:
        """The tunnel's success: its keys, the inner user, what the inner method proved."""
        return Outcome(True, "ok", keys, user, "", attributes, factors)


class TunnelPeerBase(TlsPeerBase, _InnerEap):
    """The peer role's share of a tunnel method (see the module docstring).

    A subclass implements ``_message`` (from :class:`TlsPeerBase`), ``_tunnel_packet``,
    ``_inner_discarded`` and ``_inner_finished``; it runs its inner
    :class:`~eapkit.session.PeerSession` through ``_inner_action``.
    """

    def __init__(
        self,
        ctx: MethodContext,
        context: TlsContext,
        eap_type: int,
        *,
        version: int = 0,
        cache: SessionCache | None = None,
        cache_key: object = None,
    ) -> None:
        self._cache = cache if context.config.resumption else None
        self._cache_key = cache_key
        session = self._cache.get(cache_key) if self._cache is not None else None
        super().__init__(TlsEapEngine(context, eap_type, version=version, session=session))
        self._ctx = ctx

    def _end(self, outcome: Outcome, type_data: bytes, final: bool = True) -> Done:
        """Keep the session of a success for the next authentication; forget a failed
        one (RFC 5216 §2.1.2: a session that failed is not resumed)."""
        engine = self._engine
        if self._cache is not None:
            if outcome.success:
                self._cache.put(self._cache_key, engine.session(), engine)
            else:
                self._cache.forget(self._cache_key)
        if final or not outcome.success:  # MAY_CONT: the server may still ask more
            engine.close(outcome.success)
        return super()._end(outcome, type_data, final)

    def _inner_send(self, packet: bytes) -> Step:
        return self._write(self._tunnel_packet(packet))

    def _write(self, data: bytes) -> Step:
        """Send ``data`` through the tunnel, unless TLS fails while writing it."""
        failed = self._write_failed(data)
        return failed if failed is not None else Reply(self._engine.next_type_data())

    def _write_last(self, data: bytes, outcome: Outcome, final: bool = True) -> Step:
        """Send ``data`` through the tunnel as our last word, then end with ``outcome``
        (see :meth:`TlsPeerBase._send_last`), unless TLS fails while writing it."""
        failed = self._write_failed(data)
        return failed if failed is not None else self._send_last(outcome, final)

    def _write_failed(self, data: bytes) -> Done | None:
        """Write ``data``; the end of the conversation if TLS failed doing so."""
        engine = self._engine
        engine.write(data)
        if engine.failure is not None:
            return self._end(tls_failure_outcome(engine.failure, engine=engine), engine.ack())
        return None

    def _tunnel_attributes(self, inner_method: str) -> dict[str, str]:
        """TLS version and cipher and the inner method's name."""
        attrs = tls_attributes(self._engine)
        attrs["inner_method"] = inner_method
        attrs["tls_resumed"] = "yes" if self._engine.resumed else "no"
        return attrs
