"""Plain RADIUS authentication, for gateways that do not speak EAP (RFC 2865 §2, §5.2).

Many SSL-VPNs, firewalls and OpenVPN plugins send User-Name and User-Password (hidden
with the shared secret, RFC 2865 §5.2, at most 128 octets).  Two ways to add a second
factor:

- the password followed by the code in User-Password
  (:class:`~eapkit.credentials.PasswordAndCode`);
- RFC 2865 challenge-response (§2 "Challenge/Response", §4.4): after a right password
  the server answers Access-Challenge with a Reply-Message prompt and a State; the NAS
  shows the prompt and sends the code as User-Password in a new Access-Request carrying
  that State (:class:`~eapkit.credentials.PasswordThenCode`).

CHAP-Password (§5.3) needs the cleartext password on the server, which eapkit does not
keep: such requests are rejected with the reason ``chap_unsupported``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from eapkit.authz import Authorizer, Nas, nas_scope
from eapkit.credentials import CHALLENGE, ResponseCheck, TwoRoundCheck, Verdict
from eapkit.errors import DecodeError
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import unhide_password
from eapkit.radius.packet import Code, Packet
from eapkit.radius.reply import (
    REJECT_MESSAGE,
    AccessReply,
    Decision,
    PolicyLookup,
    accept_attributes,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = ["PapAccess"]


@dataclass(slots=True)
class _Pending:
    user: str
    expires: float
    started: float
    client: str = ""  # the client entry that got the challenge: only it may answer


@dataclass
class PapAccess:
    """Access-Requests with User-Password.  ``check`` is the first-round check; when it
    answers CHALLENGE, the code round follows, checked by ``code_check`` (a
    :class:`PasswordThenCode` brings its own)."""

    check: ResponseCheck
    policy: PolicyLookup | None = None
    code_check: ResponseCheck | None = None
    ttl: float = 120.0
    max_pending: int = 10_000
    random: RandomSource = SYSTEM_RANDOM
    state_prefix: bytes = b""  # names the worker process holding the challenge
    authorizer: Authorizer | None = None  # the one authorization step (eapkit.authz)
    _pending: OrderedDict[bytes, _Pending] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float, *, nas: Nas | None = None
    ) -> AccessReply | None:
        """The reply to one Access-Request with User-Password; ``nas`` is the client entry
        it came from (authorization's per-NAS rules)."""
        with nas_scope(nas, now):
            return self._handle(request, secret, client, now)

    def _handle(
        self, request: Packet, secret: bytes, client: str, now: float
    ) -> AccessReply | None:
        started = now
        self._expire(now)
        raw_user = request.get(Attr.USER_NAME)
        user = (raw_user or b"").decode("utf-8", "backslashreplace")
        hidden = request.get(Attr.USER_PASSWORD)
        if hidden is None:
            reason = "chap_unsupported" if request.get(Attr.CHAP_PASSWORD) else "no_password"
            return self._reject(client, user, reason, now, started)
        if not user:
            return self._reject(client, user, "no_user_name", now, started)
        try:
            password = unhide_password(hidden, secret, request.authenticator).decode("utf-8")
        except (DecodeError, UnicodeDecodeError):
            return self._reject(client, user, "malformed", now, started)
        state = request.get(Attr.STATE)
        if state is not None:
            with self._lock:
                pending = self._pending.get(state)
                if pending is not None and pending.client == client:
                    del self._pending[state]
            if pending is None or pending.user != user or pending.client != client:
                return self._reject(client, user, "unknown_state", now, started)
            code_check = self.code_check
            if code_check is None and isinstance(self.check, TwoRoundCheck):
                code_check = self.check.second
            if code_check is None:
                return self._reject(client, user, "unknown_state", now, started)
            verdict = code_check(user, password, now)
            return self._final(verdict, client, user, now, pending.started, "pap+challenge")
        verdict = self.check(user, password, now)
        if verdict.reason == CHALLENGE:
            return self.code_round(verdict.user or user, verdict.detail, now, client=client)
        return self._final(verdict, client, user, now, now, "pap")

    def code_round(
        self,
        user: str,
        prompt: str,
        now: float,
        *,
        client: str = "",
    ) -> AccessReply:
        """RFC 2865 §4.4: the Access-Challenge asking ``user`` (whose password was right)
        for the code.  Only ``client`` (the client entry that got the challenge) may answer it; at
        ``max_pending`` the oldest challenge goes."""
        state = self.state_prefix + self.random.random_bytes(16)
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self._pending.popitem(last=False)
            self._pending[state] = _Pending(user, now + self.ttl, now, client)
        text = (prompt or "One-time code: ").encode()[:253]
        return AccessReply(Code.ACCESS_CHALLENGE, [(Attr.REPLY_MESSAGE, text), (Attr.STATE, state)])

    @property
    def pending(self) -> int:
        """Challenges waiting for their code."""
        return len(self._pending)

    def expire(self, now: float) -> None:
        """Forget challenges not answered within ``ttl`` (the front's timer calls this)."""
        self._expire(now)

    def _expire(self, now: float) -> None:
        with self._lock:
            while self._pending:
                state, pending = next(iter(self._pending.items()))
                if pending.expires > now:
                    return
                del self._pending[state]

    def _final(
        self, verdict: Verdict, client: str, user: str, now: float, started: float, method: str
    ) -> AccessReply:
        name = verdict.user or user
        policy = self.policy(name) if self.policy and verdict.ok else None
        matched = ""
        if self.authorizer is not None and verdict.ok:
            authorized = self.authorizer.authorize(name, verdict.factors, None, now, method="pap")
            if not authorized.ok:
                verdict = Verdict.reject(authorized.reason)
            name, policy = authorized.user, authorized.policy
            matched = authorized.policy_name or ""
        elif self.authorizer is not None:
            verdict = Verdict.reject(self.authorizer.refused(name, verdict.reason, now))
        decision = Decision(
            now,
            client,
            name,
            user,
            method,
            "",
            "accept" if verdict.ok else "reject",
            verdict.reason,
            1 if method == "pap" else 2,
            now - started,
            "",
            verdict.detail,
            policy=matched,
        )
        if not verdict.ok:
            decision.user = user
            return AccessReply(Code.ACCESS_REJECT, [(Attr.REPLY_MESSAGE, REJECT_MESSAGE)], decision)
        attrs = accept_attributes(name, policy, self.random)
        return AccessReply(Code.ACCESS_ACCEPT, attrs, decision)

    def _reject(
        self, client: str, user: str, reason: str, now: float, started: float
    ) -> AccessReply:
        decision = Decision(now, client, user, user, "pap", "", "reject", reason, 1, 0.0, "")
        return AccessReply(Code.ACCESS_REJECT, [(Attr.REPLY_MESSAGE, REJECT_MESSAGE)], decision)
