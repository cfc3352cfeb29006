"""Helpdesk bypass codes: a temporary code that stands in for a user's second factor.

A user who lost their phone calls the helpdesk; an administrator issues
``eapkit bypass alice --ttl 1h --uses 1 --reason "lost phone, ticket 4711" --by bob``
and reads the code to them once.  The code then works where the user's one-time code
would (after the password, never in its place: :mod:`eapkit.second_factor`), within
its scope:

- **time**: until ``expires``;
- **uses**: at most ``uses`` logins; each use advances the store's monotonic counter
  ``bypass:used:{id}`` by one with :meth:`Store.advance
  <eapkit.store.base.Store.advance>`, a compare-and-set in the backend, so one use
  cannot be spent twice by two nodes at once (like an OTP step, RFC 6238 §5.2);
- **methods**: the catalog names of the EAP methods (and ``pap``, plain RADIUS
  User-Password, RFC 2865 §5.2) it may be used in; the login's method is named by
  :func:`method_scope` around the check;
- **client**: the client-table name of the one NAS it may come from
  (:func:`eapkit.authz.current_nas`).

The code (100 random bits, ``xxxxx-xxxxx-xxxxx-xxxxx`` in RFC 4648 base32) is shown
once and stored as a salted HMAC-SHA-256, which is itself sealed like every secret in
the store (:class:`~eapkit.store.records.SealedRecords`), so ``eapkit store rekey``
re-seals it too.  Wrong codes count against a per-user failure tally like the OTP
verifiers' (RFC 4226 §7.3): past ``max_failures`` in ``window`` every code is refused
with ``locked_out``.

Every issue, use, refused use and revocation is one decision-log line with ``event``
``bypass_issued`` / ``bypass_used`` / ``bypass_refused`` / ``bypass_revoked`` and the
fields ``user``, ``by`` (the issuing administrator), ``reason``, ``id``, ``scope``; no
line holds the code.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from eapkit.authz import current_nas
from eapkit.catalog import LOGIN_METHODS
from eapkit.credentials import ResponseCheck, TwoRoundCheck, Verdict
from eapkit.errors import EapkitError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.reset import admin_key
from eapkit.store.base import Store, StoreUnavailable
from eapkit.store.memory import MemoryStore
from eapkit.store.records import SealedRecords
from eapkit.store.sealing import Sealer, SealError

__all__ = [
    "BYPASS_LENGTH",
    "BYPASS_PATTERN",
    "METHODS",
    "Bypass",
    "BypassCodes",
    "BypassRefused",
    "current_method",
    "in_method",
    "method_scope",
]

AuditSink = Callable[[dict[str, Any]], None]
BYPASS_PATTERN = re.compile(r"[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}")
BYPASS_LENGTH = 23
METHODS = LOGIN_METHODS
MAX_TTL = 7 * 86400.0  # a bypass is for today's call, not a second password
MAX_USES = 100
KEEP_EXPIRED = 86400.0  # an expired code stays listable this long
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_INDEX = "bypass:index"  # {id: user}: every code not revoked (expired ones too)


class BypassRefused(EapkitError):
    """A bypass command's input was refused (no reason, no issuer, bad scope, no such id)."""


# -- the login's method ----------------------------------------------------------------

_method: ContextVar[str | None] = ContextVar("eapkit_bypass_method", default=None)


@contextmanager
def method_scope(name: str) -> Iterator[None]:
    """Name the method (catalog name, or ``pap``) of the check that runs inside."""
    token = _method.set(name)
    try:
        yield
    finally:
        _method.reset(token)


def current_method() -> str | None:
    return _method.get()


@dataclass(frozen=True, slots=True)
class _InMethod:
    name: str
    check: ResponseCheck

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        with method_scope(self.name):
            return self.check(user, response, now)


@dataclass(frozen=True, slots=True)
class _TwoRoundInMethod:
    name: str
    check: TwoRoundCheck

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        with method_scope(self.name):
            return self.check(user, response, now)

    def second(self, user: str, code: str, now: float, /) -> Verdict:
        with method_scope(self.name):
            return self.check.second(user, code, now)


