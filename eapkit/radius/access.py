"""Access-Requests that carry EAP (RFC 3579 §2, §3), turned into replies.

One EAP conversation spans several Access-Request / Access-Challenge rounds; the
``State`` attribute (RFC 2865 §5.24) names the conversation::

    NAS                                   eapkit
    Access-Request  EAP-Message(Identity)  ->  new conversation, first method Request
                    <- Access-Challenge  EAP-Message(Request) State=S
    Access-Request  EAP-Message(Response) State=S  ->  same conversation
                    <- Access-Challenge ... (as many rounds as the method needs)
                    <- Access-Accept  EAP-Message(Success) MS-MPPE-*-Key EAP-Key-Name ...
                    or Access-Reject  EAP-Message(Failure) Reply-Message

- ``State`` is 16 random octets (plus an optional routing prefix), valid for
  ``ttl`` seconds after the last round; at most ``max_conversations`` live at once, the
  oldest idle ones are dropped first.  A request naming an unknown or expired State is
  rejected.
- The Accept carries the MSK as MS-MPPE-Recv-Key (MSK[0:32]) and MS-MPPE-Send-Key
  (MSK[32:64]) (RFC 2548 §2.4, RFC 3580 §3.16), the Session-Id as EAP-Key-Name
  (RFC 4072 §2.4), the authenticated (inner) identity as User-Name, a Class, and the
  user's policy (Session-Timeout, Framed-IP-Address, Framed-Pool): see
  :func:`eapkit.radius.reply.accept_attributes`.
- A Reject says only "Authentication failed" to the user: the reason (``bad_password``,
  ``unknown_user``, ...) goes to the decision log, never on the wire, so unknown users and
  wrong passwords look the same.

This module is sans-I/O like the layers below it: packets in, replies out, time passed in.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from eapkit.errors import DecodeError
from eapkit.methods.base import Authenticator, MethodFactory
from eapkit.packet import Failure, decode_frame
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, Packet, eap_message_attributes
from eapkit.radius.reply import (
    REJECT_MESSAGE,
    AccessReply,
    Decision,
    PolicyLookup,
    accept_attributes,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.session import AuthenticatorSession, Discard, Finished, Result, SessionConfig

__all__ = ["EapAccess"]

log = logging.getLogger("eapkit.radius")

STATE_SIZE = 16


@dataclass(slots=True)
class _Conversation:
    session: AuthenticatorSession
    started: float
    expires: float
    client: str
    nas_user_name: str = ""


@dataclass
class EapAccess:
    """Runs EAP conversations for a RADIUS server.

    ``methods`` are the authenticator factories in the order they are offered;
    ``policy`` maps the authenticated user to what the Accept should carry.
    """

    methods: Sequence[MethodFactory[Authenticator]]
    policy: PolicyLookup | None = None
    session_config: SessionConfig = field(
        default_factory=lambda: SessionConfig(identity_round=False)
    )
    ttl: float = 60.0
    max_conversations: int = 10_000
    random: RandomSource = SYSTEM_RANDOM
    state_prefix: bytes = b""
    # A last word on a successful conversation: a reason to refuse it, or None.  The
    # server uses it to refuse password-only methods to users who need a second factor.
    authorize: Callable[[Result, str], str | None] | None = None
    # Told about conversations that ended without a verdict (the peer went away).
    on_abandoned: Callable[[Decision], None] | None = None
    _table: OrderedDict[bytes, _Conversation] = field(default_factory=OrderedDict, repr=False)
    discarded: int = 0

    @property
    def live(self) -> int:
        return len(self._table)

    def expire(self, now: float) -> int:
        """Forget conversations idle past their ``ttl`` (each is reported to
        ``on_abandoned`` as an ``abandoned`` decision); returns how many."""
        n = 0
        while self._table:
            state, conv = next(iter(self._table.items()))
            if conv.expires > now:
                break
            del self._table[state]
            n += 1
            if self.on_abandoned is not None:
                self.on_abandoned(_abandoned(conv, now))
        return n

    def handle(self, request: Packet, secret: bytes, client: str, now: float) -> AccessReply | None:
        """The reply to one Access-Request with EAP-Message, or None to stay silent
        (a discarded EAP packet: the NAS retransmits, RFC 3579 §2.6.2)."""
        eap = request.eap_message()
        assert eap is not None, "EapAccess.handle needs an Access-Request with EAP-Message"
        self.expire(now)
        state = request.get(Attr.STATE)
        if state is not None:
            conv = self._table.get(state)
            if conv is None:
                return self._reject_stray(eap, client, now, "unknown_state")
            self._table.move_to_end(state)
            conv.expires = now + self.ttl
        else:
            if len(self._table) >= self.max_conversations:
                return self._reject_stray(eap, client, now, "too_many_conversations")
            session = AuthenticatorSession(
                self.methods, config=self.session_config, now=now, random=self.random
            )
            conv = _Conversation(session, now, now + self.ttl, client)
            conv.nas_user_name = (request.get(Attr.USER_NAME) or b"").decode(
                "utf-8", "backslashreplace"
            )
            state = self.state_prefix + self.random.random_bytes(STATE_SIZE)
        try:
            action = conv.session.receive(eap)
        except Exception as exc:  # a backend or method bug: fail closed, keep serving
            log.exception("EAP conversation from %s failed", client)
            self._table.pop(state, None)
            reply = self._reject_stray(eap, client, now, "internal_error")
            if reply.decision is not None:
                reply.decision.detail = type(exc).__name__
            return reply
        if isinstance(action, Discard):
            self.discarded += 1
            if request.get(Attr.STATE) is None:
                return self._reject_stray(eap, client, now, "not_an_identity_response")
            return None
        if isinstance(action, Finished):
            self._table.pop(state, None)
            return self._final(action, conv, request, secret, now)
        self._table[state] = conv
        return AccessReply(
            Code.ACCESS_CHALLENGE,
            [*eap_message_attributes(action.packet), (Attr.STATE, state)],
        )

    # -- endings ----------------------------------------------------------------------

    def _final(
        self, action: Finished, conv: _Conversation, request: Packet, secret: bytes, now: float
    ) -> AccessReply:
        result = action.result
        assert action.packet is not None
        attrs = eap_message_attributes(action.packet)
        decision = _decision(result, conv, now)
        refusal = self.authorize(result, conv.client) if result.success and self.authorize else None
        if refusal is not None:
            # The method succeeded but policy says no: an EAP Failure in its place.
            attrs = eap_message_attributes(Failure(action.identifier).encode())
            decision.result, decision.reason, decision.session_id = "reject", refusal, ""
        if not result.success or refusal is not None:
            attrs.append((Attr.REPLY_MESSAGE, REJECT_MESSAGE))
            return AccessReply(Code.ACCESS_REJECT, attrs, decision, action.identifier)
        attrs += accept_attributes(
            result.user,
            self.policy(result.user) if self.policy else None,
            self.random,
            keys=result.keys,
            secret=secret,
            request_authenticator=request.authenticator,
        )
        return AccessReply(Code.ACCESS_ACCEPT, attrs, decision, action.identifier)

    def _reject_stray(self, eap: bytes, client: str, now: float, reason: str) -> AccessReply:
        """Reject a request that belongs to no conversation, with an EAP Failure that
        carries the Response's identifier when it has one."""
        try:
            identifier = decode_frame(eap)[0].identifier
        except DecodeError:
            identifier = 0
        decision = Decision(now, client, "", "", "", "", "reject", reason, 0, 0.0, "")
        return AccessReply(
            Code.ACCESS_REJECT,
            [
                *eap_message_attributes(Failure(identifier).encode()),
                (Attr.REPLY_MESSAGE, REJECT_MESSAGE),
            ],
            decision,
            identifier,
        )


