"""Active Directory: users, passwords, account state and nested groups read in place.

``[directory] kind = "ad"`` reads a domain controller (Windows or Samba) over LDAPS or
StartTLS through the LDAP directory's connections (:mod:`eapkit.directory.ldap`:
failover, certificate verification, bind account, pool, timeouts), and adds what AD
has that plain LDAP has not:

1. **The user** is found by ``(sAMAccountName={user})`` (RFC 4515-escaped); the
   password is checked by a simple bind as the entry's DN (RFC 4513 §5.1.3).
2. **Account state** from the entry ([MS-ADTS] §2.2.16 userAccountControl, §3.1.1.4.5
   constructed ``msDS-User-Account-Control-Computed``, [MS-ADA1] accountExpires and
   pwdLastSet as FILETIMEs): ``account_disabled`` (ACCOUNTDISABLE), ``account_locked``
   (LOCKOUT), ``account_expired`` (accountExpires past), ``password_must_change``
   (pwdLastSet = 0, or PASSWORD_EXPIRED).  A refused account's login never binds (so it
   never counts a bad password at the DC); its reason goes to the decision log
   (:attr:`User.state <eapkit.directory.base.User.state>`), the wire sees the same
   Access-Reject as a wrong password.
3. **Nested groups** by one search with LDAP_MATCHING_RULE_IN_CHAIN
   (``member:1.2.840.113556.1.4.1941:=<user DN>``, [MS-ADTS] §3.1.1.3.4.4.3): every
   group the user is in, directly or through other groups; ``[[policy.groups]]`` is
   matched against them.  More than :data:`MAX_GROUPS` fails closed.
4. **objectGUID** ([MS-ADA3] §2.44) is the account's stable key: the second-factor
   enrollment kind is stored under it, so a renamed account keeps it.
5. **MS-CHAPv2** (bare, in TTLS, in PEAP, over plain RADIUS) the way FreeRADIUS's
   rlm_mschap does it: AD keeps the NT hash, so the response goes to Samba's
   ``ntlm_auth --request-nt-key --allow-mschapv2`` (winbind, on or joined to the
   domain), which answers ``NT_KEY: <hex>`` (PasswordHashHash, RFC 2759 §8.4) for a right
   one: the MPPE keys (RFC 3079 §3.4) and the authenticator response (RFC 2759 §8.7)
   come from it.  The process is run by an injected ``run`` (the RADIUS layer's,
   :mod:`eapkit.radius.ntlm_auth`) with a timeout, on the thread of the blocking-check
   pool that serves the request; a timeout or a missing helper fails closed
   (``directory_unavailable``).
6. **Equal cost** (as :mod:`eapkit.directory.ldap`): a name AD does not have costs
   the same searches as one it has (the nested-group search runs for ``unknown_user_dn``)
   and is cached alike; its password, and a refused account's, is bound against
   ``unknown_user_dn`` (a DN that does not exist); its MS-CHAPv2 response goes to
   ``ntlm_auth`` for ``unknown_account`` (``eapkit?unknown``: ``?`` is forbidden in
   sAMAccountName, so no account is ever locked out by it).  The DC does less for a
   name it does not have (no bad-password count to write), so each stand-in then waits
   until the median real check's time has passed (:mod:`eapkit.directory.equal_cost`).
   Timing does not tell whether a name exists.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar
from urllib.parse import unquote

from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult

from eapkit.credentials import Verdict
from eapkit.crypto.mschap import challenge_hash
from eapkit.directory.ad_rules import (
    AdSettings,
    HelperRun,
    account_state,
    bind_refusal,
    parse_ntlm_auth,
)
from eapkit.directory.base import (
    DirectoryUnavailable,
    ExternalAccounts,
    User,
    wanted_attributes,
)
from eapkit.directory.equal_cost import MatchedCost
from eapkit.directory.groups import MAX_GROUPS, LdapSettings, escape_filter_value, filter_for
from eapkit.directory.ldap import LdapDirectory
from eapkit.methods.base import Factor
from eapkit.methods.mschapv2_check import DelegatedCheck, NtResponseCheck
from eapkit.store.base import Store

__all__ = ["MAX_GROUPS", "AdDirectory", "AdSettings", "HelperRun", "holds_no_accounts"]

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN
COMPUTED = "msDS-User-Account-Control-Computed"
_ATTRIBUTES = [
    "sAMAccountName",
    "objectGUID",
    "memberOf",
    "userAccountControl",
    COMPUTED,
    "accountExpires",
    "pwdLastSet",
]
_OVERLAY = "directory:ad:second_factor:"
# AD's naming contexts that hold no accounts and no security groups: a subtree search at
# a domain's root answers them as continuation references (RFC 4511 §4.5.3)
_NO_ACCOUNTS = frozenset({"dc=domaindnszones", "dc=forestdnszones", "cn=configuration"})
log = logging.getLogger(__name__)


def holds_no_accounts(uri: str, base: str) -> bool:
    """Whether the continuation reference ``uri`` (an LDAP URL, RFC 4516) names one of
    AD's DNS application partitions or its configuration partition directly below the
    search ``base``: they hold no user and no security group, so an answer without them
    is complete.  Any other reference (a child domain, another server) is not."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if "/" not in rest:
        return False
    dn = unquote(rest.split("/", 1)[1].split("?", 1)[0])
    first, _, parent = dn.partition(",")
    return _norm(first) in _NO_ACCOUNTS and _norm(parent) == _norm(base) != ""


