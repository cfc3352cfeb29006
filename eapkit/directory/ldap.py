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
   ``group_filter``, from a search for groups naming the user's DN; with
   ``nested_groups`` (the default) the groups those groups are in, and so on upwards
   (breadth-first, cycle-safe, at most 8 levels and 1,000 groups, else
   ``directory_unavailable``: :func:`~eapkit.directory.groups.nested_groups`).  The first
   :class:`GroupPolicy` (``[[policy.groups]]``) whose group the user is in sets the
   second-factor requirement and the Accept's attributes, so the authorization step
   (:mod:`eapkit.authz`) reads an ordinary :class:`~eapkit.directory.base.User`.

4. **Account state** (OpenLDAP ppolicy, draft-behera-ldap-password-policy §6): the
   user's bind carries the password policy request control; its response names a
   locked account, an expired password or one that must be changed after a reset
   (:mod:`eapkit.directory.ppolicy`).  A server that sends no control is read through
   the entry's ``pwdAccountLockedTime`` and ``pwdReset``; ``disabled_filter`` marks
   disabled accounts.  Each has its own reason in the decision log (``account_locked``,
   ``password_expired``, ``password_must_change``, ``account_disabled``); the wire
   sees the same Reject as a wrong password.  The state is told only after the bind
   (slapd refuses a locked account whatever the password).
5. **Equal cost:** an unknown user's password is bound against ``unknown_user_dn`` (a
   DN that does not exist, so no real account counts a failure), after the same
   searches a known user costs, and unknown names are cached like known ones: timing
   does not tell whether a name exists.

An LDAP directory holds no NT hash: :meth:`LdapDirectory.nt_hash` answers None, so
MS-CHAPv2 fails cleanly (like a wrong password) for LDAP users.  Second-factor
enrollments (``eapkit enroll totp``) stay in eapkit's store, keyed by the entry's
stable identifier (``id_attribute``: entryUUID, RFC 4530), so a renamed user (modrdn)
keeps them; a group policy's ``second_factor`` overrides the enrolled kind.