def _abandoned(conv: _Conversation, now: float) -> Decision:
    session = conv.session
    identity = session.identity.decode("utf-8", "backslashreplace")
    return Decision(
        time=now,
        client=conv.client,
        user=identity or conv.nas_user_name,
        outer_identity=identity,
        method=str(session.method) if session.method else "",
        inner_method="",
        result="abandoned",
        reason="abandoned",
        rounds=session.counters.rounds,
        duration=now - conv.started,
        session_id="",
        detail=_abandoned_detail(session),
    )


def _abandoned_detail(session: AuthenticatorSession) -> str:
    """What the expiry line says: silence, or the peer's answers that were refused."""
    refused = session.counters.discarded
    if not refused:
        return "no answer from the peer before the conversation expired"
    return (
        f"expired after {refused} answer(s) from the peer were discarded;"
        f" last: {session.last_discard}"
    )


def _decision(result: Result, conv: _Conversation, now: float) -> Decision:
    outcome = result.outcome
    inner = outcome.attributes.get("inner_method", "") if outcome else ""
    return Decision(
        time=now,
        client=conv.client,
        user=result.user,
        outer_identity=result.identity,
        method=str(result.method) if result.method else "",
        inner_method=inner,
        result="accept" if result.success else "reject",
        reason=result.reason,
        rounds=result.rounds,
        duration=now - conv.started,
        session_id=result.keys.session_id.hex() if result.keys else "",
        detail=result.detail,
        tls=_tls_fields(outcome.attributes) if outcome else None,
    )


_TLS_FIELDS = ("tls_version", "tls_cipher", "tls_alert_sent", "tls_alert_received")


def _tls_fields(attributes: Mapping[str, str]) -> dict[str, str] | None:
    """The TLS facts a TLS-based method reported (eapkit.tlsio.method), for the log."""
    fields = {k: attributes[k] for k in _TLS_FIELDS if k in attributes}
    return fields or None
