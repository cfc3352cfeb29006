"""The method side of TLS over EAP, shared by EAP-TLS, EAP-TTLS and PEAP.

:class:`~eapkit.tlsio.engine.TlsEapEngine` turns Type-Data into events; every method
built on it handles the framing events the same way in each role, and only a whole
:class:`~eapkit.tlsio.engine.Message` is its own business:

Authenticator (:class:`TlsAuthenticatorBase`)
    ``Continue`` is sent as it is.  ``Failed``: EAP-TLS sends our TLS alert (if the
    engine has output) and awaits the peer's acknowledgement before the Failure (RFC 9190
    §2.1.3, RFC 5216 §2.1.3); wpa_supplicant's EAP-TLS acknowledges it.  The tunnel
    methods (``_alert_before_failure = False``) end with the Failure at once, as hostapd's
    ``eap_server_ttls.c`` / ``eap_server_peap.c`` do on a phase-1 error:
    wpa_supplicant's TTLS and PEAP never acknowledge a server alert, so waiting for it
    would leave the NAS without an answer.  Either way the Failure carries the TLS
    failure's reason (the alert's name) and the alert and TLS version as attributes.

Peer (:class:`TlsPeerBase`)
    ``Continue`` is sent, or, once an ending is decided and our last fragment has been
    acknowledged, the conversation ends with it.  ``Failed`` sends what is left (our
    alert) and ends with the TLS failure's reason (RFC 5216 §2.1.3: the peer answers an
    alert and the server ends with a Failure).

A subclass implements ``_message`` and may refine ``_tls_failed`` (the outcome of a TLS
failure) and ``_end``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import ClassVar

from eapkit.errors import DecodeError
from eapkit.methods.base import Done, Outcome, Reply, Step
from eapkit.tlsio.engine import Continue, Failed, Message, TlsEapEngine
from eapkit.tlsio.framing import Fragment

__all__ = ["TlsAuthenticatorBase", "TlsPeerBase", "tls_attributes", "tls_failure_outcome"]


def tls_attributes(engine: TlsEapEngine) -> dict[str, str]:
    """``Outcome.attributes`` every TLS method reports: version and cipher."""
    attrs: dict[str, str] = {}
    if engine.version is not None:
        attrs["tls_version"] = engine.version.label
    if engine.cipher:
        attrs["tls_cipher"] = engine.cipher
    return attrs


def tls_failure_outcome(
    failure: Failed, identity: str | None = None, engine: TlsEapEngine | None = None
) -> Outcome:
    """The Failure a TLS failure ends in: its reason (an alert's name or a framing
    reason) and detail, the alerts sent or received and, when ``engine`` is given, the
    TLS version and cipher as far as the handshake got, as attributes."""
    attrs: dict[str, str] = tls_attributes(engine) if engine is not None else {}
    if failure.alert_sent:
        attrs["tls_alert_sent"] = failure.alert_sent
    if failure.alert_received:
        attrs["tls_alert_received"] = failure.alert_received
    return Outcome(False, failure.reason, None, identity, failure.detail, attrs)


class TlsAuthenticatorBase(ABC):
    """The server role's handling of the engine's events (see the module docstring)."""

    _label: ClassVar[str]
    """The method's name in "... has ended"."""
    _alert_before_failure: ClassVar[bool] = True
    """Send our TLS alert and await its acknowledgement before the Failure."""

    def __init__(self, engine: TlsEapEngine) -> None:
        self._engine = engine
        self._failing: Failed | None = None  # our alert sent; its acknowledgement due
        self._finished = False

    @property
    def engine(self) -> TlsEapEngine:
        return self._engine

    @property
    def failing(self) -> Outcome | None:
        """The Failure this conversation ends in once the peer acknowledges our alert
        (RFC 5216 §2.1.3), known as the alert goes out; None otherwise."""
        if self._failing is None or self._finished:
            return None
        return self._tls_failed(self._failing)

    def start(self) -> bytes:
        return self._engine.start()

    def needs_no_check(self, type_data: bytes) -> bool:
        """True when ``receive(type_data)`` is only the peer's acknowledgement of one of
        our fragments with more of them to send (RFC 5216 §2.1.5): the answer is our
        next fragment, no TLS, no credential, store or directory work, and the method
        cannot end.  Any other Response is not (a handshake flight may look up a
        resumption record in a store; the last one ends the method)."""
        engine = self._engine
        if self._finished or self._failing is not None or engine.failure is not None:
            return False
        if not engine.awaiting_ack or engine.rounds + 1 > engine.framing.max_rounds:
            return False
        try:
            return Fragment.decode(type_data).is_ack
        except DecodeError:
            return False

    def receive(self, type_data: bytes) -> Step:
        if self._finished:
            return self._end(Outcome.failed("protocol_error", f"{self._label} has ended"))
        engine = self._engine
        event = engine.receive(type_data)
        if isinstance(event, Continue):
            return Reply(event.type_data)
        if isinstance(event, Failed):
            if self._failing is not None:
                return self._end(self._tls_failed(self._failing))
            if engine.has_output and self._alert_before_failure:  # RFC 9190 §2.1.3
                self._failing = event
                self._sending_alert()
                return Reply(engine.next_type_data())
            return self._end(self._tls_failed(event))
        if self._failing is not None:  # the peer's acknowledgement of our alert
            return self._end(self._tls_failed(self._failing))
        return self._message(event)

    @abstractmethod
    def _message(self, event: Message) -> Step:
        """A whole message from the peer, no TLS failure pending."""

    def _sending_alert(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Our alert is going out; its acknowledgement is due next."""

    def _tls_failed(self, failure: Failed) -> Outcome:
        return tls_failure_outcome(failure, engine=self._engine)

    def _end(self, outcome: Outcome) -> Done:
        """The conversation's end; every outcome names the TLS version and cipher as far
        as the handshake got (the decision log records them for accepts and rejects)."""
        self._finished = True
        facts = tls_attributes(self._engine)
        if any(key not in outcome.attributes for key in facts):
            outcome = replace(outcome, attributes={**facts, **outcome.attributes})
        return Done(outcome)


class TlsPeerBase(ABC):
    """The peer role's handling of the engine's events (see the module docstring)."""

    _label: ClassVar[str]
    """The method's name in "... has ended"."""

    def __init__(self, engine: TlsEapEngine) -> None:
        self._engine = engine
        # the ending (and whether it is final) once our last fragment is acknowledged
        self._final: tuple[Outcome, bool] | None = None
        self._finished = False

    @property
    def engine(self) -> TlsEapEngine:
        return self._engine

    def receive(self, type_data: bytes) -> Step:
        if self._finished:
            return Done(Outcome.failed("protocol_error", f"{self._label} has ended"))
        engine = self._engine
        event = engine.receive(type_data)
        if isinstance(event, Continue):
            if self._final is not None and not engine.awaiting_ack:
                outcome, final = self._final
                self._final = None
                return self._end(outcome, event.type_data, final)
            return Reply(event.type_data)
        if isinstance(event, Failed):
            return self._send_last(self._tls_failed(event))
        return self._message(event)

    @abstractmethod
    def _message(self, event: Message) -> Step:
        """A whole message from the server."""

    def _tls_failed(self, failure: Failed) -> Outcome:
        return tls_failure_outcome(failure, engine=self._engine)

    def _send_last(self, outcome: Outcome, final: bool = True) -> Step:
        """Send what is left (fragments if need be), then end with ``outcome``."""
        engine = self._engine
        type_data = engine.next_type_data()
        if engine.awaiting_ack:
            self._final = (outcome, final)
            return Reply(type_data)
        return self._end(outcome, type_data, final)

    def _end(self, outcome: Outcome, type_data: bytes, final: bool = True) -> Done:
        """``final=False`` (a success the method could still be asked more after, RFC
        4137 MAY_CONT) does not end the conversation; a failure always does."""
        last = final or not outcome.success
        if last:
            self._finished = True
        return Done(outcome, type_data, final=last)
