"""The user directory's contract: who may log in, with what, and their policy.

DESIGN.md ("Authorization: one decision for every login"): the directory says whether
a user exists, how to check their password, and what the Access-Accept should carry.
Where the users live is an implementation's business:

- :mod:`eapkit.directory.local`: an SQLite table in the server's database file (the
  embedded default);
- :mod:`eapkit.directory.stored`: JSON records in any :class:`~eapkit.store.base.Store`,
  so a Redis cluster holds the users with everything else;
- :mod:`eapkit.directory.ldap` (LDAP) and :mod:`eapkit.directory.ad` (Active
  Directory), read in place through :class:`ExternalAccounts`: they check a password by
  binding as the user (RFC 4513 §5.1.3) and hold no NT hash (AD has MS-CHAPv2 checked
  by the DC instead, :class:`DelegatesNtCheck`).

So the password check is the directory's own (:meth:`Directory.verify_password`, which
gets the record already read and may bind instead of hashing), and :meth:`nt_hash`
may answer None for every user.  A login reads the record once
(:mod:`eapkit.directory.scope`); every question after that is about the :class:`User`
in hand.

Each user has

- a salted PBKDF2 hash of the password (:mod:`eapkit.passwords`) for PAP and EAP-GTC;
- optionally the NT hash (MD4 of the UTF-16LE password, RFC 2759 §8.3) for MS-CHAPv2.
  The NT hash is password-equivalent for MS-CHAPv2: leave it out (``nt_hash=False``)
  for users who never use MS-CHAPv2;
- a second-factor requirement (``none``, ``totp``, ``yubikey``, ``webauthn``: approval
  with a security key through :mod:`eapkit.bridge`) enforced by the server;
- a :class:`~eapkit.policy.UserPolicy` for the Access-Accept;
- a ``disabled`` flag: the record stays, every login is refused (``user_disabled``)
  by the authorization step (:mod:`eapkit.authz`).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, ClassVar, Generic, NoReturn, Protocol, TypeVar, runtime_checkable

from eapkit.credentials import Verdict
from eapkit.crypto.mschap import nt_password_hash
from eapkit.errors import ConfigError, Unavailable
from eapkit.methods.base import Factor
from eapkit.methods.mschapv2_check import DelegatedCheck
from eapkit.passwords import DEFAULT_ITERATIONS, VerifiedCache, hash_password
from eapkit.policy import UserPolicy

if TYPE_CHECKING:
    from eapkit.store.base import Store

__all__ = [
    "SECOND_FACTORS",
    "AccountEntry",
    "DelegatesNtCheck",
    "Directory",
    "DirectoryUnavailable",
    "Explanation",
    "ExternalAccounts",
    "RecordDirectory",
    "StandsInNtCheck",
    "User",
    "check_second_factor",
    "framed_ip_from",
    "new_user",
    "policy_of",
    "refusal_of",
    "wanted_attributes",
]

SECOND_FACTORS = ("none", "totp", "yubikey", "webauthn")

log = logging.getLogger(__name__)


class DirectoryUnavailable(Unavailable):
    """No directory server answered: the login fails closed (``directory_unavailable``)."""

    refusal = "directory_unavailable"


@dataclass(frozen=True, slots=True)
class User:
    """One user's record; the hashes stay out of ``repr``."""

    name: str
    password_hash: str | None = field(default=None, repr=False)
    nt_hash: bytes | None = field(default=None, repr=False)
    second_factor: str = "none"
    policy: UserPolicy = field(default_factory=UserPolicy)
    disabled: bool = False  # kept, but refused at authorization (eapkit user disable)
    # The directory's stable identifier (LDAP entryUUID, AD objectGUID): second factors
    # are stored under it, so a renamed user keeps them.  None: stored under the name.
    key: str | None = None
    # The directory's own account state that refuses every login, as the decision log's
    # reason (Active Directory: account_disabled, account_expired, ...); None: usable.
    state: str | None = None
    # The ``[[policy.groups]]`` entry that matched the account's groups (its ``name``,
    # else its ``group``), for the decision log; None: none matched, or a local record.
    policy_name: str | None = None
    # The methods the matched entry allows (catalog names, ``pap``); None: any.
    methods: frozenset[str] | None = None
    # The matched entry accepts only second factors the account has not enrolled: it
    # must prove possession and cannot (``second_factor_required``, eapkit.authz).
    factor_not_allowed: bool = False

    @property
    def factor_key(self) -> str:
        """What the user's second factors are stored under."""
        return self.key if self.key is not None else self.name


