"""One authorization step for every login (DESIGN.md, "Authorization: one decision for
every login").

A method authenticates; it does not authorize.  Every finished conversation (EAP-TLS
included) and every plain PAP request passes through :meth:`Authorizer.authorize`:

1. **Who.**  A method that verified a certificate (:attr:`Outcome.certificate
   <eapkit.methods.base.Outcome.certificate>`, with :attr:`Factor.CERTIFICATE
   <eapkit.methods.base.Factor.CERTIFICATE>` among its factors) names the user by the
   certificate, by :class:`CertificateIdentity` (``[tls] identity``, ``[tls] realms``);
   the EAP Identity is only a hint (RFC 9190 §2.1.4 identity privacy).  Otherwise the
   user is the identity the method authenticated (a tunnel's inner identity, the PAP
   User-Name).
2. **Exists and enabled.**  The user's directory record must exist (else
   ``unknown_user``) and not be disabled (``user_disabled``); a directory that cannot
   answer fails closed (``directory_unavailable``).
3. **Factors.**  A user with a second factor needs a possession factor
   (``otp_device`` or ``security_key``); a certificate counts as possession only with
   ``[policy] certificate_is_possession = true`` (its key is hardware-bound).  A user
   whose second factor is a security key approved through the bridge
   (:mod:`eapkit.bridge`) passes here with one factor: the approval gate then holds
   the Accept until the key answers.  A NAS whose client entry says
   ``second_factor = "nas"`` runs the second factor itself, so one factor suffices
   there; the exemption is the :class:`Nas` entry the request came from, never a name.
4. **Reply.**  The Accept's attributes (Class, Framed-*, Session-Timeout) are the
   user's directory policy.

No decision depends on a method's name: only on the factors and names it proved.

Failed passwords are throttled (:class:`PasswordThrottle`) per (NAS, user) and per NAS,
with the store's expiring counters, like one-time codes are: past the limit a password
is refused with ``throttled`` before it is checked; a store failure refuses
(``store_unavailable``).  A success clears only its own (NAS, user) count.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from eapkit.credentials import ResponseCheck, Verdict
from eapkit.directory.base import Directory, User, policy_of
from eapkit.errors import ConfigError
from eapkit.methods.base import CertificateNames, Factor
from eapkit.methods.mschapv2_check import NtHashLookup
from eapkit.policy import UserPolicy
from eapkit.store.base import Store, StoreUnavailable

__all__ = [
    "IDENTITY_SOURCES",
    "Authorization",
    "Authorizer",
    "CertificateIdentity",
    "Nas",
    "PasswordThrottle",
    "current_nas",
    "nas_scope",
]

IDENTITY_SOURCES = ("san_upn", "san_email", "cn", "san_dns")
POSSESSION = frozenset({Factor.OTP_DEVICE, Factor.SECURITY_KEY})
# Reasons that mean "a password was checked and was wrong" (unknown users included, so
# that throttling does not tell who exists).
PASSWORD_FAILURES = frozenset({"bad_password", "unknown_user"})


class Nas(Protocol):
    """The client entry (:class:`eapkit.radius.clients.Client`) a request came from."""

    @property
    def name(self) -> str: ...

    @property
    def second_factor(self) -> str: ...


_request: ContextVar[tuple[Nas | None, float]] = ContextVar(
    "eapkit_authz_request", default=(None, 0.0)
)


@contextmanager
def nas_scope(nas: Nas | None, now: float) -> Iterator[None]:
    """The RADIUS layer names the client entry of the request being handled (and its
    time), so checks deep in a method (password, NT hash) can throttle per NAS."""
    token = _request.set((nas, now))
    try:
        yield
    finally:
        _request.reset(token)


def current_nas() -> Nas | None:
    return _request.get()[0]


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """The documented rule from a certificate to a directory user (``[tls] identity``).

    ``sources`` are tried in order and the first one present wins: ``san_upn`` (the
    Microsoft UPN otherName), ``san_email`` (rfc822Name), ``cn`` (the subject's common
    name), ``san_dns`` (dNSName, for machine certificates).  A UPN or e-mail
    ``user@realm`` counts only when ``realm`` is one of ``realms`` (compared without
    case) and then names ``user``; otherwise it is skipped.  The EAP Identity plays no
    part.
    """

    sources: tuple[str, ...] = ("san_upn", "san_email", "cn")
    realms: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources if s not in IDENTITY_SOURCES]
        if unknown or not self.sources:
            raise ConfigError(f"[tls] identity: each of {', '.join(IDENTITY_SOURCES)}")
        object.__setattr__(self, "realms", frozenset(r.casefold() for r in self.realms))

    def user(self, names: CertificateNames) -> str | None:
        """The directory user ``names`` map to, or None when no source is present."""
        table = {
            "san_upn": names.upns,
            "san_email": names.emails,
            "cn": names.common_names,
            "san_dns": names.dns_names,
        }
        for source in self.sources:
            for value in table[source]:
                value = value.strip()
                if source in ("san_upn", "san_email"):
                    local, at, realm = value.rpartition("@")
                    if at and local and realm.casefold() in self.realms:
                        return local
                if value:
                    return value
        return None


@dataclass
class PasswordThrottle:
    """Failed passwords per (NAS, user) and per NAS in a ``window`` (seconds), counted
    with :meth:`Store.incr <eapkit.store.base.Store.incr>`; at ``max_failures`` (per
    user) or ``max_nas_failures`` (per NAS) further passwords are refused unchecked
    until the window has passed since the last failure."""

    store: Store
    max_failures: int = 10
    max_nas_failures: int = 200
    window: float = 300.0

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.max_nas_failures < 1 or not self.window > 0:
            raise ConfigError("password throttling needs limits >= 1 and a positive window")

    @staticmethod
    def _keys(user: str, nas: Nas | None) -> tuple[str, str]:
        where = nas.name if nas is not None else "-"
        return f"pwfail:{where}:{user}", f"pwfail-nas:{where}"

    def refusal(self, user: str, now: float) -> str | None:
        """``throttled``, ``store_unavailable`` or None (go ahead and check)."""
        user_key, nas_key = self._keys(user, current_nas())
        try:
            if self.store.tally(user_key, now)[0] >= self.max_failures:
                return "throttled"
            if self.store.tally(nas_key, now)[0] >= self.max_nas_failures:
                return "throttled"
        except StoreUnavailable:
            return "store_unavailable"
        return None

    def failed(self, user: str, now: float) -> None:
        """Count one failure (raises StoreUnavailable)."""
        user_key, nas_key = self._keys(user, current_nas())
        self.store.incr(user_key, self.window, now)
        self.store.incr(nas_key, self.window, now)

    def succeeded(self, user: str) -> None:
        """Clear this NAS's count for ``user`` (raises StoreUnavailable)."""
        self.store.delete(self._keys(user, current_nas())[0])

    def guard(self, check: ResponseCheck) -> ResponseCheck:
        """``check`` behind the throttle: refused unchecked past the limit."""

        def guarded(user: str, response: str, now: float, /) -> Verdict:
            refusal = self.refusal(user, now)
            if refusal is not None:
                return Verdict.reject(refusal)
            return check(user, response, now)

        return guarded


