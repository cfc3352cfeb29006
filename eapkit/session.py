"""One EAP conversation, in either role (RFC 3748 §2, §4; RFC 4137 for the states).

The session is sans-I/O: bytes in, an action out.  It owns the EAP header and all that
RFC 3748 asks of the layer above the methods; a method (see
:mod:`eapkit.methods.base`) sees only its own Type-Data.

Authenticator (server role), :class:`AuthenticatorSession`::

    IDLE --start()--> IDENTITY --Identity--> METHOD --Done--> FINISHED
      \\------- receive(Identity Response) -----^

- ``start()`` sends an Identity Request (RFC 3748 §5.1) when the identity round is on;
  otherwise, or when a NAS has already run the identity round (the first RADIUS
  Access-Request carries the peer's Identity Response), the conversation starts by
  ``receive()`` of that Identity Response and goes straight to the first method.
- Methods are tried in the configured order.  A Nak (legacy, §5.3.1, or expanded,
  §5.3.2) to a method's first Request moves to the next configured method the peer
  listed, or ends in Failure.  A Nak after the method's first Response is a violation.
- A retransmitted Response (the previous identifier and the same bytes) gets the current
  Request back and the method does not run again (§4.1); a Response with any other
  identifier is silently discarded and counted.  Malformed packets are discarded (§4).
- ``max_rounds`` Requests (100, as hostapd's and wpa_supplicant's EAP state machines
  allow) and ``max_bytes`` of received data end a runaway conversation with a Failure.
- Success or Failure uses the identifier of the last Response (§4.2) and the result
  carries the method's keys and reason.

Peer (client role), :class:`PeerSession`: answers Identity and Notification, Naks
methods it has no factory for (offering its own), resends its last Response to a
duplicate Request without running the method again, and accepts Success only after a
method has finished and declared that it would accept one (RFC 4137 §4.1 ``decision``).

Every ``receive`` returns one of :class:`Send` (send these bytes), :class:`Discard`
(nothing to send; ``reason`` says why) or :class:`Finished` (the conversation is over;
``packet`` is the last thing to send, if any).  Only programming errors raise.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from eapkit.errors import DecodeError, EapkitError, Unavailable
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.packet import (
    Code,
    EapType,
    Expanded,
    ExpandedNak,
    Failure,
    Identity,
    Message,
    MethodData,
    MethodId,
    Nak,
    Notification,
    Success,
    decode_frame,
    method_message,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "Action",
    "AuthenticatorSession",
    "Discard",
    "Finished",
    "PeerSession",
    "Result",
    "Send",
    "SessionConfig",
]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Limits and options shared by both roles."""

    identity_round: bool = True
    identity_prompt: bytes = b""
    max_rounds: int = 100  # hostapd/wpa_supplicant: EAP-TLS at 40-byte fragments needs ~60
    max_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.max_rounds < 1 or self.max_bytes < 4:
            raise ValueError("max_rounds and max_bytes must be positive")


@dataclass(frozen=True, slots=True)
class Result:
    """How a conversation ended.

    ``identity`` is the EAP Identity; ``user`` the identity the method authenticated
    (the inner identity of a tunnel, a certificate's mapped name), falling back to
    ``identity``.  ``keys`` is set only on success of a key-deriving method.
    """

    success: bool
    reason: str
    identity: str = ""
    user: str = ""
    method: MethodId | None = None
    keys: KeyMaterial | None = None
    detail: str = ""
    rounds: int = 0
    outcome: Outcome | None = field(default=None, repr=False)

    @property
    def factors(self) -> frozenset[Factor]:
        """What the method proved (:class:`~eapkit.methods.base.Factor`); empty on failure."""
        return self.outcome.factors if self.outcome is not None and self.success else frozenset()


@dataclass(frozen=True, slots=True)
class Send:
    packet: bytes