def in_method(name: str, check: ResponseCheck | None) -> ResponseCheck | None:
    """``check`` run inside :func:`method_scope` ``(name)`` (a two-round check keeps
    its second round)."""
    if check is None:
        return None
    if isinstance(check, TwoRoundCheck):
        return _TwoRoundInMethod(name, check)
    return _InMethod(name, check)


# -- records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bypass:
    """One issued code (never the code itself)."""

    id: str
    user: str
    by: str
    reason: str
    created: float
    expires: float
    uses: int
    methods: tuple[str, ...] = ()  # empty: any method
    client: str = ""  # empty: any NAS
    salt: str = ""

    def scope(self) -> dict[str, Any]:
        return {
            "expires": round(self.expires, 3),
            "uses": self.uses,
            "methods": list(self.methods),
            "client": self.client,
        }

    def fields(self) -> dict[str, Any]:
        return {"v": 1, **asdict(self), "methods": list(self.methods)}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> Bypass:
        return cls(
            str(d["id"]),
            str(d["user"]),
            str(d["by"]),
            str(d["reason"]),
            float(d["created"]),
            float(d["expires"]),
            int(d["uses"]),
            tuple(str(m) for m in d.get("methods", [])),
            str(d.get("client", "")),
            str(d["salt"]),
        )


def _record_key(bypass_id: str) -> str:
    return f"bypass:code:{bypass_id}"


def _used_key(bypass_id: str) -> str:
    return f"bypass:used:{bypass_id}"


