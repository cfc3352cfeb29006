"""Pending login approvals and one-time enrollment links, on the shared store.

A login whose password step succeeded, for a user whose second factor is ``webauthn``,
becomes an :class:`Approval`: who, from which gateway (the NAS's client-table name,
NAS-Identifier, NAS-IP-Address) and device (Calling-Station-Id), when, and until when it
waits.  The user decides it on the bridge's web page; the RADIUS front waits for the
outcome.  All of it lives in the :class:`~eapkit.store.base.Store`, so every RADIUS
process (or node, on Redis) sees the same table:

- ``{ns}:approval:{ticket}``: the approval, a single-use token with an expiry;
- ``{ns}:outcome:{ticket}``: the outcome, written with ``put_once``, so the first of
  approve / deny / expire wins atomically, whoever writes it;
- ``{ns}:pending:{user}``: an index of the user's tickets for the page's list (a hint:
  every entry is re-read under its own key before it is shown or decided).

Enrollment links (``eapkit enroll webauthn USER``) are random tokens stored under their
SHA-256, so a copy of the store does not hold usable links.

Time is an argument everywhere (sans-I/O, DESIGN.md).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Final

from eapkit.errors import EapkitError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable
from eapkit.verify.webauthn import b64url_encode

__all__ = [
    "APPROVED",
    "DENIED",
    "EXPIRED",
    "Approval",
    "ApprovalTable",
    "EnrollmentLinks",
    "TooManyPending",
]

APPROVED: Final = "approved"
DENIED: Final = "denied"
EXPIRED: Final = "expired"
OUTCOMES: Final = (APPROVED, DENIED, EXPIRED)
_KEEP: Final = 300.0  # decided approvals stay readable this long (page, audit)


class TooManyPending(EapkitError):
    """The user already has the maximum number of logins waiting."""


@dataclass(frozen=True, slots=True)
class Approval:
    """One login waiting for its user's decision."""

    ticket: str
    user: str
    client: str  # the NAS's name in eapkit's client table
    nas_identifier: str  # RFC 2865 §5.32
    nas_address: str  # NAS-IP-Address / NAS-IPv6-Address (RFC 2865 §5.4, RFC 3162 §2.1)
    calling_station: str  # RFC 2865 §5.31: the user's device as the NAS sees it
    called_station: str  # RFC 2865 §5.30
    created: float
    deadline: float

    def to_record(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, raw: bytes) -> Approval:
        try:
            d = json.loads(raw)
            return cls(
                str(d["ticket"]),
                str(d["user"]),
                str(d["client"]),
                str(d["nas_identifier"]),
                str(d["nas_address"]),
                str(d["calling_station"]),
                str(d["called_station"]),
                float(d["created"]),
                float(d["deadline"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable("corrupt approval record") from exc


class ApprovalTable:
    """Approvals on a store; ``timeout`` is how long a login waits."""

    def __init__(
        self,
        store: Store,
        *,
        timeout: float = 60.0,
        max_pending: int = 5,
        namespace: str = "bridge",
        rand: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.max_pending = max_pending
        self.ns = namespace
        self.rand = rand

    def _key(self, kind: str, ticket: str) -> str:
        return f"{self.ns}:{kind}:{ticket}"

    def _index(self, user: str) -> list[tuple[str, float]]:
        raw = self.store.get(self._key("pending", user))
        if raw is None:
            return []
        try:
            return [(str(t), float(d)) for t, d in json.loads(raw)]
        except (ValueError, TypeError):
            return []  # only a hint: rebuilt by the next open()

    def open(
        self,
        user: str,
        now: float,
        *,
        client: str = "",
        nas_identifier: str = "",
        nas_address: str = "",
        calling_station: str = "",
        called_station: str = "",
    ) -> Approval:
        """A new pending approval; raises :class:`TooManyPending` or StoreUnavailable."""
        live = [(t, d) for t, d in self._index(user) if d > now and self.outcome(t, now) is None]
        if len(live) >= self.max_pending:
            raise TooManyPending(f"{len(live)} logins already waiting")
        ticket = b64url_encode(self.rand.random_bytes(16))
        approval = Approval(
            ticket,
            user,
            client,
            nas_identifier,
            nas_address,
            calling_station,
            called_station,
            now,
            now + self.timeout,
        )
        if not self.store.put_once(
            self._key("approval", ticket), approval.to_record(), self.timeout + _KEEP, now
        ):
            raise StoreUnavailable("approval ticket collision")  # pragma: no cover
        live.append((ticket, approval.deadline))
        self.store.put(self._key("pending", user), json.dumps(live).encode())
        return approval

    def get(self, ticket: str, now: float) -> Approval | None:
        raw = self.store.peek(self._key("approval", ticket), now)
        return None if raw is None else Approval.from_record(raw)

    def outcome(self, ticket: str, now: float) -> str | None:
        raw = self.store.peek(self._key("outcome", ticket), now)
        return None if raw is None else raw.decode("ascii", "replace")

    def pending(self, user: str, now: float) -> list[Approval]:
        """The user's approvals still waiting, oldest first."""
        out = []
        for ticket, deadline in self._index(user):
            if deadline <= now or self.outcome(ticket, now) is not None:
                continue
            approval = self.get(ticket, now)
            if approval is not None and approval.user == user:
                out.append(approval)
        return sorted(out, key=lambda a: a.created)

    def _settle(self, ticket: str, outcome: str, now: float) -> str:
        if self.store.put_once(self._key("outcome", ticket), outcome.encode(), _KEEP, now):
            return outcome
        return self.outcome(ticket, now) or outcome

    def decide(self, ticket: str, user: str, approve: bool, now: float) -> str | None:
        """``user`` approves or denies ``ticket``: the outcome that stands (an earlier
        decision or expiry wins), or None when ``ticket`` is not a login of ``user``'s."""
        approval = self.get(ticket, now)
        if approval is None or approval.user != user:
            return None
        if now >= approval.deadline:
            return self._settle(ticket, EXPIRED, now)
        return self._settle(ticket, APPROVED if approve else DENIED, now)

    def expire(self, ticket: str, now: float) -> str:
        """The waiting side gave up: ``expired``, unless a decision landed first."""
        return self._settle(ticket, EXPIRED, now)


class EnrollmentLinks:
    """One-time enrollment tokens: ``issue`` for a user, ``take`` exactly once."""

    def __init__(
        self, store: Store, *, namespace: str = "bridge", rand: RandomSource = SYSTEM_RANDOM
    ) -> None:
        self.store = store
        self.ns = namespace
        self.rand = rand
        # the generation each link taken here had, for :meth:`restore`
        self._taken: OrderedDict[str, int] = OrderedDict()

    def _key(self, token: str) -> str:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        return f"{self.ns}:enroll:{b64url_encode(digest)}"

    def _generation_key(self, user: str) -> str:
        return f"{self.ns}:enroll-gen:{user}"

    def _generation(self, user: str) -> int:
        return self.store.counter(self._generation_key(user)) or 0

    def revoke_user(self, user: str) -> None:
        """Every link issued for ``user`` so far stops working (``eapkit user del``: a
        user added later under the same name must not be enrolled by the old link)."""
        while not self.store.advance(self._generation_key(user), self._generation(user) + 1):
            pass  # another revocation got there first: advance past it

    def issue(self, user: str, now: float, ttl: float = 86400.0) -> str:
        token = b64url_encode(self.rand.random_bytes(32))
        record = json.dumps(
            {"user": user, "expires": now + ttl, "gen": self._generation(user)}
        ).encode()
        if not self.store.put_once(self._key(token), record, ttl, now):
            raise StoreUnavailable("enrollment token collision")  # pragma: no cover
        return token

    def _read(self, raw: bytes | None) -> tuple[str, float, int] | None:
        if raw is None:
            return None
        try:
            d = json.loads(raw)
            user, expires, gen = str(d["user"]), float(d["expires"]), int(d.get("gen", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if gen != self._generation(user):
            return None  # revoked with revoke_user
        return user, expires, gen

    def peek(self, token: str, now: float) -> str | None:
        """The user a live token enrolls for, without using it up."""
        if not 1 <= len(token) <= 128:
            return None
        found = self._read(self.store.peek(self._key(token), now))
        return None if found is None else found[0]

    def take(self, token: str, now: float) -> tuple[str, float] | None:
        """Use the token up: (user, expiry), or None if it is not live."""
        if not 1 <= len(token) <= 128:
            return None
        key = self._key(token)
        found = self._read(self.store.take(key, now))
        if found is None:
            return None
        self._taken[key] = found[2]
        while len(self._taken) > 1000:
            self._taken.popitem(last=False)
        return found[0], found[1]

    def restore(self, token: str, user: str, expires: float, now: float) -> None:
        """Give a taken token back (the registration it was taken for failed)."""
        gen = self._taken.pop(self._key(token), None)
        if gen is not None and gen == self._generation(user) and expires > now:
            # not after a revoke_user that came between the take and now
            record = json.dumps({"user": user, "expires": expires, "gen": gen}).encode()
            self.store.put_once(self._key(token), record, expires - now, now)
