"""Two-person factor resets: one administrator asks, a different one approves.

Removing a user's second factors (a lost phone, a stolen key) is what an attacker who
talked one helpdesk person round would want, so it takes two people:

1. ``eapkit reset alice --factors totp --reason "lost phone" --by ada`` writes a
   pending :class:`ResetRequest` (``reset:req:{id}``) that expires (default 24 h);
2. ``eapkit approve ID --by grace``: a different configured administrator approves it
   before it expires.  The approval and the removal of every credential the request
   names are **one store transaction**: the request record moves from its pending bytes
   to ``approved`` by compare-and-swap *and* the credentials' keys are deleted in the
   same step (``swap(key, old, new, delete=...)`` on the SQLite, Redis and memory
   stores), so two approvers cannot both apply it and a failure leaves nothing half
   removed.

The user's second-factor kind in the directory is left as it was: until they enroll
again (the one-time link ``eapkit approve`` prints, :mod:`eapkit.bridge`) they cannot
log in with the removed factor, and nothing falls back to the password alone (fail
closed).  A helpdesk bypass (:mod:`eapkit.bypass`) bridges the gap if needed.

Decision-log lines: ``reset_requested``, ``reset_approved`` (with ``removed``, the
number of store keys), ``reset_expired`` (an approval that came too late),
``reset_cancelled`` (the user was deleted while it was pending), each with
``user``, ``by``, ``reason``, ``id`` and ``scope`` (the factors).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from eapkit.errors import EapkitError
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = [
    "DEFAULT_TTL",
    "FACTORS",
    "ResetRefused",
    "ResetRequest",
    "ResetRequests",
    "ResetStore",
    "admin_key",
    "factor_keys",
]

AuditSink = Callable[[dict[str, Any]], None]
FACTORS = ("totp", "yubikey", "webauthn", "recovery")
DEFAULT_TTL = 86400.0
PENDING, APPROVED, EXPIRED, CANCELLED = "pending", "approved", "expired", "cancelled"
_INDEX = "reset:index"
WEBAUTHN_NS = "webauthn"  # eapkit.verify.webauthn's default namespace


def admin_key(name: str) -> str:
    """One administrator under every spelling of their name: NFKC (fullwidth letters
    are ASCII), no surrounding space, case folded (``Ada`` is ``ada``).  The
    two-person rule compares these, never the raw names."""
    return unicodedata.normalize("NFKC", name).strip().casefold()


class ResetRefused(EapkitError):
    """A reset or approval was refused (no reason, requester approving, expired...)."""


class ResetStore(Protocol):
    """The store operations a reset needs (SQLite, Redis and memory stores)."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def record_keys(self, after: str = "", limit: int | None = None) -> list[str]: ...

    def swap(self, key: str, old: bytes, new: bytes, delete: Sequence[str] = ()) -> bool: ...


@dataclass(frozen=True, slots=True)
class ResetRequest:
    id: str
    user: str
    factors: tuple[str, ...]
    by: str
    reason: str
    created: float
    expires: float
    state: str = PENDING
    approved_by: str = ""
    decided: float = 0.0

    def to_record(self) -> bytes:
        return json.dumps({**asdict(self), "factors": list(self.factors)}, sort_keys=True).encode()

    @classmethod
    def from_record(cls, raw: bytes) -> ResetRequest:
        d = json.loads(raw)
        return cls(
            str(d["id"]),
            str(d["user"]),
            tuple(str(f) for f in d["factors"]),
            str(d["by"]),
            str(d["reason"]),
            float(d["created"]),
            float(d["expires"]),
            str(d["state"]),
            str(d.get("approved_by", "")),
            float(d.get("decided", 0.0)),
        )

    def state_at(self, now: float) -> str:
        return EXPIRED if self.state == PENDING and now >= self.expires else self.state