class BypassCodes:
    """Issue, list, revoke and use bypass codes on the shared store."""

    def __init__(
        self,
        store: Store,
        sealer: Sealer | None,
        *,
        random: RandomSource = SYSTEM_RANDOM,
        audit: AuditSink | None = None,
        max_failures: int = 5,
        window: float = 900.0,
        administrators: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        # [admin] administrators as the server read them: a code whose issuer is no
        # longer listed is refused (None: not checked)
        self.administrators = administrators
        self.records = SealedRecords(store, sealer, what="bypass code digests")
        self._decoy = self._make_decoy(sealer)
        self.random = random
        self.audit = audit
        self.max_failures = max_failures
        self.window = window

    # -- the administrator's side ------------------------------------------------------

    def issue(
        self,
        user: str,
        *,
        by: str,
        reason: str,
        ttl: float,
        uses: int,
        now: float,
        methods: tuple[str, ...] = (),
        client: str = "",
    ) -> tuple[Bypass, str]:
        """A new code for ``user``: (its record, the code, shown once)."""
        if not reason.strip():
            raise BypassRefused("a bypass needs a reason (--reason)")
        if not by.strip():
            raise BypassRefused("a bypass needs the issuing administrator (--by or EAPKIT_ADMIN)")
        if not 0 < ttl <= MAX_TTL:
            raise BypassRefused(f"--ttl must be more than 0 and at most {MAX_TTL / 3600:g}h")
        if not 1 <= uses <= MAX_USES:
            raise BypassRefused(f"--uses must be 1..{MAX_USES}")
        # " PAP" is pap: the scope holds catalog names, so a login's name compares equal
        methods = tuple(dict.fromkeys(m.strip().lower() for m in methods if m.strip()))
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise BypassRefused(f"unknown method {unknown[0]!r}: one of {', '.join(METHODS)}")
        raw = self.random.random_bytes(20)
        text = "".join(_B32[b & 31] for b in raw)
        code = "-".join(text[i : i + 5] for i in range(0, 20, 5))
        bypass = Bypass(
            self.random.random_bytes(8).hex(),
            user,
            by.strip(),
            reason.strip(),
            now,
            now + ttl,
            uses,
            tuple(methods),
            client,
            self.random.random_bytes(16).hex(),
        )
        self.records.write(_record_key(bypass.id), bypass.fields(), self._digest(bypass, code))
        stale = self._stale(now)
        for old_id in stale:
            self.records.delete(_record_key(old_id))
            self.store.delete(_used_key(old_id))

        def add(index: dict[str, str]) -> None:
            for old_id in stale:
                index.pop(old_id, None)
            index[bypass.id] = user

        self._update_index(add)
        self._emit("bypass_issued", bypass)
        return bypass, code

    def get(self, bypass_id: str) -> Bypass | None:
        raw = self.records.read(_record_key(bypass_id))
        if raw is None:
            return None
        return Bypass.from_fields(self.records.open(_record_key(bypass_id), raw)[0])

    def used(self, bypass_id: str) -> int:
        return self.store.counter(_used_key(bypass_id)) or 0

    def all(self, user: str | None = None) -> list[Bypass]:
        """The codes not revoked (expired and used-up ones too), oldest first."""
        found = []
        for bypass_id, owner in self._index().items():
            if user is None or owner == user:
                bypass = self.get(bypass_id)
                if bypass is not None:
                    found.append(bypass)
        return sorted(found, key=lambda b: b.created)

    def revoke(self, bypass_id: str, *, by: str, reason: str, now: float) -> Bypass:
        """Remove the code (a login with it is refused from now on)."""
        if not by.strip():
            raise BypassRefused("revoking needs the acting administrator (--by or EAPKIT_ADMIN)")
        bypass = self.get(bypass_id)
        if bypass is None:
            raise BypassRefused(f"no bypass {bypass_id}")
        self.records.delete(_record_key(bypass_id))
        self.store.delete(_used_key(bypass_id))
        self._update_index(lambda index: index.pop(bypass_id, None))
        self._emit(
            "bypass_revoked",
            bypass,
            by=by.strip(),
            reason=reason.strip() or "revoked",
            issued_by=bypass.by,
            issued_reason=bypass.reason,
        )
        return bypass

    def revoke_user(self, user: str, *, by: str, reason: str, now: float) -> list[Bypass]:
        """Revoke every code of ``user`` (``eapkit user del``: a user added later under
        the same name must not inherit a code read out to someone else)."""
        revoked = []
        for bypass_id, owner in self._index().items():
            if owner == user:
                try:
                    revoked.append(self.revoke(bypass_id, by=by, reason=reason, now=now))
                except BypassRefused:  # revoked meanwhile
                    continue
        return revoked

    # -- the login's side --------------------------------------------------------------

    def use(self, user: str, code: str, now: float) -> Verdict:
        """Spend one use of ``code`` if it is one of ``user``'s codes and in scope.

        Raises StoreUnavailable (the caller fails closed)."""
        fail_key = f"bypass:fail:{user}"
        if self.store.tally(fail_key, now)[0] >= self.max_failures:
            return Verdict.reject("locked_out")
        bypass = self._match(user, code.strip().lower())
        if bypass is None:
            self.store.incr(fail_key, self.window, now)
            return Verdict.reject("bad_code")
        refusal = self._out_of_scope(bypass, now)
        if refusal is None:
            refusal = self._spend(bypass)
        if refusal is None and self.records.read(_record_key(bypass.id)) is None:
            # revoked between our read and our spend: the revocation came first (and
            # the counter our spend re-created goes with the record)
            refusal = "bypass_revoked"
            self.store.delete(_used_key(bypass.id))
        if refusal is not None:
            self._emit("bypass_refused", bypass, refusal=refusal, **self._where())
            return Verdict.reject(refusal)
        self._emit("bypass_used", bypass, used=self.used(bypass.id), **self._where())
        return Verdict.accept(user)

    @staticmethod
    def _make_decoy(sealer: Sealer | None) -> tuple[str, bytes]:
        """A sealed record written nowhere: a user without codes costs what a user
        with one does (a store read, an unseal, an HMAC), so the time of a wrong
        code does not say whether someone has a live bypass."""
        scratch = SealedRecords(MemoryStore(), sealer)
        key = _record_key("decoy")
        fields = Bypass("decoy", "", "", "", 0.0, 0.0, 1, salt="00" * 16).fields()
        scratch.write(key, fields, bytes(32))
        raw = scratch.store.get(key)
        assert raw is not None
        return key, raw

    def _decoy_match(self, code: str) -> None:
        key, raw = self._decoy
        self.records.read(_record_key("0" * 16))  # an id never issued: a real read
        fields, digest = self.records.open(key, raw)
        hmac.compare_digest(digest, self._digest(Bypass.from_fields(fields), code))

    def _match(self, user: str, code: str) -> Bypass | None:
        owned = [bypass_id for bypass_id, owner in self._index().items() if owner == user]
        if not owned:
            self._decoy_match(code)
        for bypass_id in owned:
            key = _record_key(bypass_id)
            raw = self.records.read(key)
            if raw is None:
                continue
            try:
                fields, digest = self.records.open(key, raw)
                bypass = Bypass.from_fields(fields)
            except (SealError, ValueError, KeyError, TypeError) as exc:
                # a record that does not open refuses, like any store failure
                raise StoreUnavailable(f"bypass record {bypass_id} does not load") from exc
            if bypass.user == user and hmac.compare_digest(digest, self._digest(bypass, code)):
                return bypass
        return None

    def _out_of_scope(self, bypass: Bypass, now: float) -> str | None:
        if now >= bypass.expires:
            return "bypass_expired"
        if self.administrators is not None and admin_key(bypass.by) not in {
            admin_key(a) for a in self.administrators
        }:
            return "bypass_issuer_removed"
        if bypass.methods and current_method() not in bypass.methods:
            return "bypass_wrong_method"
        if bypass.client:
            nas = current_nas()
            if nas is None or nas.name != bypass.client:
                return "bypass_wrong_client"
        return None

    def _spend(self, bypass: Bypass) -> str | None:
        """One use, atomically: advance ``used`` from n to n + 1 (compare-and-set); a
        concurrent use that got there first makes us read again."""
        key = _used_key(bypass.id)
        while True:
            used = self.store.counter(key) or 0
            if used >= bypass.uses:
                return "bypass_used_up"
            if self.store.advance(key, used + 1):
                return None

    def _digest(self, bypass: Bypass, code: str) -> bytes:
        salt = bytes.fromhex(bypass.salt)
        return hmac.digest(salt, f"{bypass.user}\x00{bypass.id}\x00{code}".encode(), "sha256")

    def _stale(self, now: float) -> list[str]:
        """Codes expired over ``KEEP_EXPIRED`` ago (their records go on the next issue)."""
        stale = []
        for bypass_id in self._index():
            bypass = self.get(bypass_id)
            if bypass is None or now >= bypass.expires + KEEP_EXPIRED:
                stale.append(bypass_id)
        return stale

    def _update_index(self, change: Callable[[dict[str, str]], object]) -> None:
        """Apply ``change`` to the index by compare-and-swap where the store has it
        (two administrators issuing at once both land)."""
        swap = getattr(self.store, "swap", None)
        for _ in range(16):
            raw = self.store.get(_INDEX)
            index = self._parse_index(raw)
            change(index)
            new = json.dumps(index, sort_keys=True).encode()
            if raw is None or swap is None:  # the first code ever, or a store without swap
                self.store.put(_INDEX, new)
                return
            if swap(_INDEX, raw, new):
                return
        raise StoreUnavailable("the bypass index changed too often to update")

    def _index(self) -> dict[str, str]:
        return self._parse_index(self.store.get(_INDEX))

    @staticmethod
    def _parse_index(raw: bytes | None) -> dict[str, str]:
        if raw is None:
            return {}
        try:
            index = json.loads(raw)
        except ValueError as exc:
            raise StoreUnavailable("the bypass index does not load") from exc
        if not isinstance(index, dict):
            raise StoreUnavailable("the bypass index does not load")
        return {str(k): str(v) for k, v in index.items()}

    @staticmethod
    def _where() -> dict[str, Any]:
        nas = current_nas()
        return {"method": current_method() or "", "client": nas.name if nas else ""}

    def _emit(self, event: str, bypass: Bypass, **extra: Any) -> None:
        if self.audit is None:
            return
        line = {
            "event": event,
            "user": bypass.user,
            "by": bypass.by,
            "reason": bypass.reason,
            "id": bypass.id,
            "scope": bypass.scope(),
        }
        self.audit({**line, **extra})
