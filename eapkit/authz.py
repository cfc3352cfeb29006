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
   ``unknown_user``) and not be disabled (``user_disabled``, or the state the directory
   names: ``account_disabled``, ``account_expired``, ... from Active Directory); a
   directory that cannot answer fails closed (``directory_unavailable``).
   The ``[[policy.groups]]`` entry that matched may list the ``methods`` its members
   may use (a catalog name, :mod:`eapkit.catalog`, or ``pap``): a login by another
   method (the outer EAP method, or RADIUS PAP / MS-CHAPv2) is refused with
   ``method_not_allowed``.  This is the one decision that reads a method's name, the
   name the handler passes (:meth:`Authorizer.authorize` ``method``).
3. **Factors.**  A user with a second factor needs a possession factor
   (``otp_device`` or ``security_key``); a certificate counts as possession only with
   ``[policy] certificate_is_possession = true`` (its key is hardware-bound).  A user
   whose second factor is a security key approved through the bridge
   (:mod:`eapkit.bridge`) passes here with one factor: the approval gate then holds
   the Accept until the key answers.  A NAS whose client entry says
   ``second_factor = "nas"`` runs the second factor itself, so one factor suffices
   there; the exemption is the :class:`Nas` entry the request came from, never a name.
   A user whose group accepts only second factors they have not enrolled
   (``second_factor = ["security_key", "yubikey"]``, :attr:`User.factor_not_allowed
   <eapkit.directory.base.User.factor_not_allowed>`) is refused with
   ``second_factor_required`` whatever they proved.
4. **Reply.**  The Accept's attributes (Class, Framed-*, Session-Timeout, Filter-Id,
   vendor attributes) are the
   user's directory policy.  The ``[[policy.groups]]`` entry that made it (LDAP, AD:
   :attr:`User.policy_name <eapkit.directory.base.User.policy_name>`) is named in the
   decision (:attr:`Authorization.policy_name`), on an Accept and on every refusal
   from step 2 on, from the record already read.

No other decision depends on a method's name: only on the factors and names it proved.