def _prefixed(store: ResetStore, prefix: str) -> list[str]:
    """Record keys starting with ``prefix`` (a walk from ``prefix`` in key order)."""
    out: list[str] = []
    after = prefix
    while keys := store.record_keys(after=after, limit=500):
        for key in keys:
            if not key.startswith(prefix):
                return out
            out.append(key)
        after = keys[-1]
    return out


def factor_keys(store: ResetStore, user: str, factors: Sequence[str]) -> list[str]:
    """Every store key that holds ``user``'s credentials of ``factors`` (records,
    their counters and single-use tokens: a delete removes every family of a key)."""
    keys: list[str] = []
    if "totp" in factors:
        keys.append(f"otp:cred:{user}")
    if "yubikey" in factors:
        for key in _prefixed(store, "yk:cred:"):
            raw = store.get(key)
            if raw is not None and _owner(raw) == user:
                keys.append(key)
    if "webauthn" in factors:
        keys.append(f"{WEBAUTHN_NS}:user:{user}")
        for key in _prefixed(store, f"{WEBAUTHN_NS}:cred:"):
            raw = store.get(key)
            if raw is not None and _owner(raw) == user:
                keys += [key, key.replace(":cred:", ":count:", 1)]
    if "recovery" in factors:
        keys.append(f"recovery:{user}")
        raw = store.get(f"recovery:{user}")
        if raw is not None:
            try:
                digests = json.loads(raw).get("digests", [])
            except (ValueError, AttributeError):
                digests = []
            keys += [f"recovery:{user}:{d}" for d in digests if isinstance(d, str)]
    return keys


def _owner(raw: bytes) -> str | None:
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    return str(d["user"]) if isinstance(d, dict) and "user" in d else None