def refusal_of(record: User) -> str | None:
    """Why every login of ``record`` is refused whatever it proves (None: it is not):
    the directory's account state, or ``user_disabled``."""
    if record.state is not None:
        return record.state
    return "user_disabled" if record.disabled else None


def check_second_factor(second_factor: str) -> None:
    if second_factor not in SECOND_FACTORS:
        raise ValueError(f"second factor is one of {', '.join(SECOND_FACTORS)}")


def new_user(
    name: str,
    password: str,
    *,
    nt_hash: bool = True,
    second_factor: str = "none",
    policy: UserPolicy | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> User:
    """A new record: the password hashed, the NT hash only when asked for.  A name is
    1 to 253 bytes (RFC 2865 §5.1 User-Name)."""
    if not name or len(name.encode()) > 253:
        raise ValueError("a user name is 1 to 253 bytes")
    check_second_factor(second_factor)
    return User(
        name,
        hash_password(password, iterations=iterations),
        nt_password_hash(password) if nt_hash else None,
        second_factor,
        policy or UserPolicy(),
    )


@runtime_checkable
class Directory(Protocol):
    """Where users live.  Read by the server (``get`` once per request, then the
    checks on the record), written by ``eapkit user ...`` and the approval bridge.

    A read-only directory (LDAP) raises :class:`~eapkit.errors.ConfigError` from the
    writes.  A directory that cannot be reached fails closed: the checks reject.
    """

    def get(self, name: str) -> User | None:
        """The user's record, or None."""
        ...

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        """PAP / EAP-GTC against a record already read (None: unknown user, which costs
        what a known one costs).  An LDAP directory binds here."""
        ...

    def check_password(self, user: str, password: str, now: float, /) -> Verdict:
        """A :class:`~eapkit.credentials.ResponseCheck`: read, then verify."""
        ...

    def nt_hash(self, user: str) -> bytes | DelegatedCheck | None:
        """MS-CHAPv2 (RFC 2759 §8.3): the NT hash, or None (unknown user, none stored,
        or a directory that keeps none), or a :class:`DelegatedCheck` (Active Directory
        checks the response itself, through ntlm_auth)."""
        ...

    def policy(self, user: str) -> UserPolicy | None:
        """What the Access-Accept carries for ``user``; None when nothing is set."""
        ...

    def list(self) -> list[User]:
        """Every user, by name."""
        ...

    def add(
        self,
        name: str,
        password: str,
        *,
        nt_hash: bool = True,
        second_factor: str = "none",
        policy: UserPolicy | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> User:
        """Create or replace a user."""
        ...

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        """False when there is no such user."""
        ...

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        """False when there is no such user."""
        ...

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """False when there is no such user."""
        ...

    def delete(self, name: str) -> bool:
        """False when there was no such user."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class DelegatesNtCheck(Protocol):
    """A directory that keeps no NT hash but has MS-CHAPv2 responses checked where the
    hash is (Active Directory, through ntlm_auth): the request scope asks it for the
    user's :class:`DelegatedCheck` on the record already read."""

    def delegated_check(self, record: User) -> DelegatedCheck: ...


@runtime_checkable
class StandsInNtCheck(Protocol):
    """A directory whose MS-CHAPv2 check costs more than the stand-in hash does (a helper
    process and a round trip to the DC): a response that must fail (an unknown user, a
    refused account, one who owes a second factor) is checked at that same cost, against
    an account that cannot exist, and answers ``unknown_user``."""

    def nt_stand_in(self, name: str) -> DelegatedCheck: ...


class RecordDirectory(ABC):
    """What directories that keep whole :class:`User` records share: the password
    check (PBKDF2 behind :class:`~eapkit.passwords.VerifiedCache`) and the questions
    answered from the record.  Subclasses read, write and remove records."""

    def __init__(self, *, cache_ttl: float = 300.0) -> None:
        self._cache = VerifiedCache(ttl=cache_ttl)

    @abstractmethod
    def get(self, name: str) -> User | None: ...

    @abstractmethod
    def list(self) -> list[User]: ...

    @abstractmethod
    def _write(self, user: User) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- administration ---------------------------------------------------------------

    def add(
        self,
        name: str,
        password: str,
        *,
        nt_hash: bool = True,
        second_factor: str = "none",
        policy: UserPolicy | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> User:
        """Create or replace a user."""
        user = new_user(
            name,
            password,
            nt_hash=nt_hash,
            second_factor=second_factor,
            policy=policy,
            iterations=iterations,
        )
        self._write(user)
        return user

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        record = self.get(name)
        if record is None:
            return False
        self._write(replace(record, policy=policy))
        return True

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        check_second_factor(second_factor)
        record = self.get(name)
        if record is None:
            return False
        self._write(replace(record, second_factor=second_factor))
        return True

    def set_disabled(self, name: str, disabled: bool) -> bool:
        record = self.get(name)
        if record is None:
            return False
        self._write(replace(record, disabled=disabled))
        return True

    # -- credential interfaces --------------------------------------------------------

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        """PAP / EAP-GTC: the password alone.  Same cost for unknown users."""
        stored = record.password_hash if record is not None else None
        ok = self._cache.check(name, password, stored, now)
        if record is None:
            return Verdict.reject("unknown_user")
        if not ok:
            return Verdict.reject("bad_password")
        return Verdict(True, "ok", name, factors=frozenset({Factor.PASSWORD}))

    def check_password(self, user: str, password: str, now: float, /) -> Verdict:
        return self.verify_password(self.get(user), user, password, now)

    __call__ = check_password

    def nt_hash(self, user: str) -> bytes | None:
        record = self.get(user)
        return record.nt_hash if record else None

    def policy(self, user: str) -> UserPolicy | None:
        return policy_of(self.get(user))


def policy_of(record: User | None) -> UserPolicy | None:
    """The policy an Accept carries for ``record``: None when there is none to carry."""
    return record.policy if record and not record.policy.empty else None


class AccountEntry(Protocol):
    """What a directory whose accounts live elsewhere finds of one account."""

    @property
    def dn(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group the account is in: ``member_of`` and ``searched`` together."""
        ...

    @property
    def member_of(self) -> tuple[str, ...]:
        """The groups the entry names itself (``memberOf``)."""
        ...

    @property
    def searched(self) -> tuple[str, ...]:
        """The groups a search found (LDAP ``group_filter``, AD's nested groups)."""
        ...

    @property
    def nested(self) -> tuple[str, ...]:
        """The groups above those, found by following groups in groups (LDAP's walk;
        AD's nested-group search puts them in ``searched``)."""
        ...

    @property
    def state(self) -> str | None:
        """The account state the entry tells (None: usable)."""
        ...

    @property
    def user(self) -> User: ...


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the server would see of one account, without its password (``eapkit
    directory test``): its entry, groups, state, the ``[[policy.groups]]`` entry that
    matched (``matched``, as the decision log names it), and the server that answered.
    ``unseen``: the states the entry cannot tell, which show only at a login;
    ``nested``: LDAP's groups in groups above ``member_of`` and ``searched``."""

    dn: str
    key: str
    member_of: tuple[str, ...]
    searched: tuple[str, ...]
    state: str | None
    matched: str | None
    user: User
    server: str
    unseen: str = ""
    nested: tuple[str, ...] = ()


EntryT = TypeVar("EntryT", bound=AccountEntry)


class GroupRule(Protocol):
    """What a ``[[policy.groups]]`` entry (eapkit.directory.groups.GroupPolicy) gives
    the account it matched."""

    @property
    def second_factor(self) -> str | tuple[str, ...] | None: ...

    @property
    def policy(self) -> UserPolicy: ...

    @property
    def label(self) -> str: ...

    @property
    def methods(self) -> frozenset[str] | None: ...

    @property
    def framed_ip_attribute(self) -> str | None: ...


def wanted_attributes(rules: Sequence[GroupRule]) -> list[str]:
    """The entry attributes the rules read (``framed_ip_attribute``), each once."""
    return list(dict.fromkeys(r.framed_ip_attribute for r in rules if r.framed_ip_attribute))


def framed_ip_from(name: str, attribute: str, values: Sequence[bytes]) -> str | None:
    """The Framed-IP-Address (RFC 2865 §5.8) the entry's ``attribute`` holds: one
    dotted IPv4 address, or AD's ``msRADIUSFramedIPAddress`` integer (the address as a
    signed 32-bit number).  Anything else (none, several, not an address) gives None and
    a log line: the Accept goes out without the attribute, the NAS picks an address."""
    problem = ""
    if len(values) != 1:
        problem = f"{len(values)} values"
    else:
        text = values[0].decode("ascii", "replace").strip()
        try:
            if text.lstrip("-").isdigit():
                number = int(text)
                if not -(2**31) <= number < 2**32:
                    raise ValueError(text)
                return str(IPv4Address(number & 0xFFFFFFFF))
            return str(IPv4Address(text))
        except ValueError:
            problem = "not an IPv4 address"
    log.warning(
        "framed_ip_attribute %s of %r: %s; no Framed-IP-Address sent", attribute, name, problem
    )
    return None


def _values(attributes: Mapping[str, Sequence[bytes]], wanted: str) -> Sequence[bytes]:
    """An attribute's raw values, its name compared without case (RFC 4512 §2.5)."""
    folded = wanted.casefold()
    return next((v for k, v in attributes.items() if k.casefold() == folded), ())


class EntryCache(Protocol):
    """How long and how many account entries are kept (LdapSettings)."""

    @property
    def cache_ttl(self) -> float: ...

    @property
    def cache_size(self) -> int: ...


class ExternalAccounts(Generic[EntryT]):
    """What LDAP and Active Directory have alike, as directories whose accounts live
    elsewhere: each account's entry (:meth:`_lookup`, the directory's own searches)
    cached for ``cache_ttl``, known and unknown names alike; the second factor from the
    ``[[policy.groups]]`` entry that matched or, where that leaves the choice to the
    user, the one enrolled in eapkit's store under the account's stable key
    (``OVERLAY`` + ``User.factor_key``); and the administration: every write but that
    enrollment is refused with a ConfigError saying where it is done (``REFUSALS``:
    ``list``, ``add``, ``set_policy``, ``set_disabled``, ``delete``, and ``enroll``
    when there is no store); and what ``eapkit directory test`` shows of an account
    (:meth:`explain`)."""

    REFUSALS: ClassVar[dict[str, str]] = {}
    OVERLAY: ClassVar[str] = ""
    UNSEEN: ClassVar[str] = ""  # Explanation.unseen
    store: Store | None
    _lock: threading.Lock
    _cache: OrderedDict[str, tuple[float, EntryT | None]]

    @property
    def account_settings(self) -> EntryCache:
        """The directory's entry cache settings (its LdapSettings)."""
        raise NotImplementedError

    def _lookup(self, name: str) -> EntryT | None:
        """``name``'s entry, searched in the directory now; None: no such account."""
        raise NotImplementedError

    @property
    def answered_by(self) -> str:
        """The server tried first: the last one that answered."""
        raise NotImplementedError

    # -- reading accounts ---------------------------------------------------------------

    def entry(self, name: str, now: float) -> EntryT | None:
        """The account's entry, or None.  Both answers are cached for ``cache_ttl``: a
        cached known name and an uncached unknown one would differ in cost."""
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] > now:
                self._cache.move_to_end(name)
                return cached[1]
        found = self._lookup(name)
        s = self.account_settings
        if s.cache_ttl > 0 and s.cache_size:
            with self._lock:
                self._cache[name] = (now + s.cache_ttl, found)
                while len(self._cache) > s.cache_size:
                    self._cache.popitem(last=False)
        return found

    def groups(self, name: str, now: float) -> tuple[str, ...]:
        found = self.entry(name, now)
        return found.groups if found is not None else ()

    def get(self, name: str) -> User | None:
        found = self.entry(name, time.monotonic())
        return found.user if found is not None else None

    def policy(self, user: str) -> UserPolicy | None:
        return policy_of(self.get(user))

    def explain(self, name: str) -> Explanation | None:
        """A fresh lookup of ``name`` (no cache), for operators (``eapkit directory
        test``); None: unknown.  Raises DirectoryUnavailable when no server answers."""
        found = self._lookup(name)
        if found is None:
            return None
        return Explanation(
            found.dn,
            found.user.factor_key,
            found.member_of,
            found.searched,
            found.state,
            found.user.policy_name,
            found.user,
            self.answered_by,
            self.UNSEEN,
            found.nested,
        )

    def _account_user(
        self,
        name: str,
        key: str,
        matched: GroupRule | None,
        state: str | None = None,
        attributes: Mapping[str, Sequence[bytes]] | None = None,
    ) -> User:
        """The record of the account ``name``: its second factor is the matched group's
        (``security_key``: WebAuthn), else what it enrolled (``any``: a code when it
        enrolled nothing, which then fails; a list: what it enrolled when the list has
        it, else ``factor_not_allowed``), its policy the group's (Framed-IP-Address from
        the entry's ``framed_ip_attribute`` among ``attributes``, the raw values read),
        named by ``policy_name`` for the decision log, and the group's ``methods``."""
        enrolled = self._enrolled(key)
        wanted = matched.second_factor if matched is not None else None
        not_allowed = False
        if wanted is None:
            second = enrolled
        elif isinstance(wanted, tuple):
            not_allowed = enrolled not in wanted
            second = wanted[0] if not_allowed else enrolled
        elif wanted == "security_key":
            second = "webauthn"
        elif wanted == "any":
            second = enrolled if enrolled != "none" else "totp"
        else:
            second = wanted
        if matched is None:
            return User(name, None, None, second, key=key, state=state)
        policy = matched.policy
        if matched.framed_ip_attribute is not None:
            values = _values(attributes or {}, matched.framed_ip_attribute)
            address = framed_ip_from(name, matched.framed_ip_attribute, values)
            policy = replace(policy, framed_ip=address)
        return User(
            name,
            None,
            None,
            second,
            policy,
            key=key,
            state=state,
            policy_name=matched.label,
            methods=matched.methods,
            factor_not_allowed=not_allowed,
        )

    def _enrolled(self, key: str) -> str:
        """The second factor enrolled under ``key`` in eapkit's store ("none")."""
        if self.store is None:
            return "none"
        raw = self.store.get(self.OVERLAY + key)
        kind = raw.decode() if raw is not None else "none"
        return kind if kind in SECOND_FACTORS else "none"

    # -- administration -----------------------------------------------------------------

    def _refuse(self, what: str) -> NoReturn:
        raise ConfigError(self.REFUSALS[what])

    def list(self) -> list[User]:
        self._refuse("list")

    def add(
        self,
        name: str,
        password: str,
        *,
        nt_hash: bool = True,
        second_factor: str = "none",
        policy: UserPolicy | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> User:
        self._refuse("add")

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        self._refuse("set_policy")

    def set_disabled(self, name: str, disabled: bool) -> bool:
        self._refuse("set_disabled")

    def delete(self, name: str) -> bool:
        self._refuse("delete")

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        """The enrollment kind, in eapkit's store under the account's stable key (the
        account must exist in the directory)."""
        check_second_factor(second_factor)
        if self.store is None:
            self._refuse("enroll")
        found = self._lookup(name)
        if found is None:
            return False
        self.store.put(self.OVERLAY + found.user.factor_key, second_factor.encode())
        with self._lock:
            self._cache.pop(name, None)
        return True
