"""The user directory's contract: who may log in, with what, and their policy.

DESIGN.md ("Authorization: one decision for every login"): the directory says whether
a user exists, how to check their password, and what the Access-Accept should carry.
Where the users live is an implementation's business:

- :mod:`eapkit.directory.local`: an SQLite table in the server's database file (the
  embedded default);
- :mod:`eapkit.directory.stored`: JSON records in any :class:`~eapkit.store.base.Store`,
  so a Redis cluster holds the users with everything else;
- LDAP and Active Directory (later): they check a password by binding as the user, and
  may hold no NT hash at all.

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

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from eapkit.credentials import Verdict
from eapkit.crypto.mschap import nt_password_hash
from eapkit.errors import EapkitError
from eapkit.methods.base import Factor
from eapkit.passwords import DEFAULT_ITERATIONS, VerifiedCache, hash_password
from eapkit.policy import UserPolicy

__all__ = [
    "SECOND_FACTORS",
    "Directory",
    "DirectoryUnavailable",
    "RecordDirectory",
    "User",
    "check_second_factor",
    "new_user",
    "policy_of",
]

SECOND_FACTORS = ("none", "totp", "yubikey", "webauthn")


class DirectoryUnavailable(EapkitError):
    """No directory server answered: the login fails closed (``directory_unavailable``)."""


@dataclass(frozen=True, slots=True)
class User:
    """One user's record; the hashes stay out of ``repr``."""

    name: str
    password_hash: str | None = field(default=None, repr=False)
    nt_hash: bytes | None = field(default=None, repr=False)
    second_factor: str = "none"
    policy: UserPolicy = field(default_factory=UserPolicy)
    disabled: bool = False  # kept, but refused at authorization (eapkit user disable)


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

    def nt_hash(self, user: str) -> bytes | None:
        """MS-CHAPv2 (RFC 2759 §8.3): the NT hash, or None (unknown user, none stored,
        or a directory that keeps none)."""
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