@dataclass(frozen=True, slots=True)
class Authorization:
    """The decision: ``ok`` with the ``user`` the Accept names and their ``policy``, or
    a refusal ``reason`` for the decision log (never for the wire)."""

    ok: bool
    reason: str
    user: str
    policy: UserPolicy | None = None


@dataclass
class Authorizer:
    """The one decision (see the module docstring)."""

    users: Directory
    certificate_identity: CertificateIdentity = field(default_factory=CertificateIdentity)
    certificate_is_possession: bool = False
    approval_bridge: bool = False  # a security-key user's approval follows the Accept
    throttle: PasswordThrottle | None = None

    def _record(self, user: str) -> User | None:
        return self.users.get(user)

    def needs_possession(self, record: User | None) -> bool:
        """Must this login prove possession here (not later, not at the NAS)?"""
        if record is None or record.second_factor == "none":
            return False
        nas = current_nas()
        if nas is not None and nas.second_factor == "nas":
            return False
        return not (record.second_factor == "webauthn" and self.approval_bridge)

    def authorize(
        self,
        user: str,
        factors: Collection[str],
        certificate: CertificateNames | None,
        now: float,
    ) -> Authorization:
        """A method succeeded for ``user`` (the identity it authenticated), proving
        ``factors``; may the login pass, as whom, with which reply attributes?"""
        if certificate is not None and Factor.CERTIFICATE in factors:
            mapped = self.certificate_identity.user(certificate)
            if mapped is None:
                return Authorization(False, "certificate_identity", user)
            user = mapped
        if not factors:
            return Authorization(False, "no_factor", user)
        try:
            record = self._record(user)
        except Exception:  # an unreachable directory fails closed
            return Authorization(False, "directory_unavailable", user)
        if record is None:
            return Authorization(False, "unknown_user", user)
        if record.disabled:
            return Authorization(False, "user_disabled", user)
        if self.needs_possession(record):
            proved = POSSESSION & set(factors)
            certificate_key = self.certificate_is_possession and Factor.CERTIFICATE in factors
            if not proved and not certificate_key:
                return Authorization(False, "second_factor_required", user)
        if Factor.PASSWORD in factors and self.throttle is not None:
            try:
                self.throttle.succeeded(user)
            except StoreUnavailable:
                return Authorization(False, "store_unavailable", user)
        return Authorization(True, "ok", user, policy_of(record))

    def refused(self, user: str, reason: str, now: float) -> str:
        """A method failed for ``user`` with ``reason``: count a failed password, and
        say what the log should call it.  An ``unknown_user`` who exists had their NT
        hash withheld (:meth:`nt_hash`): throttled, disabled, or a second factor
        required."""
        if reason not in PASSWORD_FAILURES:
            return reason
        if self.throttle is not None:
            refusal = self.throttle.refusal(user, now)
            if refusal is not None:
                return refusal
        if reason == "unknown_user":
            try:
                record = self._record(user)
            except Exception:
                return "directory_unavailable"
            if record is not None and record.disabled:
                return "user_disabled"
            if self.needs_possession(record):
                return "second_factor_required"
        if self.throttle is not None:
            try:
                self.throttle.failed(user, now)
            except StoreUnavailable:
                return "store_unavailable"
        return reason

    def nt_hash(self, lookup: NtHashLookup) -> NtHashLookup:
        """MS-CHAPv2's NT-hash lookup behind the policy: none (so the check runs against
        the stand-in and fails like a wrong password, RFC 2759 §6 E=691) for a throttled
        user, a disabled one, and one who must prove possession in this conversation:
        MS-CHAPv2 proves only a password, and a Success would confirm it."""

        def guarded(user: str) -> bytes | None:
            if (
                self.throttle is not None
                and self.throttle.refusal(user, _request.get()[1]) is not None
            ):
                return None
            try:
                record = self._record(user)
            except Exception:
                return None
            if record is None or record.disabled or self.needs_possession(record):
                return None
            return lookup(user)

        return guarded