def _norm(dn: str) -> str:
    return ",".join(
        "=".join(p.strip() for p in rdn.split("=", 1)) for rdn in dn.split(",")
    ).casefold()


def _in_chain(dn: str) -> str:
    """Every group ``dn`` is in, directly or nested ([MS-ADTS] §3.1.1.3.4.4.3)."""
    return f"(member:{IN_CHAIN}:={escape_filter_value(dn)})"


def _first(raw: dict[str, list[bytes]], name: str) -> bytes | None:
    for key, values in raw.items():
        if key.lower() == name.lower() and values:
            return values[0]
    return None


def _integer(raw: dict[str, list[bytes]], name: str, default: int) -> int:
    value = _first(raw, name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class _AdEntry:
    dn: str
    account: str  # sAMAccountName, for ntlm_auth
    guid: str  # objectGUID as a UUID string
    member_of: tuple[str, ...]  # the entry's memberOf
    searched: tuple[str, ...]  # the nested-group search's (LDAP_MATCHING_RULE_IN_CHAIN)
    state: str | None
    user: User = field(repr=False)
    nested: tuple[str, ...] = ()  # AD's nested groups are in ``searched``

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group the account is in, directly or nested, each once."""
        return tuple(dict.fromkeys((*self.member_of, *self.searched)))


class AdDirectory(ExternalAccounts[_AdEntry]):
    """Users in Active Directory (the :class:`~eapkit.directory.base.Directory`
    contract, read-only but for the second-factor enrollment kept in ``store``)."""

    OVERLAY = _OVERLAY
    REFUSALS: ClassVar[dict[str, str]] = {
        "list": "Active Directory is listed with AD's tools, not eapkit",
        "add": "accounts are added in Active Directory, not by eapkit",
        "set_policy": "an AD account's policy comes from [[policy.groups]]",
        "set_disabled": "disable an account in Active Directory, not by eapkit",
        "delete": "accounts are removed in Active Directory, not by eapkit",
        "enroll": "enrolling an AD account needs eapkit's store",
    }

    def __init__(
        self,
        settings: AdSettings,
        store: Store | None = None,
        run: HelperRun | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._ldap = LdapDirectory(settings.ldap)  # connections only; no store of its own
        self._run = run
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, _AdEntry | None]] = OrderedDict()
        self._accounts: OrderedDict[str, str] = OrderedDict()  # name -> sAMAccountName
        # how long real binds and ntlm_auth runs take: the stand-ins last as long
        self.bind_cost = MatchedCost(settings.ldap.timeout)
        self.ntlm_auth_cost = MatchedCost(settings.ntlm_auth_timeout)

    # -- reading accounts -----------------------------------------------------------------

    @property
    def account_settings(self) -> LdapSettings:
        return self.settings.ldap

    @property
    def answered_by(self) -> str:
        return self._ldap.answered_by

    def _search(
        self, base: str, query: str, attributes: list[str], limit: int
    ) -> list[dict[str, Any]]:
        """A subtree search, failing closed as the LDAP directory's does (one code:
        :meth:`LdapDirectory._search <eapkit.directory.ldap.LdapDirectory._search>`):
        a continuation reference (RFC 4511 §4.5.3) other than to the DNS and
        configuration partitions below a domain's root (:func:`holds_no_accounts`;
        all of them with ``referrals = "ignore"``), a referral, a time limit, a size
        limit beyond ``limit`` or a base that does not exist is ``directory_unavailable``."""
        return self._ldap._search(
            base, query, attributes, "SUBTREE", limit, passes_over=holds_no_accounts
        )

    def _groups_of(self, dn: str) -> tuple[str, ...]:
        """Every group ``dn`` is in, directly or nested (LDAP_MATCHING_RULE_IN_CHAIN).
        More than :data:`MAX_GROUPS` fails closed: a cut list may miss the group whose
        policy asks for a security key."""
        s = self.settings.ldap
        found = self._search(s.group_base or s.base, _in_chain(dn), ["1.1"], MAX_GROUPS + 1)
        if len(found) > MAX_GROUPS:
            log.warning("more than %d groups for %s: refused", MAX_GROUPS, dn)
            raise DirectoryUnavailable(f"more than {MAX_GROUPS} groups")
        return tuple(str(e["dn"]) for e in found)

    def _lookup(self, name: str) -> _AdEntry | None:
        if not name or "\x00" in name:
            return None
        s = self.settings.ldap
        query = filter_for(s.user_filter, name)
        entries = self._search(s.base, query, [*_ATTRIBUTES, *wanted_attributes(s.groups)], 2)
        if len(entries) != 1:  # none, or ambiguous: nobody, at a known account's cost
            if self.settings.nested_groups:
                self._groups_of(s.dummy_dn)
            return None
        dn = str(entries[0]["dn"])
        raw: dict[str, list[bytes]] = entries[0].get("raw_attributes", {})
        guid_bytes = _first(raw, "objectGUID")
        if guid_bytes is None or len(guid_bytes) != 16:
            raise DirectoryUnavailable("the account has no objectGUID")  # fail closed
        guid = str(uuid.UUID(bytes_le=guid_bytes))  # [MS-DTYP] §2.3.4 GUID layout
        account = (_first(raw, "sAMAccountName") or name.encode()).decode("utf-8", "replace")
        member_of = tuple(
            v.decode("utf-8", "replace")
            for k, vs in raw.items()
            for v in vs
            if k.lower() == "memberof"
        )
        searched: tuple[str, ...] = ()
        if self.settings.nested_groups:
            searched = self._groups_of(dn)
        state = account_state(
            _integer(raw, "userAccountControl", 0),
            _integer(raw, COMPUTED, 0),
            _integer(raw, "accountExpires", 0),
            _integer(raw, "pwdLastSet", 1),
            self._clock(),
        )
        with self._lock:  # kept even when entries are not cached (cache_ttl = 0)
            self._accounts[name] = account
            self._accounts.move_to_end(name)
            while len(self._accounts) > max(s.cache_size, 1):
                self._accounts.popitem(last=False)
        groups = tuple(dict.fromkeys((*member_of, *searched)))
        matched = next((g for g in s.groups if g.matches(groups)), None)
        user = self._account_user(name, guid, matched, state, raw)
        return _AdEntry(dn, account, guid, member_of, searched, state, user)

    # -- credential interfaces ------------------------------------------------------------

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        """Bind as the account (RFC 4513 §5.1.3); an empty password never reaches a bind.
        An unknown user's password, and a refused account's (its state is the reason),
        are bound against ``unknown_user_dn`` instead (a DN that does not exist: no
        account counts a bad password), so each costs what a wrong password costs."""
        if not password:
            return Verdict.reject("empty_password")
        found = None
        cost = self.bind_cost
        started = cost.clock()
        try:
            if record is not None and record.state is None:
                found = self.entry(name, time.monotonic())
            dn = found.dn if found is not None else self.settings.ldap.dummy_dn
            started = cost.clock()
            conn = self._ldap._connect(dn, password)
        except LDAPInvalidCredentialsResult as refused:
            if found is None:
                cost.pad(started)  # AD does less for a DN it has not: wait the difference
                return Verdict.reject(record.state if record and record.state else "unknown_user")
            cost.record(started, refused=True)
            # AD names why in the diagnostic ("... data 533 ..."): a state newer than the
            # cached entry; a wrong password is "data 52e"
            return Verdict.reject(bind_refusal(str(refused.message or "")))
        except DirectoryUnavailable:
            refused_state = record.state if record is not None else None  # known without the DC
            return Verdict.reject(refused_state or "directory_unavailable")
        if found is None:  # unknown_user_dn took this password (it must not exist)
            cost.pad(started)
            with suppress(LDAPException, OSError):
                conn.unbind()
            return Verdict.reject(record.state if record and record.state else "unknown_user")
        cost.record(started, refused=False)
        with suppress(LDAPException, OSError):
            conn.unbind()
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

    def delegated_check(self, record: User) -> DelegatedCheck:
        """MS-CHAPv2 for ``record``: its response checked by the DC through ntlm_auth,
        for the sAMAccountName its lookup found (the name may be a UPN)."""
        with self._lock:
            account = self._accounts.get(record.name, record.name)
        return DelegatedCheck(partial(self._ntlm_auth, account))

    def nt_hash(self, user: str) -> DelegatedCheck | None:
        record = self.get(user)
        return self.delegated_check(record) if record is not None else self.nt_stand_in(user)

    def nt_stand_in(self, name: str) -> DelegatedCheck:
        """MS-CHAPv2 for a response that must fail (``name`` unknown to AD, or refused
        before any check): ``ntlm_auth`` runs all the same, for ``unknown_account``, a
        name with a character AD forbids in sAMAccountName, so the DC counts the bad
        password against no account; the answer is ``unknown_user`` whatever it says
        (``directory_unavailable`` when the DC could not be asked)."""
        return DelegatedCheck(self._stand_in_check)

    def _stand_in_check(
        self,
        authenticator_challenge: bytes,
        peer_challenge: bytes,
        name: bytes,
        nt_response: bytes,
    ) -> NtResponseCheck:
        started = self.ntlm_auth_cost.clock()
        answer = self._ntlm_auth(
            self.settings.unknown_account,
            authenticator_challenge,
            peer_challenge,
            name,
            nt_response,
            stand_in=True,
        )
        self.ntlm_auth_cost.pad(started)  # the DC does less for no account: wait the rest
        unavailable = answer.reason == "directory_unavailable"
        return NtResponseCheck("directory_unavailable" if unavailable else "unknown_user")

    def _ntlm_auth(
        self,
        account: str,
        authenticator_challenge: bytes,
        peer_challenge: bytes,
        name: bytes,
        nt_response: bytes,
        *,
        stand_in: bool = False,
    ) -> NtResponseCheck:
        """RFC 2759 §8.2 ChallengeHash here, §8.5 ChallengeResponse checked by the DC.
        A real account's run is timed (:attr:`ntlm_auth_cost`); a stand-in's is not."""
        s = self.settings
        if self._run is None or s.domain is None:
            return NtResponseCheck("mschapv2_not_configured")
        try:
            challenge = challenge_hash(peer_challenge, authenticator_challenge, name)
        except ValueError:
            return NtResponseCheck("malformed")
        if len(nt_response) != 24:
            return NtResponseCheck("malformed")
        argv = [
            *s.ntlm_auth,
            "--request-nt-key",
            "--allow-mschapv2",
            f"--username={account}",
            f"--domain={s.domain}",
            f"--challenge={challenge.hex()}",
            f"--nt-response={nt_response.hex()}",
        ]
        started = self.ntlm_auth_cost.clock()
        try:
            status, output = self._run(argv, s.ntlm_auth_timeout)
        except (OSError, TimeoutError):
            return NtResponseCheck("directory_unavailable")
        answer = parse_ntlm_auth(status, output)
        if not stand_in and answer.reason != "directory_unavailable":
            self.ntlm_auth_cost.record(started, refused=not answer.ok)
        return answer

    def close(self) -> None:
        self._ldap.close()
        if self.store is not None:
            self.store.close()
