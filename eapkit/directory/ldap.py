"""The LDAP directory: users, passwords and groups read from an LDAP server in place.

An organisation keeps its users in OpenLDAP (or any LDAPv3 server, RFC 4511); eapkit
reads them where they are, as FreeRADIUS's rlm_ldap does:

1. **Find the user.**  A bind account (``bind_dn``) searches ``base`` with
   ``user_filter`` (``(uid={user})``), the user name escaped per RFC 4515 §3 so that
   no name can change the filter (``*``, ``(``, ``)``, ``\\``, NUL become ``\\2a`` ...).
   Exactly one entry must answer; none, or more than one, is an unknown user.
2. **Check the password** by a simple bind as that entry's DN (RFC 4513 §5.1.3).  An
   empty password is refused before any bind: RFC 4513 §5.1.2 makes a simple bind with
   a DN and no password an *unauthenticated* bind, which many servers answer with
   success.
3. **Groups** come from the entry's ``group_attribute`` (``memberOf``) or, with
   ``group_filter``, from a search for groups naming the user's DN.  The first
   :class:`GroupPolicy` (``[[policy.groups]]``) whose group the user is in sets the
   second-factor requirement and the Accept's attributes, so the authorization step
   (:mod:`eapkit.authz`) reads an ordinary :class:`~eapkit.directory.base.User`.

An LDAP directory holds no NT hash: :meth:`LdapDirectory.nt_hash` answers None, so
MS-CHAPv2 fails cleanly (like a wrong password) for LDAP users.  Second-factor
enrollments (``eapkit enroll totp``) stay in eapkit's store, keyed by user name; a
group policy's ``second_factor`` overrides them.

Transport: ``ldaps://`` or ``ldap://`` with StartTLS (RFC 4513 §3); the server's
certificate is verified against ``ca`` (or the system's CAs) and its name checked.
Cleartext ``ldap://`` without StartTLS is refused at configuration time.  Servers are
tried in order (the last one that answered first); when none answers, every check
raises :class:`~eapkit.directory.base.DirectoryUnavailable` (or rejects with
``directory_unavailable``): the login fails closed.  Search connections are kept in a
small pool; positive lookups are cached for ``cache_ttl`` seconds (bounded).
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from ldap3 import SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult

from eapkit.credentials import Verdict
from eapkit.directory.base import (
    SECOND_FACTORS,
    DirectoryUnavailable,
    User,
    check_second_factor,
)
from eapkit.directory.groups import GroupPolicy, LdapSettings, escape_filter_value, filter_for
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor
from eapkit.passwords import DEFAULT_ITERATIONS
from eapkit.policy import UserPolicy
from eapkit.store.base import Store

__all__ = ["GroupPolicy", "LdapDirectory", "LdapSettings"]

_OVERLAY = "directory:ldap:second_factor:"


def _close(conn: Connection) -> None:
    with suppress(LDAPException, OSError):
        conn.unbind()


@dataclass(frozen=True, slots=True)
class _Entry:
    dn: str
    groups: tuple[str, ...]
    user: User


class LdapDirectory:
    """Users in LDAP (the :class:`~eapkit.directory.base.Directory` contract, read-only:
    the writes raise ConfigError, except the second-factor enrollment, kept in
    ``store``)."""

    def __init__(self, settings: LdapSettings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca) if settings.ca else None,
        )
        self._servers = [
            Server(url, tls=tls, connect_timeout=settings.timeout, get_info="NO_INFO")
            for url in settings.servers
        ]
        self._first = 0  # the server that answered last is tried first
        self._pool: list[Connection] = []
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, _Entry]] = OrderedDict()

    # -- connections ------------------------------------------------------------------

    def _connect(self, dn: str | None, password: str) -> Connection:
        """A connection bound as ``dn`` to the first server that answers.  Raises
        LDAPInvalidCredentialsResult for a refused bind, DirectoryUnavailable when no
        server answers (unreachable, timed out, certificate not verified)."""
        count = len(self._servers)
        for step in range(count):
            index = (self._first + step) % count
            conn = Connection(
                self._servers[index],
                user=dn,
                password=password,
                receive_timeout=max(1, math.ceil(self.settings.timeout)),  # an int: SO_RCVTIMEO
                raise_exceptions=True,
                auto_referrals=False,
            )
            try:
                conn.open()
                if self.settings.start_tls and not self._servers[index].ssl:
                    conn.start_tls()
                conn.bind()
            except LDAPInvalidCredentialsResult:
                _close(conn)
                self._first = index
                raise
            except (LDAPException, OSError):
                _close(conn)
                continue
            self._first = index
            return conn
        raise DirectoryUnavailable("no LDAP server answered")

    @contextmanager
    def _search_connection(self) -> Iterator[Connection]:
        """A pooled connection bound as the bind account; a failed one is dropped."""
        with self._lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            try:
                conn = self._connect(self.settings.bind_dn, self.settings.bind_password)
            except LDAPInvalidCredentialsResult:
                raise DirectoryUnavailable("the bind account was refused") from None
        try:
            yield conn
        except (LDAPException, OSError):
            _close(conn)
            raise
        with self._lock:
            if len(self._pool) < self.settings.pool_size:
                self._pool.append(conn)
                return
        _close(conn)

    def _search(self, base: str, query: str, attributes: list[str]) -> list[dict[str, Any]]:
        # One retry on a fresh connection: a pooled one may have been closed by the server.
        for attempt in (0, 1):
            try:
                with self._search_connection() as conn:
                    conn.search(
                        base,
                        query,
                        SUBTREE,
                        attributes=attributes,
                        size_limit=2,
                        time_limit=int(self.settings.timeout) or 1,
                    )
                    return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]
            except (LDAPException, OSError):
                if attempt:
                    raise DirectoryUnavailable("LDAP search failed") from None
        raise AssertionError("unreachable")

    # -- reading users ------------------------------------------------------------------

    def _lookup(self, name: str) -> _Entry | None:
        if not name or "\x00" in name:
            return None
        s = self.settings
        entries = self._search(s.base, filter_for(s.user_filter, name), [s.group_attribute])
        if len(entries) != 1:  # none, or ambiguous: nobody
            return None
        dn = str(entries[0]["dn"])
        groups = [str(g) for g in entries[0].get("attributes", {}).get(s.group_attribute, [])]
        if s.group_filter is not None:
            query = s.group_filter.replace("{dn}", escape_filter_value(dn))
            groups += [str(e["dn"]) for e in self._search(s.group_base or s.base, query, ["cn"])]
        return _Entry(dn, tuple(groups), self._user(name, groups))

    def _user(self, name: str, groups: Collection[str]) -> User:
        matched = next((g for g in self.settings.groups if g.matches(groups)), None)
        enrolled = self._enrolled(name)
        wanted = matched.second_factor if matched is not None else None
        if wanted is None:
            second = enrolled
        elif wanted == "security_key":
            second = "webauthn"
        elif wanted == "any":
            # Whatever the user enrolled; nothing enrolled still needs a code (fails).
            second = enrolled if enrolled != "none" else "totp"
        else:
            second = wanted
        policy = matched.policy if matched is not None else UserPolicy()
        return User(name, None, None, second, policy)

    def _enrolled(self, name: str) -> str:
        if self.store is None:
            return "none"
        raw = self.store.get(_OVERLAY + name)
        kind = raw.decode() if raw is not None else "none"
        return kind if kind in SECOND_FACTORS else "none"

    def entry(self, name: str, now: float) -> _Entry | None:
        """The user's entry (cached for ``cache_ttl`` when found)."""
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] > now:
                self._cache.move_to_end(name)
                return cached[1]
        found = self._lookup(name)
        if found is not None and self.settings.cache_ttl > 0 and self.settings.cache_size:
            with self._lock:
                self._cache[name] = (now + self.settings.cache_ttl, found)
                while len(self._cache) > self.settings.cache_size:
                    self._cache.popitem(last=False)
        return found

    def groups(self, name: str, now: float) -> tuple[str, ...]:
        found = self.entry(name, now)
        return found.groups if found is not None else ()

    def get(self, name: str) -> User | None:
        found = self.entry(name, time.monotonic())
        return found.user if found is not None else None

    # -- credential interfaces ----------------------------------------------------------

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        """Bind as the user (RFC 4513 §5.1.3); an empty password never reaches a bind."""
        if not password:
            return Verdict.reject("empty_password")
        if record is None:
            return Verdict.reject("unknown_user")
        try:
            found = self.entry(name, time.monotonic())
            if found is None:
                return Verdict.reject("unknown_user")
            conn = self._connect(found.dn, password)
        except LDAPInvalidCredentialsResult:
            return Verdict.reject("bad_password")
        except DirectoryUnavailable:
            return Verdict.reject("directory_unavailable")
        _close(conn)
        return Verdict(True, "ok", name, factors=frozenset({Factor.PASSWORD}))

    def check_password(self, user: str, password: str, now: float, /) -> Verdict:
        if not password:
            return Verdict.reject("empty_password")
        try:
            record = self.get(user)
        except DirectoryUnavailable:
            return Verdict.reject("directory_unavailable")
        return self.verify_password(record, user, password, now)

    __call__ = check_password

    def nt_hash(self, user: str) -> bytes | None:
        """None: LDAP keeps no NT hash (MS-CHAPv2 fails like a wrong password)."""
        return None

    def policy(self, user: str) -> UserPolicy | None:
        record = self.get(user)
        return record.policy if record and not record.policy.empty else None

    # -- administration -----------------------------------------------------------------

    def list(self) -> list[User]:
        raise ConfigError("an LDAP directory is listed with the LDAP tools, not eapkit")

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
        raise ConfigError("users of an LDAP directory are added in LDAP, not by eapkit")

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        raise ConfigError("an LDAP user's policy comes from [[policy.groups]]")

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        """The enrollment, in eapkit's store (the user must exist in LDAP)."""
        check_second_factor(second_factor)
        if self.store is None:
            raise ConfigError("enrolling an LDAP user needs eapkit's store")
        if self._lookup(name) is None:
            return False
        self.store.put(_OVERLAY + name, second_factor.encode())
        with self._lock:
            self._cache.pop(name, None)
        return True

    def set_disabled(self, name: str, disabled: bool) -> bool:
        raise ConfigError("disable an LDAP user in LDAP, not by eapkit")

    def delete(self, name: str) -> bool:
        raise ConfigError("users of an LDAP directory are removed in LDAP, not by eapkit")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            _close(conn)
        if self.store is not None:
            self.store.close()
