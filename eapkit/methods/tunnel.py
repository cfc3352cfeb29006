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
from eapkit.tlsio import TlsEapEngine
from eapkit.tlsio.method import (
    TlsAuthenticatorBase,
    TlsPeerBase,
    tls_attributes,
    tls_failure_outcome,
)

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

    def __init__(self, ctx: MethodContext, engine: TlsEapEngine) -> None:
        super().__init__(engine)
        self._ctx = ctx

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
        return attrs