class ResetRequests:
    """Pending, approved and expired reset requests on the shared store."""

    def __init__(
        self,
        store: ResetStore,
        *,
        random: RandomSource = SYSTEM_RANDOM,
        audit: AuditSink | None = None,
        key_of: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.random = random
        self.audit = audit
        # what a user's factors are stored under (SecondFactors.key: an LDAP/AD user's
        # stable identifier, so a reset removes the factors the checks read)
        self.key_of = key_of

    def request(
        self,
        user: str,
        factors: Sequence[str],
        *,
        by: str,
        reason: str,
        now: float,
        ttl: float = DEFAULT_TTL,
    ) -> ResetRequest:
        if not reason.strip():
            raise ResetRefused("a reset needs a reason (--reason)")
        if not by.strip():
            raise ResetRefused("a reset needs the requesting administrator (--by or EAPKIT_ADMIN)")
        chosen = tuple(FACTORS) if "all" in factors else tuple(dict.fromkeys(factors))
        unknown = [f for f in chosen if f not in FACTORS]
        if not chosen or unknown:
            raise ResetRefused(f"--factors is a list of {', '.join(FACTORS)} or all")
        if not 0 < ttl <= 7 * 86400:
            raise ResetRefused("a reset request expires after more than 0 and at most 7 days")
        req = ResetRequest(
            self.random.random_bytes(8).hex(),
            user,
            chosen,
            by.strip(),
            reason.strip(),
            now,
            now + ttl,
        )
        self.store.put(f"reset:req:{req.id}", req.to_record())
        index = self._index()
        self.store.put(_INDEX, json.dumps([*index, req.id]).encode())
        self._emit("reset_requested", req, by=req.by)
        return req

    def get(self, request_id: str) -> ResetRequest | None:
        raw = self.store.get(f"reset:req:{request_id}")
        if raw is None:
            return None
        try:
            return ResetRequest.from_record(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ResetRefused(f"reset request {request_id} does not load") from exc

    def all(self) -> list[ResetRequest]:
        """Every request, oldest first: the ``reset:req:`` records themselves (the
        index is written without compare-and-swap, so two administrators asking at
        once could leave one request out of it; the records cannot be lost)."""
        ids = dict.fromkeys(self._index())
        ids.update(
            dict.fromkeys(k.removeprefix("reset:req:") for k in _prefixed(self.store, "reset:req:"))
        )
        found = [r for r in (self.get(i) for i in ids) if r is not None]
        return sorted(found, key=lambda r: r.created)

    def sweep(self, now: float) -> list[ResetRequest]:
        """Mark the pending requests past their expiry ``expired`` (one
        ``reset_expired`` line each, ``by`` empty: nobody acted); the ones marked."""
        marked = []
        for req in self.all():
            if req.state == PENDING and now >= req.expires:
                key = f"reset:req:{req.id}"
                raw = self.store.get(key)
                gone = replace(req, state=EXPIRED, decided=now)
                if raw is not None and self.store.swap(key, raw, gone.to_record()):
                    self._emit("reset_expired", req, by="")
                    marked.append(gone)
        return marked

    def cancel_user(self, user: str, *, by: str, now: float) -> list[ResetRequest]:
        """Cancel ``user``'s pending requests (``eapkit user del``: approved later, one
        would remove the factors of a new user who got the same name); one
        ``reset_cancelled`` line each."""
        cancelled = []
        for req in self.all():
            if req.user == user and req.state == PENDING:
                key = f"reset:req:{req.id}"
                raw = self.store.get(key)
                gone = replace(req, state=CANCELLED, decided=now)
                if raw is not None and self.store.swap(key, raw, gone.to_record()):
                    self._emit("reset_cancelled", req, by=by)
                    cancelled.append(gone)
        return cancelled

    def approve(
        self,
        request_id: str,
        *,
        by: str,
        now: float,
        administrators: Sequence[str] | None = None,
    ) -> tuple[ResetRequest, int]:
        """Apply the request (one transaction); (the approved request, keys removed).

        ``administrators`` (the configured list): the requester must still be one; a
        request by someone removed from the list since is refused, not applied."""
        key = f"reset:req:{request_id}"
        raw = self.store.get(key)
        if raw is None:
            raise ResetRefused(f"no reset request {request_id}")
        req = self.get(request_id)
        assert req is not None
        approver = by.strip()
        if not approver:
            raise ResetRefused("approving needs the acting administrator (--by or EAPKIT_ADMIN)")
        if admin_key(approver) == admin_key(req.by):
            raise ResetRefused(
                f"{approver} asked for this reset: a different administrator approves"
            )
        if administrators is not None and admin_key(req.by) not in {
            admin_key(a) for a in administrators
        }:
            raise ResetRefused(
                f"{req.by}, who asked for reset {request_id}, is no longer an administrator: "
                "ask for a new one"
            )
        state = req.state_at(now)
        if state == EXPIRED:
            if req.state == PENDING and self.store.swap(
                key, raw, replace(req, state=EXPIRED, decided=now).to_record()
            ):
                self._emit("reset_expired", req, by=approver)
            raise ResetRefused(f"reset request {request_id} expired; ask for a new one")
        if state != PENDING:
            raise ResetRefused(f"reset request {request_id} is already {state}")
        owner = self.key_of(req.user) if self.key_of is not None else req.user
        doomed = factor_keys(self.store, owner, req.factors)
        done = replace(req, state=APPROVED, approved_by=approver, decided=now)
        if not self.store.swap(key, raw, done.to_record(), delete=doomed):
            raise ResetRefused(f"reset request {request_id} changed meanwhile: look again")
        self._emit("reset_approved", req, by=approver, requested_by=req.by, removed=len(doomed))
        return done, len(doomed)

    def _index(self) -> list[str]:
        raw = self.store.get(_INDEX)
        try:
            index = json.loads(raw) if raw is not None else []
        except ValueError:
            index = []
        return [str(i) for i in index] if isinstance(index, list) else []

    def _emit(self, event: str, req: ResetRequest, **extra: Any) -> None:
        if self.audit is not None:
            line = {
                "event": event,
                "user": req.user,
                "reason": req.reason,
                "id": req.id,
                "scope": {"factors": list(req.factors), "expires": round(req.expires, 3)},
            }
            self.audit({**line, **extra})
