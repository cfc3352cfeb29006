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
  ``ttl`` seconds after the last round, and bound to the client entry that started the
  conversation: a request naming an unknown or expired State, or another client's, is
  rejected (``unknown_state``).
- At most ``max_conversations`` live at once.  A new conversation never waits for room:
  when its client already holds ``client_share`` of the table, that client's own oldest
  idle conversation is evicted; otherwise, when the table is full, the oldest idle
  conversation of all is.  So one NAS (or one flooding peer behind it) cannot take the
  table from the others, and a login in progress is evicted only after every
  conversation idle for longer (counted as ``evicted``, not logged one by one).
- Threads: the table is under a lock, and each conversation has a lock of its own, so
  one conversation is run by one thread at a time, round after round.
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
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from eapkit.authz import Authorizer, Nas, nas_scope
from eapkit.catalog import CATALOG
from eapkit.directory.base import DirectoryUnavailable
from eapkit.errors import DecodeError
from eapkit.methods.base import Authenticator, InnerProof, MethodFactory
from eapkit.packet import Failure, MethodId, decode_frame
from eapkit.radius.device_rounds import DeviceBinding
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Code, Packet, eap_message_attributes
from eapkit.radius.reply import (
    REJECT_MESSAGE,
    AccessReply,
    Decision,
    PolicyLookup,
    accept_attributes,
)
from eapkit.radius.rounds import RoundBinding, login_id
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.session import AuthenticatorSession, Discard, Finished, Result, SessionConfig
from eapkit.store.base import StoreUnavailable

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
    lock: threading.Lock = field(default_factory=threading.Lock)
    pooled: int = 0  # rounds handed to a front's pool, not yet run
    logged: bool = False  # its decision line went out with our TLS alert
    login_id: str = ""  # eapkit.radius.rounds: the same on every round of one login


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
    client_share: float = 0.5  # of max_conversations, that one client may hold
    random: RandomSource = SYSTEM_RANDOM
    state_prefix: bytes = b""
    # The one authorization step (eapkit.authz): who the user is, whether they may log
    # in with what the method proved, and what the Accept carries (replaces ``policy``).
    authorizer: Authorizer | None = None
    # Ties the rounds of a multi-round login to one gateway connection (RFC 4739).
    rounds: RoundBinding | None = None
    # Binds a user's round to the device round of the same IKE SA (issue 20).
    devices: DeviceBinding | None = None
    # Told about conversations that ended without a verdict (the peer went away).
    on_abandoned: Callable[[Decision], None] | None = None
    _table: OrderedDict[bytes, _Conversation] = field(default_factory=OrderedDict, repr=False)
    _owned: dict[str, OrderedDict[bytes, None]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    discarded: int = 0
    evicted: int = 0
    _opening: AuthenticatorSession | None = field(default=None, repr=False)

    @property
    def live(self) -> int:
        return len(self._table)

    def expire(self, now: float) -> int:
        """Forget conversations idle past their ``ttl`` (each is reported to
        ``on_abandoned`` as an ``abandoned`` decision); returns how many."""
        gone: list[_Conversation] = []
        with self._lock:
            while self._table:
                state, conv = next(iter(self._table.items()))
                if conv.expires > now:
                    break
                self._forget(state)
                gone.append(conv)
        if self.on_abandoned is not None:
            for conv in gone:
                if conv.logged:
                    continue
                self.on_abandoned(_abandoned(conv, now))
        return len(gone)

    # -- the table (callers hold self._lock) ---------------------------------------------

    def _put(self, state: bytes, conv: _Conversation) -> None:
        self._table[state] = conv
        self._table.move_to_end(state)
        owned = self._owned.setdefault(conv.client, OrderedDict())
        owned[state] = None
        owned.move_to_end(state)

    def _forget(self, state: bytes) -> _Conversation | None:
        conv = self._table.pop(state, None)
        if conv is not None:
            owned = self._owned.get(conv.client)
            if owned is not None:
                owned.pop(state, None)
                if not owned:
                    del self._owned[conv.client]
        return conv

    def _make_room(self, client: str) -> None:
        """Evict for a new conversation from ``client`` (see the module docstring)."""
        share = max(1, int(self.max_conversations * self.client_share))
        owned = self._owned.get(client)
        if owned is not None and len(owned) >= share:
            victim = next(iter(owned))
        elif len(self._table) >= self.max_conversations and self._table:
            victim = next(iter(self._table))
        else:
            return
        self._forget(victim)
        self.evicted += 1

    def needs_no_check(self, request: Packet, client: str) -> bool:
        """Whether :meth:`handle` of ``request`` from ``client`` is pure EAP/TLS state
        work that answers with a Challenge: a new conversation's Identity round, or a
        round of ``client``'s live conversation that its session says needs no check
        (:meth:`AuthenticatorSession.needs_no_check`), while no earlier round of it is
        in a pool or running (its lock would make the caller wait).  A front runs such
        a request on its event loop; everything else goes to its pool (issue 21)."""
        eap = request.eap_message()
        if eap is None:
            return False
        state = request.get(Attr.STATE)
        if state is None:
            if self.max_conversations <= 0:
                return False
            if self._opening is None:  # read only: never receives a packet
                self._opening = AuthenticatorSession(
                    self.methods, config=self.session_config, random=self.random
                )
            return self._opening.needs_no_check(eap)
        with self._lock:
            conv = self._runnable(state, client)
            return conv is not None and conv.session.needs_no_check(eap)

    def light(self, request: Packet, client: str, methods: frozenset[MethodId]) -> bool:
        """Whether ``request`` continues a live conversation of ``client`` whose method is
        one of ``methods`` (those whose checks are short work on local backends: no
        PBKDF2, no network), or a tunnel method's round that reaches no other check
        (:meth:`AuthenticatorSession.light`), while no earlier round of it is in a pool
        or running.  A front with local backends runs such a round on its event loop
        (issue 21)."""
        if not methods:
            return False
        state = request.get(Attr.STATE)
        if state is None:
            return False
        eap = request.eap_message()
        if eap is None:
            return False
        with self._lock:
            conv = self._runnable(state, client)
            if conv is None:
                return False
            session = conv.session
            return session.method in methods or session.light(eap, methods)

    def _runnable(self, state: bytes, client: str) -> _Conversation | None:
        """``client``'s live conversation under ``state``, if a front may run its next
        round on the event loop: none of its rounds is in a pool or running (its lock
        would make the loop wait, or the round would overtake it).  Caller holds
        ``self._lock``."""
        conv = self._table.get(state)
        if conv is None or conv.client != client or conv.pooled or conv.lock.locked():
            return None
        return conv

    def pooling(self, request: Packet) -> None:
        """``request`` goes to a pool: until that round has run, its conversation's
        rounds are not run inline (they would wait for its lock, or overtake it).  A
        pooled round that never runs (dropped) leaves the conversation on the pool:
        slower, never unsafe."""
        state = request.get(Attr.STATE)
        if state is None:
            return
        with self._lock:
            conv = self._table.get(state)
            if conv is not None:
                conv.pooled += 1

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float, *, nas: Nas | None = None
    ) -> AccessReply | None:
        """The reply to one Access-Request with EAP-Message, or None to stay silent
        (a discarded EAP packet: the NAS retransmits, RFC 3579 §2.6.2).  ``nas`` is the
        client entry the request came from (authorization's per-NAS rules)."""
        with nas_scope(nas, now):
            return self._handle(request, secret, client, now)

    def _handle(
        self, request: Packet, secret: bytes, client: str, now: float
    ) -> AccessReply | None:
        eap = request.eap_message()
        assert eap is not None, "EapAccess.handle needs an Access-Request with EAP-Message"
        self.expire(now)
        state = request.get(Attr.STATE)
        if state is not None:
            with self._lock:
                conv = self._table.get(state)
                if conv is not None and conv.client == client:
                    self._put(state, conv)
                    conv.expires = now + self.ttl
            if conv is None or conv.client != client:  # unknown, expired or not this NAS's
                return self._reject_stray(eap, client, now, "unknown_state")
        else:
            if self.max_conversations <= 0:
                return self._reject_stray(eap, client, now, "too_many_conversations")
            session = AuthenticatorSession(
                self.methods, config=self.session_config, now=now, random=self.random
            )
            conv = _Conversation(session, now, now + self.ttl, client)
            conv.login_id = login_id(request, client)
            conv.nas_user_name = (request.get(Attr.USER_NAME) or b"").decode(
                "utf-8", "backslashreplace"
            )
            state = self.state_prefix + self.random.random_bytes(STATE_SIZE)
        with conv.lock:  # one thread at a time per conversation, rounds in order
            if conv.pooled:  # rounds run inline only when none is pooled: this is one
                with self._lock:
                    conv.pooled -= 1
            return self._round(request, eap, secret, client, now, state, conv)

    def _round(
        self,
        request: Packet,
        eap: bytes,
        secret: bytes,
        client: str,
        now: float,
        state: bytes,
        conv: _Conversation,
    ) -> AccessReply | None:
        try:
            action = conv.session.receive(eap)
        except Exception as exc:  # a backend or method bug: fail closed, keep serving
            unavailable = isinstance(exc, StoreUnavailable)
            if unavailable:
                log.warning("EAP conversation from %s: store unavailable", client)
            else:
                log.warning(
                    "EAP conversation from %s failed: %s",
                    client,
                    type(exc).__name__,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            with self._lock:
                self._forget(state)
            reason = "store_unavailable" if unavailable else "internal_error"
            if isinstance(exc, DirectoryUnavailable):  # no directory server answered
                reason = "directory_unavailable"
            reply = self._reject_stray(eap, client, now, reason)
            if reply.decision is not None:
                reply.decision.detail = type(exc).__name__
            return reply
        if isinstance(action, Discard):
            self.discarded += 1
            if request.get(Attr.STATE) is None:
                return self._reject_stray(eap, client, now, "not_an_identity_response")
            return None
        if isinstance(action, Finished):
            with self._lock:
                self._forget(state)
            return self._final(action, conv, request, secret, now)
        with self._lock:
            if state not in self._table:
                self._make_room(client)
            self._put(state, conv)
        return AccessReply(
            Code.ACCESS_CHALLENGE,
            [*eap_message_attributes(action.packet), (Attr.STATE, state)],
            self._alert_decision(conv, now),
        )

    def _alert_decision(self, conv: _Conversation, now: float) -> Decision | None:
        """The decision line of a conversation whose TLS alert goes out now: written at
        once, since some peers (strongSwan) never acknowledge it (RFC 5216 §2.1.3)."""
        failing = conv.session.failing
        if failing is None or conv.logged:
            return None
        conv.logged = True
        decision = _abandoned(conv, now)
        decision.result, decision.reason = "reject", failing.reason
        decision.detail = "TLS alert sent; the EAP Failure follows the peer's acknowledgement"
        decision.tls = _tls_fields(failing.attributes)
        return decision

    # -- endings ----------------------------------------------------------------------

    def _final(
        self, action: Finished, conv: _Conversation, request: Packet, secret: bytes, now: float
    ) -> AccessReply:
        result = action.result
        assert action.packet is not None
        attrs = eap_message_attributes(action.packet)
        decision = _decision(result, conv, now)
        decision.login_id = conv.login_id
        user, refusal = result.user, None
        policy = self.policy(user) if self.policy and result.success else None
        if self.authorizer is not None and result.success:
            outcome = result.outcome
            names = outcome.certificate if outcome is not None else None
            chained = outcome.inner if outcome is not None else ()
            verdict = self.authorizer.authorize(
                user,
                result.factors,
                names,
                now,
                inner=chained if chained or result.method == TEAP else None,
                method=_METHOD_NAMES.get(result.method) if result.method else None,
            )
            user = decision.user = verdict.user
            decision.machine = verdict.machine
            decision.policy = verdict.policy_name or ""
            refusal, policy = (None if verdict.ok else verdict.reason), verdict.policy
        elif self.authorizer is not None:
            decision.reason = self.authorizer.refused(user or result.identity, result.reason, now)
        if refusal is None and result.success and self.rounds is not None:
            refusal = self.rounds.settle(result, conv.client, request, now)
        if refusal is None and result.success and self.devices is not None:
            refusal, device = self.devices.settle(result, user, conv.client, request, now)
            if refusal is None and device is not None:
                decision.device, decision.device_fingerprint = device.name, device.fingerprint
        if refusal is not None:
            # The method succeeded but policy says no: an EAP Failure in its place.
            attrs = eap_message_attributes(Failure(action.identifier).encode())
            decision.result, decision.reason, decision.session_id = "reject", refusal, ""
        if not result.success or refusal is not None:
            attrs.append((Attr.REPLY_MESSAGE, REJECT_MESSAGE))
            logged = None if conv.logged else decision  # written with the alert
            return AccessReply(Code.ACCESS_REJECT, attrs, logged, action.identifier)
        attrs += accept_attributes(
            user,
            policy,
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
        login_id=conv.login_id,
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


TEAP = MethodId(0, 55)  # RFC 9930 §4.1: a chaining tunnel, authorized by its inner proofs


def _inner_fields(inner: Sequence[InnerProof]) -> list[dict[str, object]]:
    """Each inner authentication of a chaining tunnel for the log: who, as what, how,
    and what it proved (never a secret)."""
    return [
        {
            "type": proof.identity_type,
            "identity": proof.identity,
            "method": proof.method,
            "success": proof.success,
            "factors": sorted(proof.factors),
        }
        for proof in inner
    ]


# The catalog's name of each EAP method, for a group's ``methods`` (eapkit.authz).
_METHOD_NAMES: dict[MethodId, str] = {entry.method: entry.name for entry in CATALOG}


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
        inner=_inner_fields(outcome.inner) if outcome else [],
    )


_TLS_FIELDS = ("tls_version", "tls_cipher", "tls_alert_sent", "tls_alert_received")


def _tls_fields(attributes: Mapping[str, str]) -> dict[str, str] | None:
    """The TLS facts a TLS-based method reported (eapkit.tlsio.method), for the log."""
    fields = {k: attributes[k] for k in _TLS_FIELDS if k in attributes}
    return fields or None