@dataclass(frozen=True, slots=True)
class Discard:
    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The conversation is over; ``packet`` (the Success or Failure, if any) carries
    ``identifier``, so a layer above can replace it without parsing it again."""

    result: Result
    packet: bytes | None = None
    identifier: int = 0


Action = Send | Discard | Finished


class _State(enum.Enum):
    IDLE = "idle"
    IDENTITY = "identity"
    METHOD = "method"
    FINISHED = "finished"


def _method_of(msg: Message) -> MethodId | None:
    if isinstance(msg, MethodData | Expanded):
        return msg.method
    return None


def _type_data(msg: Message) -> bytes:
    if isinstance(msg, MethodData):
        return msg.type_data
    if isinstance(msg, Expanded):
        return msg.data
    raise TypeError(f"{type(msg).__name__} carries no method data")  # pragma: no cover


def _run(method: Authenticator | Peer, type_data: bytes) -> Step:
    """Run one method step; a method that raises a DecodeError (or any eapkit error)
    on bad input has lost the conversation, it does not take the server down."""
    try:
        return method.receive(type_data)
    except DecodeError as exc:
        return Done(Outcome.failed("malformed", str(exc)))
    except Unavailable as exc:  # e.g. no directory server answered: directory_unavailable
        return Done(Outcome.failed(exc.refusal, str(exc)))
    except EapkitError as exc:
        return Done(Outcome.failed("method_error", str(exc)))


class _Counters:
    __slots__ = ("discarded", "duplicates", "received_bytes", "rounds")

    def __init__(self) -> None:
        self.rounds = 0
        self.received_bytes = 0
        self.discarded = 0
        self.duplicates = 0


class AuthenticatorSession:
    """The authenticator's side of one conversation (RFC 4137 §5)."""

    def __init__(
        self,
        methods: Sequence[MethodFactory[Authenticator]],
        *,
        config: SessionConfig | None = None,
        now: float = 0.0,
        random: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        if not methods:
            raise ValueError("an authenticator needs at least one method")
        self.config = config or SessionConfig()
        self._factories = list(methods)
        self._untried = list(methods)
        self._now = now
        self._random = random
        self._state = _State.IDLE
        self._identifier = random.random_bytes(1)[0]
        self._request = b""
        self._prev_response: bytes | None = None
        self._final: Finished | None = None
        self._method: Authenticator | None = None
        self._method_id: MethodId | None = None
        self._method_responses = 0
        self.identity = b""
        self.counters = _Counters()
        self.last_discard = ""  # why the last packet from the peer was discarded

    # -- public surface ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._state is _State.FINISHED

    @property
    def result(self) -> Result | None:
        return self._final.result if self._final else None

    @property
    def method(self) -> MethodId | None:
        return self._method_id

    @property
    def failing(self) -> Outcome | None:
        """The Failure the current method is bound for while it waits for the peer to
        acknowledge a TLS alert (eapkit.tlsio.method), else None."""
        failing = getattr(self._method, "failing", None)
        return failing if isinstance(failing, Outcome) else None

    def start(self) -> Action:
        """Open the conversation: the Identity Request, or the first method's Request."""
        if self._state is not _State.IDLE:
            raise RuntimeError("start() opens a conversation once")
        if self.config.identity_round:
            self._state = _State.IDENTITY
            return self._send(Identity(Code.REQUEST, self._identifier, self.config.identity_prompt))
        return self._next_method(None)

    def retransmit(self) -> bytes:
        """The outstanding Request again, for the caller's retransmission timer."""
        return self._request

    def receive(self, data: bytes) -> Action:
        """One packet from the peer in, one action out."""
        if self._state is _State.FINISHED:
            return self._discard("conversation finished")
        self.counters.received_bytes += len(data)
        if self.counters.received_bytes > self.config.max_bytes:
            return self._finish(Outcome.failed("too_much_data", "received-size limit reached"))
        try:
            msg, used = decode_frame(data)
        except DecodeError as exc:
            return self._discard(f"malformed: {exc}")
        frame = bytes(data[:used])
        if msg.code is not Code.RESPONSE:
            return self._discard(f"{msg.code.name.title()} sent to an authenticator")
        if self._state is _State.IDLE:
            if not isinstance(msg, Identity):
                return self._discard("conversation not started")
            self._identifier = msg.identifier
        elif msg.identifier != self._identifier:
            if self._prev_response is not None and frame == self._prev_response:
                self.counters.duplicates += 1
                return Send(self._request)
            return self._discard(
                f"identifier {msg.identifier} does not match the outstanding {self._identifier}"
            )
        self._prev_response = frame
        if self._state in (_State.IDLE, _State.IDENTITY):
            if not isinstance(msg, Identity):
                return self._discard(f"{type(msg).__name__} while waiting for the Identity")
            self.identity = msg.data
            return self._next_method(None)
        return self._method_response(msg)

    def needs_no_check(self, data: bytes) -> bool:
        """True when ``receive(data)`` would answer with the next Request after pure
        protocol work, without ending the conversation: the Identity Response or a Nak
        (RFC 3748 §5.1, §5.3.1) that starts a method whose factory says ``pure_start``,
        or a Response the current method's own ``needs_no_check`` says so of.  A
        round that may end the conversation (its outcome is then authorized: a
        directory read) or that reaches a credential check is never one.  Changes
        nothing: a RADIUS front asks this before choosing where ``receive`` runs."""
        if self._state is _State.FINISHED or self.counters.rounds >= self.config.max_rounds:
            return False
        if self.counters.received_bytes + len(data) > self.config.max_bytes:
            return False
        try:
            msg, _ = decode_frame(data)
        except DecodeError:
            return False
        if msg.code is not Code.RESPONSE:
            return False
        if self._state is _State.IDLE or (
            self._state is _State.IDENTITY and msg.identifier == self._identifier
        ):
            return isinstance(msg, Identity) and _pure_starts(self._untried, None)
        if self._state is not _State.METHOD or msg.identifier != self._identifier:
            return False
        if isinstance(msg, Nak | ExpandedNak):
            return not self._method_responses and _pure_starts(self._untried, msg)
        if _method_of(msg) != self._method_id:
            return False
        check = getattr(self._method, "needs_no_check", None)
        return callable(check) and check(_type_data(msg)) is True

    def light(self, data: bytes, methods: frozenset[MethodId]) -> bool:
        """Whether ``receive(data)`` keeps to the checks of ``methods`` (those a front
        with local backends runs on its event loop: no PBKDF2, no network; issue 21):
        the current method is one of them, or it is a tunnel method whose own ``light``
        says this Response reaches no other check (a handshake flight without
        application data, a phase-2 round of an inner method among ``methods``).
        Changes nothing."""
        if self._state is not _State.METHOD:
            return False
        if self._method_id in methods:
            return True
        check = getattr(self._method, "light", None)
        if not callable(check):
            return False
        try:
            msg, _ = decode_frame(data)
        except DecodeError:
            return False
        if msg.code is not Code.RESPONSE or msg.identifier != self._identifier:
            return False
        if _method_of(msg) != self._method_id:
            return False
        return check(_type_data(msg), methods) is True

    def rests_among(self, methods: frozenset[MethodId]) -> bool:
        """Whether the peer's next Response, whatever it holds, reaches no check but
        those of ``methods``: the current method is one of them and every method a Nak
        could start next says ``pure_start``, or the Identity Response is due and every
        method it could start says so.  A tunnel asks this of its inner session, whose
        Responses it cannot read before TLS has decrypted them (:meth:`light`)."""
        if self._state is _State.METHOD:
            return self._method_id in methods and all(f.pure_start for f in self._untried)
        if self._state in (_State.IDLE, _State.IDENTITY):
            return _pure_starts(self._untried, None)
        return False

    # -- internals -----------------------------------------------------------------------

    def _discard(self, reason: str) -> Discard:
        self.counters.discarded += 1
        self.last_discard = reason
        return Discard(reason)

    def _send(self, msg: Message) -> Action:
        if self.counters.rounds >= self.config.max_rounds:
            return self._finish(Outcome.failed("too_many_rounds", "round limit reached"))
        self.counters.rounds += 1
        self._request = msg.encode()
        return Send(self._request)

    def _next_identifier(self) -> int:
        self._identifier = (self._identifier + 1) & 0xFF
        return self._identifier

    def _next_method(self, acceptable: Nak | ExpandedNak | None) -> Action:
        while self._untried:
            factory = self._untried.pop(0)
            if acceptable is not None and not _accepts(acceptable, factory.method):
                continue
            ctx = MethodContext(identity=self.identity, now=self._now, random=self._random)
            self._method = factory(ctx)
            self._method_id = factory.method
            self._method_responses = 0
            self._state = _State.METHOD
            try:
                type_data = self._method.start()
            except Unavailable as exc:
                return self._finish(Outcome.failed(exc.refusal, str(exc)))
            except EapkitError as exc:
                return self._finish(Outcome.failed("method_error", str(exc)))
            req = method_message(Code.REQUEST, self._next_identifier(), factory.method, type_data)
            return self._send(req)
        if acceptable is None:
            return self._finish(Outcome.failed("no_method", "no method left to offer"))
        offered = ", ".join(str(f.method) for f in self._factories)
        return self._finish(
            Outcome.failed("peer_refused_methods", f"peer accepts none of: {offered}")
        )

    def _method_response(self, msg: Message) -> Action:
        assert self._method is not None and self._method_id is not None
        if isinstance(msg, Nak | ExpandedNak):
            if self._method_responses:
                return self._finish(
                    Outcome.failed("nak_after_start", "Nak after the method's first Response")
                )
            return self._next_method(msg)
        if _method_of(msg) != self._method_id:
            # RFC 3748 §5.3.1: a peer that does not want the proposed method answers with
            # a Nak; any other type is refused with a Failure (as FreeRADIUS does), not
            # left unanswered until the conversation times out.
            got = _method_of(msg) or type(msg).__name__
            hint = "" if self._method_responses else " (to refuse a method the peer must Nak)"
            return self._finish(
                Outcome.failed(
                    "unexpected_type",
                    f"Response of type {got} to a {self._method_id} Request{hint}",
                )
            )
        self._method_responses += 1
        step = _run(self._method, _type_data(msg))
        if isinstance(step, Reply):
            req = method_message(
                Code.REQUEST, self._next_identifier(), self._method_id, step.type_data
            )
            return self._send(req)
        return self._finish(step.outcome)

    def _finish(self, outcome: Outcome) -> Finished:
        self._state = _State.FINISHED
        ident = self.identity.decode("utf-8", "backslashreplace")
        cls = Success if outcome.success else Failure
        packet = cls(self._identifier).encode()
        self._request = packet
        result = Result(
            success=outcome.success,
            reason=outcome.reason,
            identity=ident,
            user=outcome.identity or ident,
            method=self._method_id,
            keys=outcome.keys if outcome.success else None,
            detail=outcome.detail,
            rounds=self.counters.rounds,
            outcome=outcome,
        )
        self._final = Finished(result, packet, self._identifier)
        return self._final


def _pure_starts(
    untried: Sequence[MethodFactory[Authenticator]], acceptable: Nak | ExpandedNak | None
) -> bool:
    """Whether ``_next_method(acceptable)`` starts a method without leaving pure
    protocol work: some method is left to start, and every one it may try says
    ``pure_start``."""
    left = [f for f in untried if acceptable is None or _accepts(acceptable, f.method)]
    return bool(left) and all(f.pure_start for f in left)


def _accepts(nak: Nak | ExpandedNak, method: MethodId) -> bool:
    if isinstance(nak, ExpandedNak):
        return method in nak.desired
    if method.is_legacy:
        return method.vendor_type in nak.desired
    return EapType.EXPANDED in nak.desired


class PeerSession:
    """The peer's side of one conversation (RFC 4137 §4)."""

    def __init__(
        self,
        methods: Sequence[MethodFactory[Peer]],
        identity: bytes | str,
        *,
        config: SessionConfig | None = None,
        now: float = 0.0,
        random: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        self.config = config or SessionConfig()
        self.identity = identity.encode() if isinstance(identity, str) else identity
        self._factories = {f.method: f for f in methods}
        self._order = [f.method for f in methods]
        self._now = now
        self._random = random
        self._finished: Finished | None = None
        self._last_request: bytes | None = None
        self._last_request_id: int | None = None
        self._last_response: bytes | None = None
        self._method: Peer | None = None
        self._method_id: MethodId | None = None
        self._outcome: Outcome | None = None
        self._final = True
        self.notifications: list[bytes] = []
        self.counters = _Counters()

    @property
    def finished(self) -> bool:
        return self._finished is not None

    @property
    def result(self) -> Result | None:
        return self._finished.result if self._finished else None

    @property
    def method(self) -> MethodId | None:
        return self._method_id

    def receive(self, data: bytes) -> Action:
        if self._finished is not None:
            return self._discard("conversation finished")
        self.counters.received_bytes += len(data)
        if self.counters.received_bytes > self.config.max_bytes:
            return self._finish(False, Outcome.failed("too_much_data", "received-size limit"))
        try:
            msg, used = decode_frame(data)
        except DecodeError as exc:
            return self._discard(f"malformed: {exc}")
        frame = bytes(data[:used])
        if msg.code is Code.RESPONSE:
            return self._discard("Response sent to a peer")
        if isinstance(msg, Success | Failure):
            return self._result_indication(msg)
        if (
            msg.identifier == self._last_request_id
            and frame == self._last_request
            and self._last_response is not None
        ):
            self.counters.duplicates += 1
            return Send(self._last_response)
        if self.counters.rounds >= self.config.max_rounds:
            return self._finish(False, Outcome.failed("too_many_rounds", "round limit reached"))
        self.counters.rounds += 1
        if isinstance(msg, Identity):
            return self._respond(msg, frame, Identity(Code.RESPONSE, msg.identifier, self.identity))
        if isinstance(msg, Notification):
            self.notifications.append(msg.data)
            return self._respond(msg, frame, Notification(Code.RESPONSE, msg.identifier))
        wanted = _method_of(msg)
        if wanted is None:  # Experimental: nothing we can answer
            return self._discard(f"{type(msg).__name__} Request not supported")
        if self._method is None:
            factory = self._factories.get(wanted)
            if factory is None:
                return self._respond(msg, frame, self._nak(msg))
            ctx = MethodContext(identity=self.identity, now=self._now, random=self._random)
            self._method = factory(ctx)
            self._method_id = wanted
        elif wanted != self._method_id:
            return self._discard(f"{wanted} Request during {self._method_id}")
        elif self._outcome is not None:
            if self._final:
                return self._discard(f"{wanted} Request after the method finished")
            self._outcome = None  # MAY_CONT: the method goes on
        step = _run(self._method, _type_data(msg))
        if isinstance(step, Done):
            self._outcome = step.outcome
            self._final = step.final
            if step.type_data is None:
                self._remember(msg, frame, None)
                return Discard("method finished; nothing to answer")
            type_data = step.type_data
        else:
            type_data = step.type_data
        return self._respond(
            msg, frame, method_message(Code.RESPONSE, msg.identifier, wanted, type_data)
        )

    # -- internals -------------------------------------------------------------------

    def _nak(self, msg: Message) -> Message:
        if isinstance(msg, Expanded):
            return ExpandedNak(msg.identifier, tuple(self._order) or (MethodId(0, 0),))
        legacy = [m.vendor_type for m in self._order if m.is_legacy]
        if any(not m.is_legacy for m in self._order):
            legacy.append(EapType.EXPANDED)
        return Nak(msg.identifier, tuple(legacy) or (0,))

    def _remember(self, req: Message, frame: bytes, response: bytes | None) -> None:
        self._last_request = frame
        self._last_request_id = req.identifier
        self._last_response = response

    def _respond(self, req: Message, frame: bytes, response: Message) -> Send:
        packet = response.encode()
        self._remember(req, frame, packet)
        return Send(packet)

    def _discard(self, reason: str) -> Discard:
        self.counters.discarded += 1
        return Discard(reason)

    def _result_indication(self, msg: Success | Failure) -> Action:
        if self._last_request_id is not None and msg.identifier != self._last_request_id:
            return self._discard(
                f"{type(msg).__name__} identifier {msg.identifier} does not match "
                f"the last Response {self._last_request_id}"
            )
        if isinstance(msg, Failure):
            if self._outcome is not None and not self._outcome.success:
                return self._finish(False, self._outcome)
            return self._finish(False, Outcome.failed("eap_failure", "authenticator sent Failure"))
        if self._outcome is None:
            return self._discard("Success before any method finished")
        if not self._outcome.success:
            return self._finish(False, self._outcome)
        return self._finish(True, self._outcome)

    def _finish(self, success: bool, outcome: Outcome) -> Finished:
        ident = self.identity.decode("utf-8", "backslashreplace")
        result = Result(
            success=success,
            reason=outcome.reason,
            identity=ident,
            user=outcome.identity or ident,
            method=self._method_id,
            keys=outcome.keys if success else None,
            detail=outcome.detail,
            rounds=self.counters.rounds,
            outcome=outcome,
        )
        self._finished = Finished(result)
        return self._finished