Transport: ``ldaps://`` or ``ldap://`` with StartTLS (RFC 4513 §3); the server's
certificate is verified against ``ca`` (or the system's CAs) and its name checked.
Cleartext ``ldap://`` without StartTLS is refused at configuration time.  Servers are
tried in order (the last one that answered first); when none answers, every check
raises :class:`~eapkit.directory.base.DirectoryUnavailable` (or rejects with
``directory_unavailable``): the login fails closed.  Search connections are kept in a
small pool; positive lookups are cached for ``cache_ttl`` seconds (bounded).
"""

from __future__ import annotations

import logging
import math
import ssl
import stringprep
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ldap3 import Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPNoSuchObjectResult,
)
from ldap3.protocol.sasl.sasl import sasl_prep
from ldap3.utils.dn import parse_dn

from eapkit.credentials import Verdict
from eapkit.directory.base import (
    DirectoryUnavailable,
    Explanation,
    ExternalAccounts,
    User,
    wanted_attributes,
)
from eapkit.directory.groups import (
    GroupPolicy,
    LdapSettings,
    escape_filter_value,
    filter_for,
    nested_groups,
)
from eapkit.directory.ppolicy import PPOLICY_OID, PpolicyResponse, decode_response, refusal_reason
from eapkit.errors import DecodeError
from eapkit.methods.base import Factor
from eapkit.store.base import Store

__all__ = ["BindRefused", "Explanation", "GroupPolicy", "LdapDirectory", "LdapSettings"]

_OVERLAY = "directory:ldap:second_factor:"
_PPOLICY_REQUEST = [(PPOLICY_OID, False, None)]  # §6.1: the request has no value
# read from the entry when the server sends no ppolicy control (§5.3)
_LOCKED, _RESET = "pwdAccountLockedTime", "pwdReset"
# <netinet/in.h>, <netinet/tcp.h> (the same numbers on Linux, BSD, macOS): this layer
# does not import ``socket``; ldap3 owns the socket, eapkit only sets an option on it.
_IPPROTO_TCP, _TCP_NODELAY = 6, 1
log = logging.getLogger(__name__)
# A cached entry older than this is checked again after its user's bind (one base
# search): a user disabled, or deleted and re-created, is refused within it.
_TRUSTED = 1.0
_SUCCESS, _SIZE_LIMIT, _NO_SUCH_OBJECT = 0, 4, 32  # resultCode, RFC 4511 §4.1.9


def _close(conn: Connection) -> None:
    with suppress(LDAPException, OSError):
        conn.unbind()


def _no_delay(conn: Connection) -> None:
    """TCP_NODELAY on the connection's socket.  Without it the first request after the
    TLS handshake (the bind) waits for the server's delayed ACK under Nagle's
    algorithm (RFC 896, RFC 1122 §4.2.3.2): about 40 ms per password check on Linux,
    against about 2 ms with it."""
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)


def _ppolicy(result: dict[str, Any] | None) -> PpolicyResponse | None:
    """The ppolicy response control of a bind result; None when the server sent none
    (a control that does not decode counts as none: the entry's attributes decide)."""
    control = ((result or {}).get("controls") or {}).get(PPOLICY_OID)
    value = control.get("value") if isinstance(control, dict) else None
    if not isinstance(value, bytes):
        return None
    try:
        return decode_response(value)
    except DecodeError:
        return None


def _unusable(password: str) -> str | None:
    """Why ``password`` can never be a simple bind's (None: it can be sent).

    RFC 4513 §5.1.3 prepares the password with SASLprep (RFC 4013), as ldap3 does on
    every bind: characters "mapped to nothing" (soft hyphen, zero-width space; RFC 3454
    B.1) vanish, so a password of only those is the empty password of an
    unauthenticated bind (§5.1.2): ``empty_password``.  One SASLprep prohibits (NUL and
    other controls, private use, surrogates: RFC 4013 §2.3) is nobody's password:
    ``bad_password``, without a bind.  ldap3 raised them as an LDAPException, which
    counted as the server failing: a fresh TLS connection to every server, then
    ``directory_unavailable``, for any request that carried one.
    """
    if all(stringprep.in_table_b1(c) for c in password):
        return "empty_password"
    try:
        sasl_prep(password)  # type: ignore[no-untyped-call]
    except LDAPException:
        return "bad_password"
    return None


class BindRefused(LDAPInvalidCredentialsResult):
    """A bind answered invalidCredentials (RFC 4511 §4.2.2), with the ppolicy control
    the server sent with it (None: none)."""

    def __init__(self, ppolicy: PpolicyResponse | None, message: str = "") -> None:
        # ``message``: the server's diagnosticMessage, kept for Active Directory, which
        # names the account state there ("... data 533 ...", eapkit.directory.ad_rules)
        super().__init__(49, "invalidCredentials", message=message)
        self.ppolicy = ppolicy


def _utf8(text: str) -> bool:
    """Whether ``text`` is sendable (lone surrogates are not: RFC 4511 §4.1.2 LDAPString
    is UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_dn(value: str) -> bool:
    """Whether ``value`` is a DN (RFC 4514): only a group named by its DN has groups
    above it to look for (``group_attribute`` may name groups otherwise)."""
    try:
        return bool(parse_dn(value))
    except LDAPException:
        return False


def _stable_id(attribute: str, values: object) -> str | None:
    """The entry's stable identifier as text: entryUUID is a string (RFC 4530 §2.1);
    AD's objectGUID arrives as 16 octets, little-endian in its first three fields."""
    value = values[0] if isinstance(values, list) and values else values
    if isinstance(value, bytes):
        if len(value) == 16 and attribute.lower() == "objectguid":
            return str(uuid.UUID(bytes_le=value))
        return value.hex()
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class _Entry:
    dn: str
    groups: tuple[str, ...]
    user: User
    # what `eapkit directory test` shows beside the record
    member_of: tuple[str, ...] = ()  # from group_attribute (memberOf)
    searched: tuple[str, ...] = ()  # from a group_filter search
    nested: tuple[str, ...] = ()  # above those, through groups in groups
    locked: bool = False  # pwdAccountLockedTime present
    reset: bool = False  # pwdReset TRUE
    disabled: bool = False  # disabled_filter matched
    at: float = 0.0  # time.monotonic() of the lookup

    @property
    def state(self) -> str | None:
        """The account state the entry's own attributes tell (None: usable)."""
        if self.disabled:
            return "account_disabled"
        if self.locked:
            return "account_locked"
        return "password_must_change" if self.reset else None


class LdapDirectory(ExternalAccounts[_Entry]):
    """Users in LDAP (the :class:`~eapkit.directory.base.Directory` contract, read-only:
    the writes raise ConfigError, except the second-factor enrollment, kept in
    ``store``)."""

    OVERLAY = _OVERLAY
    UNSEEN = "an expired password shows only at a login"  # told by the bind's ppolicy
    REFUSALS: ClassVar[dict[str, str]] = {
        "list": "an LDAP directory is listed with the LDAP tools, not eapkit",
        "add": "users of an LDAP directory are added in LDAP, not by eapkit",
        "set_policy": "an LDAP user's policy comes from [[policy.groups]]",
        "set_disabled": "disable an LDAP user in LDAP, not by eapkit",
        "delete": "users of an LDAP directory are removed in LDAP, not by eapkit",
        "enroll": "enrolling an LDAP user needs eapkit's store",
    }

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
        self._binders: list[Connection] = []  # used only for users' binds, never searches
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, _Entry | None]] = OrderedDict()

    @property
    def account_settings(self) -> LdapSettings:
        return self.settings

    # -- connections ------------------------------------------------------------------

    @property
    def answered_by(self) -> str:
        """The server tried first: the last one that answered."""
        return self.settings.servers[self._first]

    def _connect(
        self, dn: str | None, password: str, controls: list[Any] | None = None
    ) -> Connection:
        """A connection bound as ``dn`` to the first server that answers.  Raises
        :class:`BindRefused` (an LDAPInvalidCredentialsResult) for a refused bind,
        DirectoryUnavailable when no server answers (unreachable, timed out,
        certificate not verified).  The bind carries ``controls``."""
        count = len(self._servers)
        causes: list[str] = []
        for step in range(count):
            index = (self._first + step) % count
            # ldap3 skips an address that failed once for ~6 s (its
            # RESET_AVAILABILITY_TIMEOUT) without trying it: a server back from a stall
            # stayed "unavailable".  Failover is eapkit's: always try the address.
            self._servers[index].reset_availability()
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
                _no_delay(conn)
                if self.settings.start_tls and not self._servers[index].ssl:
                    conn.start_tls()
                conn.bind(controls=controls)
            except LDAPInvalidCredentialsResult as exc:
                refused = BindRefused(_ppolicy(conn.result), str(exc.message or ""))
                _close(conn)
                self._first = index
                raise refused from None
            except (LDAPException, OSError) as exc:
                _close(conn)
                causes.append(f"{self.settings.servers[index]}: {type(exc).__name__}: {exc}")
                continue
            self._first = index
            return conn
        # the reason in the server's log (a certificate that does not verify, a
        # timeout...); the decision log says directory_unavailable
        log.warning("no LDAP server answered: %s", "; ".join(causes))
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

    def _user_bind(self, dn: str, password: str) -> PpolicyResponse | None:
        """Bind as ``dn`` with the ppolicy request control; the response control (None:
        none came).  Raises :class:`BindRefused` or DirectoryUnavailable.

        The bind reuses a kept connection (RFC 4511 §4.2.1: a bind on a bound
        connection replaces its identity), as rlm_ldap does: a TLS handshake per
        password check cost about 4 ms of CPU.  These connections only ever bind, so
        whoever bound last on one gains nothing by it; the password is not kept on it.
        """
        with self._lock:
            conn = self._binders.pop() if self._binders else None
        if conn is not None:
            try:
                conn.rebind(dn, password, read_server_info=False, controls=_PPOLICY_REQUEST)
            except LDAPInvalidCredentialsResult as exc:
                refused = BindRefused(_ppolicy(conn.result), str(exc.message or ""))
                self._keep_binder(conn)
                raise refused from None
            except (LDAPException, OSError):
                _close(conn)  # closed by the server meanwhile: a fresh one below
            else:
                response = _ppolicy(conn.result)
                self._keep_binder(conn)
                return response
        conn = self._connect(dn, password, _PPOLICY_REQUEST)
        response = _ppolicy(conn.result)
        self._keep_binder(conn)
        return response

    def _keep_binder(self, conn: Connection) -> None:
        conn.password = None  # no password lingers on a kept connection
        with self._lock:
            if len(self._binders) < self.settings.pool_size:
                self._binders.append(conn)
                return
        _close(conn)

    def _search(
        self,
        base: str,
        query: str,
        attributes: list[str],
        scope: Literal["BASE", "SUBTREE"] = "SUBTREE",
        limit: int = 0,
        *,
        passes_over: Callable[[str, str], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """The entries found (ldap3's response dicts: ``dn``, ``attributes``,
        ``raw_attributes``).  An answer that may be incomplete fails closed
        (DirectoryUnavailable): a continuation reference or a referral (RFC 4511
        §4.5.3, §4.1.10: the rest is on another server, which may hold another entry
        for the name, or a group), a time limit exceeded, a size limit exceeded beyond
        ``limit`` (0: none asked; the user search asks 2, enough to see a name is
        ambiguous; a server that stops short of ``limit`` cut the answer), or a
        subtree search whose base does not exist (a base object that does not exist
        is nothing: ``unknown_user_dn``, a deleted group).  ldap3 raises none of
        these, it returns what came.

        ``passes_over(uri, base)``: the continuation references known to hold no
        entry that matters (Active Directory's DNS and configuration partitions below
        a domain's root, :func:`eapkit.directory.ad.holds_no_accounts`); with
        ``referrals = "ignore"`` every reference is passed over.  Shared by LDAP and
        Active Directory (:meth:`eapkit.directory.ad.AdDirectory._search`).
        """
        code: object = None  # resultCode
        response: list[dict[str, Any]] = []
        # One retry on a fresh connection: after a server restart every pooled one is
        # dead, so a failure drops them all.
        for attempt in (0, 1):
            try:
                with self._search_connection() as conn:
                    try:
                        conn.search(
                            base,
                            query,
                            scope,
                            attributes=attributes,
                            size_limit=limit,
                            time_limit=int(self.settings.timeout) or 1,
                        )
                    except LDAPNoSuchObjectResult:
                        code, response = _NO_SUCH_OBJECT, []
                    else:
                        code = (conn.result or {}).get("result")
                        response = list(conn.response or [])
                break
            except (LDAPException, OSError):
                self._drop_search_connections()
                if attempt:
                    raise DirectoryUnavailable("LDAP search failed") from None
        if code == _NO_SUCH_OBJECT:
            if scope == "BASE":  # a base object that does not exist: nothing
                return []
            log.warning("LDAP search base %s does not exist: refused", base)
            raise DirectoryUnavailable("the LDAP search base does not exist")
        found = [r for r in response if r.get("type") == "searchResEntry"]
        uris = [
            str(uri)
            for r in response
            if r.get("type") == "searchResRef"
            for uri in r.get("uri") or [""]
        ]
        unknown = [u for u in uris if passes_over is None or not passes_over(u, base)]
        # sizeLimitExceeded is ours only when we asked for a limit and got that many;
        # fewer is the server's own limit (AD's MaxPageSize: 1,000) cutting the answer
        allowed = (_SUCCESS, _SIZE_LIMIT) if limit and len(found) >= limit else (_SUCCESS,)
        referred = bool(unknown) and self.settings.referrals == "refuse"
        if referred or code not in allowed:
            log.warning(
                "LDAP search under %s answered in part (result %s, %d references): refused",
                base,
                code,
                len(unknown),
            )
            raise DirectoryUnavailable("the LDAP search answered in part")
        return found

    def _drop_search_connections(self) -> None:
        """Close every pooled search connection (after one failed, the others are
        likely dead too: a server restarted, a failover)."""
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            _close(conn)

    # -- reading users ------------------------------------------------------------------

    def _lookup(self, name: str) -> _Entry | None:
        """Find ``name``'s entry, its groups and state.  A name that finds nobody costs
        the same searches (against ``unknown_user_dn``) as one that finds somebody."""
        if not name or "\x00" in name or not _utf8(name):
            return None
        s = self.settings
        wanted = [s.group_attribute, s.id_attribute, _LOCKED, _RESET]
        wanted += wanted_attributes(s.groups)  # framed_ip_attribute
        entries = self._search(s.base, filter_for(s.user_filter, name), wanted, limit=2)
        found = entries[0] if len(entries) == 1 else None  # none, or ambiguous: nobody
        dn = str(found["dn"]) if found is not None else s.dummy_dn
        attributes: dict[str, Any] = dict(found.get("attributes", {})) if found else {}
        member_of = tuple(str(g) for g in attributes.get(s.group_attribute, []))
        searched: tuple[str, ...] = ()
        if s.group_filter is not None:
            query = s.group_filter.replace("{dn}", escape_filter_value(dn))
            searched = tuple(
                str(e["dn"]) for e in self._search(s.group_base or s.base, query, ["cn"])
            )
        # groups matter only to [[policy.groups]]: without any, no walk (nor its cost)
        walk = s.nested_groups and bool(s.groups)
        nested = self._nested((*member_of, *searched)) if walk else ()
        disabled = False
        if s.disabled_filter is not None:
            disabled = bool(self._search(dn, s.disabled_filter, ["1.1"], "BASE"))
        if found is None:
            return None
        key = _stable_id(s.id_attribute, attributes.get(s.id_attribute))
        if key is None:  # second factors would have nowhere stable to live: fail closed
            raise DirectoryUnavailable(f"the entry has no {s.id_attribute}")
        groups = (*member_of, *searched, *nested)
        matched = next((g for g in s.groups if g.matches(groups)), None)
        reset = [str(v).upper() for v in attributes.get(_RESET, [])] == ["TRUE"]
        return _Entry(
            dn,
            groups,
            self._account_user(
                name, f"{s.id_attribute}:{key}", matched, attributes=found.get("raw_attributes")
            ),
            member_of,
            searched,
            nested,
            locked=bool(attributes.get(_LOCKED)),
            reset=reset,
            disabled=disabled,
            at=time.monotonic(),
        )

    def _nested(self, direct: tuple[str, ...]) -> tuple[str, ...]:
        """The groups above the user's own ``direct`` ones (groups in groups), walked
        breadth-first by :func:`~eapkit.directory.groups.nested_groups` (at most
        ``MAX_NESTING`` levels, ``MAX_GROUPS`` groups, cycles ended) through
        :meth:`_parents`.  A user in no group, and a name nobody has, pay one step all
        the same, for ``unknown_user_dn``: the searches do not tell who exists."""
        starts = [g for g in direct if _is_dn(g)]
        if not starts:
            self._parents([self.settings.dummy_dn])
            return ()
        return nested_groups(starts, self._parents)

    def _parents(self, level: list[str]) -> list[str]:
        """The groups that have a group of ``level`` as a member.  With ``group_filter``:
        one search under ``group_base`` (or ``base``) for the groups naming any of
        them, ``(|<group_filter for each>)``; otherwise each group entry's own
        ``group_attribute`` (the memberof overlay keeps ``memberOf`` on groups too),
        one baseObject read per group (RFC 4511 §4.5.1.2; a group since deleted has
        none)."""
        s = self.settings
        if s.group_filter is not None:
            terms = [s.group_filter.replace("{dn}", escape_filter_value(g)) for g in level]
            query = terms[0] if len(terms) == 1 else f"(|{''.join(terms)})"
            return [str(e["dn"]) for e in self._search(s.group_base or s.base, query, ["1.1"])]
        above: list[str] = []
        for group in level:
            for entry in self._search(group, "(objectClass=*)", [s.group_attribute], "BASE"):
                above += (str(g) for g in entry.get("attributes", {}).get(s.group_attribute, []))
        return above

    def _still_stands(self, record: User, found: _Entry) -> bool:
        """Whether a cached entry still stands after its user's bind: the DN still holds
        the entry whose stable id the record carries (not one deleted and re-created
        under the same name, which would inherit its second factors) and, with
        ``disabled_filter``, one not disabled since.  One baseObject search (RFC 4511
        §4.5.1.2) on a kept connection."""
        s = self.settings
        query = f"(!{s.disabled_filter})" if s.disabled_filter else "(objectClass=*)"
        entries = self._search(found.dn, query, [s.id_attribute], "BASE")
        if len(entries) != 1:
            return False
        key = _stable_id(s.id_attribute, entries[0].get("attributes", {}).get(s.id_attribute))
        return f"{s.id_attribute}:{key}" == record.factor_key

    # -- credential interfaces ----------------------------------------------------------

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        """Bind as the user (RFC 4513 §5.1.3) with the ppolicy request control; an
        empty password never reaches a bind.  An unknown user's password is bound
        against ``unknown_user_dn`` (equal cost); the account state is told after the
        bind, with its own reason."""
        unusable = _unusable(password)
        if unusable is not None:
            known = unusable == "empty_password" or record is not None
            return Verdict.reject(unusable if known else "unknown_user")
        found = None
        try:
            if record is not None:
                found = self.entry(name, time.monotonic())
            response = self._user_bind(found.dn if found else self.settings.dummy_dn, password)
        except BindRefused as refused:
            if found is None:
                return Verdict.reject("unknown_user")
            reason = refusal_reason(refused.ppolicy)
            if reason is None and refused.ppolicy is None and found.locked:
                reason = "account_locked"  # no ppolicy control: the entry tells
            return Verdict.reject(reason or "bad_password")
        except DirectoryUnavailable:
            return Verdict.reject("directory_unavailable")
        if found is None:  # unknown_user_dn exists and took this password: still nobody
            return Verdict.reject("unknown_user")
        reason = refusal_reason(response)
        if reason is None:
            reason = "account_disabled" if found.disabled else None
        if reason is None and response is None:
            reason = found.state  # no ppolicy control: the entry's attributes tell
        if reason is not None:
            return Verdict.reject(reason)
        if record is not None and time.monotonic() - found.at > _TRUSTED:
            try:
                if not self._still_stands(record, found):
                    return self._changed(name)
            except DirectoryUnavailable:
                return Verdict.reject("directory_unavailable")
        return Verdict(True, "ok", name, factors=frozenset({Factor.PASSWORD}))

    def _changed(self, name: str) -> Verdict:
        """The cached entry no longer stands: forget it and refuse this login with what
        a fresh lookup tells (the request already holds the stale record); the next
        login reads the new entry."""
        with self._lock:
            self._cache.pop(name, None)
        fresh = self.entry(name, time.monotonic())
        if fresh is None:
            return Verdict.reject("unknown_user")
        return Verdict.reject("account_disabled" if fresh.disabled else "entry_replaced")

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

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool + self._binders, []
            self._binders = []
        for conn in pool:
            _close(conn)
        if self.store is not None:
            self.store.close()