**Chaining tunnels (TEAP, RFC 9930 §3.6).**  A TEAP login carries one
:class:`~eapkit.methods.base.InnerProof` per inner authentication, a machine's and a
user's.  :class:`ChainingPolicy` (``[teap]``) decides on them before step 2: every inner
proof must have succeeded (``machine_failed``, ``user_failed``); the identity types
``[teap] identity`` requires must be there (``machine_missing``, ``user_missing``); the
machine is named by its certificate (``[teap] machine_identity``, ``machine_prefix``) or
by the account whose password it proved, which must carry ``machine_prefix``
(``host/``), and must exist and be enabled in the directory like a user
(``machine_identity``, ``unknown_machine``, ``machine_disabled``); a user may not be a
machine account (``user_identity``); one of the ``[[teap.rules]]``
must be met by the factors each identity proved (``teap_rule``); a user that a
``[[teap.bindings]]`` entry names may log in only from a machine it lists
(``machine_binding``).  Steps 2 to 4 then run for the user (or, in a machine-only login,
for the machine's account).

Failed passwords are throttled (:class:`PasswordThrottle`) per (NAS, user) and per NAS,
with the store's expiring counters, like one-time codes are: past the limit a password
is refused with ``throttled`` before it is checked; a store failure refuses
(``store_unavailable``).  A success clears only its own (NAS, user) count.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from eapkit.credentials import ResponseCheck, Verdict
from eapkit.devices import DeviceRegistry, device_event
from eapkit.directory.base import Directory, StandsInNtCheck, User, policy_of, refusal_of
from eapkit.directory.scope import RequestScoped
from eapkit.errors import ConfigError, DecodeError
from eapkit.methods.base import CertificateNames, Factor, InnerProof
from eapkit.methods.mschapv2_check import DelegatedCheck, NtHashLookup
from eapkit.policy import UserPolicy
from eapkit.store.base import Store, StoreUnavailable

__all__ = [
    "IDENTITY_SOURCES",
    "TEAP_IDENTITIES",
    "Authorization",
    "Authorizer",
    "CertificateIdentity",
    "ChainingPolicy",
    "ChainingRule",
    "MachineBinding",
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


# (client entry, time, failure tallies already read in this request: key -> count)
_request: ContextVar[tuple[Nas | None, float, dict[str, int] | None]] = ContextVar(
    "eapkit_authz_request", default=(None, 0.0, None)
)


class nas_scope:
    """The RADIUS layer names the client entry of the request being handled (and its
    time), so checks deep in a method (password, NT hash) can throttle per NAS.  A
    class, not a generator: it is entered once per Access-Request (issue 21)."""

    __slots__ = ("_token", "_value")

    def __init__(self, nas: Nas | None, now: float) -> None:
        self._value: tuple[Nas | None, float, dict[str, int] | None] = (nas, now, {})

    def __enter__(self) -> None:
        self._token = _request.set(self._value)

    def __exit__(self, *exc: object) -> None:
        _request.reset(self._token)


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


# ``[teap] identity`` -> hostapd 2.10's eap_teap_id (src/eap_server/eap.h; RFC 9930 §3.6
# Identity-Type): which identity type the server asks for and which it requires.  Unset
# is 0: no Identity-Type TLV, one inner authentication of whoever answers.
TEAP_IDENTITIES = {
    "any": 0,  # no Identity-Type request; either identity type suffices
    "user": 1,  # user required
    "machine": 2,  # machine required
    "user_or_machine": 3,  # user requested, a machine accepted instead
    "machine_or_user": 4,  # machine requested, a user accepted instead
    "machine_and_user": 5,  # both required (hostapd's order: the user, then the machine)
}
_REQUIRED: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("user",),
    2: ("machine",),
    3: (),
    4: (),
    5: ("machine", "user"),
}


@dataclass(frozen=True, slots=True)
class ChainingRule:
    """One acceptable combination (``[[teap.rules]]``): the factors the machine and the
    user must each have proved.  An empty set asks nothing of that identity type (it
    need not be present)."""

    machine: frozenset[Factor] = frozenset()
    user: frozenset[Factor] = frozenset()

    def met(self, machine: frozenset[Factor] | None, user: frozenset[Factor] | None) -> bool:
        """``machine``/``user``: what each proved, None when it did not authenticate."""
        return (not self.machine or (machine is not None and self.machine <= machine)) and (
            not self.user or (user is not None and self.user <= user)
        )


@dataclass(frozen=True, slots=True)
class MachineBinding:
    """``[[teap.bindings]]``: the users (shell patterns of directory names) that may log
    in only from these machines (shell patterns of machine names, ``host/alice-*``)."""

    users: tuple[str, ...]
    machines: tuple[str, ...]

    def names(self, user: str) -> bool:
        return any(fnmatch.fnmatchcase(user, pattern) for pattern in self.users)

    def allows(self, machine: str) -> bool:
        return any(fnmatch.fnmatchcase(machine, pattern) for pattern in self.machines)


def _machine_identity() -> CertificateIdentity:
    return CertificateIdentity(("san_dns", "cn"))


@dataclass(frozen=True, slots=True)
class ChainingPolicy:
    """``[teap]``: what a chaining tunnel's inner proofs must add up to (module
    docstring).  ``identity`` is eap_teap_id 0-5 (:data:`TEAP_IDENTITIES`);
    ``machine_identity`` names a machine from its certificate, prefixed with
    ``machine_prefix`` (``laptop1.corp.example`` -> ``host/laptop1.corp.example``);
    with ``unbound_users = "deny"`` a user no binding names may not log in."""

    identity: int = 0
    rules: tuple[ChainingRule, ...] = ()
    bindings: tuple[MachineBinding, ...] = ()
    unbound_users: str = "allow"
    machine_identity: CertificateIdentity = field(default_factory=_machine_identity)
    machine_prefix: str = "host/"

    def __post_init__(self) -> None:
        if self.identity not in _REQUIRED:
            raise ConfigError("[teap] identity is eap_teap_id 0 to 5")
        if not self.machine_prefix:
            raise ConfigError("[teap] machine_prefix names machine accounts: it cannot be empty")
        if self.unbound_users not in ("allow", "deny"):
            raise ConfigError('[teap] unbound_users is "allow" or "deny"')

    def required(self) -> tuple[str, ...]:
        """The identity types a login must have proved."""
        return _REQUIRED[self.identity]

    def machine_name(self, proof: InnerProof) -> str | None:
        """The machine's account: by its certificate, else the identity whose password
        it proved (Windows sends ``host/NAME``), which must carry the prefix: a user's
        password is no machine's.  None: no machine account."""
        if Factor.MACHINE_CERTIFICATE in proof.factors and proof.certificate is not None:
            name = self.machine_identity.user(proof.certificate)
            if name is None:
                return None
            return name if name.startswith(self.machine_prefix) else self.machine_prefix + name
        return proof.identity if self.is_machine(proof.identity) else None

    def is_machine(self, name: str) -> bool:
        """Does ``name`` name a machine account?"""
        return bool(self.machine_prefix) and name.startswith(self.machine_prefix)

    def bound(self, user: str, machine: str | None) -> bool:
        """May ``user`` log in from ``machine`` (None: no machine authenticated)?"""
        bindings = [b for b in self.bindings if b.names(user)]
        if not bindings:
            return self.unbound_users == "allow"
        return machine is not None and any(b.allows(machine) for b in bindings)


@dataclass(frozen=True, slots=True)
class ChainedLogin:
    """A chaining tunnel's inner proofs as the policy read them: the successful proof of
    each identity type and the machine's account name."""

    machine: InnerProof | None
    user: InnerProof | None
    machine_name: str


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
        seen = _request.get()[2]
        try:
            failures = self.store.tally(user_key, now)[0]
            if seen is not None:
                seen[user_key] = failures
            if failures >= self.max_failures:
                return "throttled"
            if self.store.tally(nas_key, now)[0] >= self.max_nas_failures:
                return "throttled"
        except StoreUnavailable:
            return "store_unavailable"
        return None

    def failed(self, user: str, now: float) -> None:
        """Count one failure (raises StoreUnavailable)."""
        user_key, nas_key = self._keys(user, current_nas())
        failures = self.store.incr(user_key, self.window, now)
        self.store.incr(nas_key, self.window, now)
        seen = _request.get()[2]
        if seen is not None:
            seen[user_key] = failures

    def succeeded(self, user: str, now: float) -> None:
        """Clear this NAS's count for ``user`` (raises StoreUnavailable).  A count that
        is already zero (or expired) is left alone: a read, not a durable write, on
        the common path of a login without earlier failures.  The count :meth:`refusal`
        read earlier in the same request is reused, not read again."""
        key = self._keys(user, current_nas())[0]
        seen = _request.get()[2]
        failures = seen.get(key) if seen is not None else None
        if failures is None:
            failures = self.store.tally(key, now)[0]
        if failures:
            self.store.delete(key)
            if seen is not None:
                seen[key] = 0

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
    a refusal ``reason`` for the decision log (never for the wire).  ``policy_name``:
    the ``[[policy.groups]]`` entry that matched the user's record, for the log."""

    ok: bool
    reason: str
    user: str
    policy: UserPolicy | None = None
    machine: str = ""  # a chaining tunnel's machine account, when one authenticated
    policy_name: str | None = None


@dataclass
class Authorizer:
    """The one decision (see the module docstring)."""

    users: Directory
    certificate_identity: CertificateIdentity = field(default_factory=CertificateIdentity)
    certificate_is_possession: bool = False
    approval_bridge: bool = False  # a security-key user's approval follows the Accept
    throttle: PasswordThrottle | None = None
    chaining: ChainingPolicy = field(default_factory=ChainingPolicy)
    # From the NASes in ``device_clients`` (which run a user round after the device's:
    # eapkit.radius.device_rounds), a registered device's certificate names the device,
    # not a user (issue 20).  From any other NAS it is a user's certificate as before:
    # a device certificate alone never opens a session there.
    devices: DeviceRegistry | None = None
    device_clients: frozenset[str] = frozenset()
    device_log: Callable[[dict[str, Any]], None] | None = None  # device_refused lines

    def _device(
        self, certificate: CertificateNames | None, user: str, now: float
    ) -> Authorization | None:
        """The decision for a registered device's certificate (``device`` or
        ``device_revoked``), or None when the certificate is no registered device."""
        nas = current_nas()
        if nas is None or nas.name not in self.device_clients or self.devices is None:
            return None
        if certificate is None or not certificate.fingerprint:
            return None
        try:
            device = self.devices.by_fingerprint(certificate.fingerprint)
        except (StoreUnavailable, DecodeError):
            return Authorization(False, "store_unavailable", user)
        if device is None:
            return None
        if device.state != "active" and self.device_log is not None:
            self.device_log(device_event("device_revoked", None, device, now, nas.name))
        return Authorization(
            device.state == "active",
            "device" if device.state == "active" else "device_revoked",
            device.name,
        )

    def _record(self, user: str) -> User | None:
        return self.users.get(user)

    def needs_possession(self, record: User | None) -> bool:
        """Must this login prove possession here (not later, not at the NAS)?"""
        if record is None or record.second_factor == "none":
            return False
        nas = current_nas()
        if nas is not None and nas.second_factor == "nas":
            return False
        if record.factor_not_allowed:
            return True
        return not (record.second_factor == "webauthn" and self.approval_bridge)

    def authorize(
        self,
        user: str,
        factors: Collection[str],
        certificate: CertificateNames | None,
        now: float,
        inner: Sequence[InnerProof] | None = None,
        method: str | None = None,
    ) -> Authorization:
        """A method succeeded for ``user`` (the identity it authenticated), proving
        ``factors``; may the login pass, as whom, with which reply attributes?
        ``inner`` is a chaining tunnel's inner proofs (None for every other method);
        ``method`` the method's name for a group's ``methods`` (None: not checked)."""
        if inner is not None:
            return self._authorize_chained(inner, now, method)
        if certificate is not None and Factor.CERTIFICATE in factors:
            device = self._device(certificate, user, now)
            if device is not None:
                return device
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
        matched = record.policy_name
        if (refusal := refusal_of(record)) is not None:
            return Authorization(False, refusal, user, policy_name=matched)
        if method is not None and record.methods is not None and method not in record.methods:
            return Authorization(False, "method_not_allowed", user, policy_name=matched)
        if self.needs_possession(record):
            if record.factor_not_allowed:
                return Authorization(False, "second_factor_required", user, policy_name=matched)
            proved = POSSESSION & set(factors)
            certificate_key = self.certificate_is_possession and bool(
                {Factor.CERTIFICATE, Factor.MACHINE_CERTIFICATE} & set(factors)
            )
            if not proved and not certificate_key:
                return Authorization(False, "second_factor_required", user, policy_name=matched)
        if Factor.PASSWORD in factors and self.throttle is not None:
            try:
                self.throttle.succeeded(user, now)
            except StoreUnavailable:
                return Authorization(False, "store_unavailable", user, policy_name=matched)
        return Authorization(True, "ok", user, policy_of(record), policy_name=matched)

    def _chained(self, inner: Sequence[InnerProof]) -> ChainedLogin | str:
        """The successful proof of each identity type, or why the login cannot pass."""
        policy = self.chaining
        proofs: dict[str, InnerProof] = {}
        for proof in inner:
            if proof.identity_type not in ("machine", "user"):
                return "identity_type"
            if not proof.success:
                return f"{proof.identity_type}_failed"
            if not proof.factors:
                return "no_factor"
            proofs[proof.identity_type] = proof
        for kind in policy.required():
            if kind not in proofs:
                return f"{kind}_missing"
        if not proofs:
            return "identity_missing"
        machine, user = proofs.get("machine"), proofs.get("user")
        machine_name = ""
        if machine is not None:
            name = policy.machine_name(machine)
            if name is None:
                return "machine_identity"
            machine_name = name
        if policy.rules and not any(
            rule.met(
                machine.factors if machine else None,
                user.factors if user else None,
            )
            for rule in policy.rules
        ):
            return "teap_rule"
        return ChainedLogin(machine, user, machine_name)

    def _authorize_chained(
        self, inner: Sequence[InnerProof], now: float, method: str | None = None
    ) -> Authorization:
        """RFC 9930 §3.6: the machine and the user of one TEAP conversation (module
        docstring, "Chaining tunnels")."""
        login = self._chained(inner)
        first = inner[0].identity if inner else ""
        if isinstance(login, str):
            return Authorization(False, login, first)
        machine = login.machine_name
        if login.machine is not None:
            try:
                record = self._record(machine)
            except Exception:  # an unreachable directory fails closed
                return Authorization(False, "directory_unavailable", machine, machine=machine)
            if record is None:
                return Authorization(False, "unknown_machine", machine, machine=machine)
            if record.disabled:
                return Authorization(False, "machine_disabled", machine, machine=machine)
        if login.user is None:  # a machine-only login: the machine's account is the user
            assert login.machine is not None
            verdict = self.authorize(machine, login.machine.factors, None, now, method=method)
            return replace(verdict, machine=machine)
        proof = login.user
        factors = set(proof.factors)
        if login.machine is not None and Factor.MACHINE_CERTIFICATE in login.machine.factors:
            factors.add(Factor.MACHINE_CERTIFICATE)  # possession, with certificate_is_possession
        verdict = self.authorize(proof.identity, factors, proof.certificate, now, method=method)
        if verdict.ok and self.chaining.is_machine(verdict.user):
            # a machine account's credentials are no user's
            return Authorization(False, "user_identity", verdict.user, machine=machine)
        if verdict.ok and not self.chaining.bound(verdict.user, machine or None):
            return replace(
                verdict, ok=False, reason="machine_binding", policy=None, machine=machine
            )
        return replace(verdict, machine=machine)

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
            if record is not None and (refusal := refusal_of(record)) is not None:
                return refusal
            if self.needs_possession(record):
                return "second_factor_required"
        if self.throttle is not None:
            try:
                self.throttle.failed(user, now)
            except StoreUnavailable:
                return "store_unavailable"
        return reason

    def _nt_stand_in(self, user: str) -> DelegatedCheck | None:
        """What a withheld NT hash is checked against: the directory's own stand-in
        when its real check costs more than the local one (AD: ``ntlm_auth``, see
        :class:`~eapkit.directory.base.StandsInNtCheck`), else None (the stand-in hash)."""
        users = self.users.directory if isinstance(self.users, RequestScoped) else self.users
        return users.nt_stand_in(user) if isinstance(users, StandsInNtCheck) else None

    def nt_hash(self, lookup: NtHashLookup) -> NtHashLookup:
        """MS-CHAPv2's NT-hash lookup behind the policy: none (so the check runs against
        the stand-in and fails like a wrong password, RFC 2759 §6 E=691) for a throttled
        user, a disabled one, and one who must prove possession in this conversation:
        MS-CHAPv2 proves only a password, and a Success would confirm it.  An unknown,
        refused or possession-owing user of a directory whose check costs more than the
        stand-in gets that directory's stand-in check instead (equal cost)."""

        def guarded(user: str) -> bytes | DelegatedCheck | None:
            if (
                self.throttle is not None
                and self.throttle.refusal(user, _request.get()[1]) is not None
            ):
                return None
            try:
                record = self._record(user)
            except Exception:
                return None
            if record is None or refusal_of(record) is not None or self.needs_possession(record):
                return self._nt_stand_in(user)
            return lookup(user)

        return guarded
