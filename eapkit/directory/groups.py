"""The LDAP directory's settings and group policies (no LDAP client needed to read them).

``[directory]`` with ``kind = "ldap"`` becomes :class:`LdapSettings`; each
``[[policy.groups]]`` entry a :class:`GroupPolicy`, matched in order against the
groups a user is in (first match wins).  :func:`escape_filter_value` is RFC 4515 §3's
escaping of an assertion value, which makes LDAP filter injection impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eapkit.catalog import LOGIN_METHODS
from eapkit.directory.base import SECOND_FACTORS, DirectoryUnavailable
from eapkit.errors import ConfigError
from eapkit.policy import UserPolicy, VendorAttribute

__all__ = [
    "GROUP_FACTORS",
    "GROUP_METHODS",
    "LIST_FACTORS",
    "MAX_CACHE_TTL",
    "MAX_GROUPS",
    "MAX_NESTING",
    "VENDOR_NAMES",
    "GroupPolicy",
    "LdapSettings",
    "escape_filter_value",
    "filter_for",
    "nested_groups",
]

# The longest ``cache_ttl``: a user disabled in LDAP by ``disabled_filter``, or moved
# out of a group, keeps the cached answer this long at most (docs/directories.md).
MAX_CACHE_TTL = 300.0
# Groups read per user, direct and nested (LDAP's walk, AD's LDAP_MATCHING_RULE_IN_CHAIN
# search); more is a directory we do not understand, and fails closed
MAX_GROUPS = 1000
# Levels of groups in groups above a user's own groups that the LDAP walk follows; a
# group deeper still fails closed (its policy might be the one that matters)
MAX_NESTING = 8
log = logging.getLogger(__name__)

_SPECIAL = {"*": "\\2a", "(": "\\28", ")": "\\29", "\\": "\\5c", "\x00": "\\00"}


def escape_filter_value(value: str) -> str:
    """RFC 4515 §3: in an assertion value, ``*``, ``(``, ``)``, ``\\`` and NUL are
    written ``\\XX`` (their octet in hex); everything else stands for itself."""
    return "".join(_SPECIAL.get(c, c) for c in value)


# A group policy's second_factor: the directory's kinds, "security_key" (the WebAuthn
# approval, said in the operator's words) and "any" (whatever the user enrolled).
GROUP_FACTORS = (*SECOND_FACTORS, "security_key", "any")
# The kinds a list of acceptable second factors may name (``security_key`` is
# ``webauthn``): "none" and "any" mean nothing in a list.
LIST_FACTORS = ("totp", "yubikey", "webauthn", "security_key")
# A group's ``methods``: RADIUS PAP and the catalog's EAP methods (eapkit.catalog).
GROUP_METHODS = LOGIN_METHODS
# Vendor-Specific attributes a ``vendor`` entry may name instead of numbering them.
# (vendor, type) as in eapkit.radius.dictionary, which this layer may not import.
VENDOR_NAMES: dict[str, tuple[int, int]] = {"Cisco-AVPair": (9, 1)}
# Never from configuration: the keys the server salt-encrypts itself, MS-MPPE-Send-Key
# and MS-MPPE-Recv-Key (Microsoft, vendor 311: RFC 2548 §2.4.2, §2.4.3).
_SALTED = frozenset({(311, 16), (311, 17)})


def _factor_kind(kind: str) -> str:
    """The directory's kind for a group's factor name (``security_key``: ``webauthn``)."""
    return "webauthn" if kind == "security_key" else kind


def _vendor_attribute(group: str, i: int, entry: object) -> VendorAttribute:
    """One ``vendor`` entry: ``{name = "Cisco-AVPair", value = ...}`` or ``{vendor = 9,
    type = 1, value = ...}``; the value is a string, sent as its UTF-8 octets."""
    where = f"[[policy.groups]] {group}: vendor #{i}"
    if not isinstance(entry, dict):
        raise ConfigError(f'{where} is a table {{vendor = 9, type = 1, value = "..."}}')
    value = entry.get("value")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: value is a string")
    name = entry.get("name")
    if name is not None:
        if name not in VENDOR_NAMES:
            known = ", ".join(VENDOR_NAMES) or "none"
            raise ConfigError(f"{where}: name {name!r} is not one eapkit knows ({known})")
        if "vendor" in entry or "type" in entry:
            raise ConfigError(f"{where}: a name or vendor and type, not both")
        number = VENDOR_NAMES[name]
    else:
        vendor, kind = entry.get("vendor"), entry.get("type")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (vendor, kind)):
            raise ConfigError(f"{where}: vendor and type are integers (or give a name)")
        assert isinstance(vendor, int) and isinstance(kind, int)
        number = (vendor, kind)
    if number in _SALTED:
        raise ConfigError(f"{where}: {number} is a key the server sends salt-encrypted itself")
    try:
        return VendorAttribute(number[0], number[1], value.encode())
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _second_factor(group: str, value: object) -> str | tuple[str, ...] | None:
    """``second_factor``: one of GROUP_FACTORS, or a non-empty list of LIST_FACTORS
    (kept as the directory's kinds, ``webauthn`` for ``security_key``)."""
    if value is None or isinstance(value, str):
        return value  # a single kind is checked by GroupPolicy
    kinds = _names(
        group, "second_factor", value, LIST_FACTORS, "a kind or a non-empty list of kinds"
    )
    return tuple(dict.fromkeys(_factor_kind(v) for v in kinds))


def _methods(group: str, value: object) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(_names(group, "methods", value, GROUP_METHODS, "a non-empty list of names"))


def _names(group: str, key: str, value: object, allowed: Sequence[str], shape: str) -> list[str]:
    """``key``'s value: a non-empty list of strings, each one of ``allowed``."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[[policy.groups]] {group}: {key} is {shape}")
    wrong = [v for v in value if v not in allowed]
    if wrong:
        raise ConfigError(
            f"[[policy.groups]] {group}: {key}: {', '.join(map(repr, wrong))}"
            f" is not one of {', '.join(allowed)}"
        )
    return value


def filter_for(template: str, user: str) -> str:
    """``template`` with ``{user}`` replaced by ``user`` escaped per RFC 4515 §3 (every
    ``*``, ``(``, ``)``, ``\\`` and NUL as ``\\XX``): the name is an assertion value,
    never filter syntax."""
    return template.replace("{user}", escape_filter_value(user))


def _rdn_value(dn: str) -> str:
    """``cn=vpn-admins,ou=groups,...`` -> ``vpn-admins`` (the first RDN's value)."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].strip() if "=" in first else first.strip()


def _norm_dn(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).casefold()


def nested_groups(
    direct: Sequence[str],
    parents: Callable[[list[str]], list[str]],
    *,
    depth: int = MAX_NESTING,
    total: int = MAX_GROUPS,
) -> tuple[str, ...]:
    """The groups above ``direct`` (the groups a user is in itself), each once, nearest
    first: ``parents(level)`` names the groups that have a group of ``level`` as a
    member; the walk goes breadth-first, one call per level, until a level brings no
    group not seen before (a cycle ends there too: DNs are compared as
    :meth:`GroupPolicy.matches` compares them).

    Fails closed (:class:`~eapkit.directory.base.DirectoryUnavailable`) rather than
    answer with groups missing: more than ``total`` groups in all, direct ones included
    (the cap of AD's nested-group search), or groups still above the ``depth``-th
    level.  A group left out could be the one whose policy asks for a security key."""
    seen = {_norm_dn(g) for g in direct}
    level = list(dict.fromkeys(direct))
    above: list[str] = []
    for step in range(depth + 1):
        if not level:
            break
        new: list[str] = []
        for group in parents(level):
            key = _norm_dn(group)
            if key not in seen:
                seen.add(key)
                new.append(group)
        if new and step == depth:
            log.warning("groups nested deeper than %d levels: refused", depth)
            raise DirectoryUnavailable(f"groups nested deeper than {depth} levels")
        if len(seen) > total:
            log.warning("more than %d groups: refused", total)
            raise DirectoryUnavailable(f"more than {total} groups")
        above += new
        level = new
    return tuple(above)


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """One ``[[policy.groups]]`` entry: members of ``group`` (a DN, or a group's name:
    the value of its first RDN) get ``second_factor`` (None: their own enrollment; a
    tuple: the kinds acceptable, of which the user must have enrolled one) and
    ``policy`` in the Accept, with Framed-IP-Address (RFC 2865 §5.8) read from the
    entry's ``framed_ip_attribute`` when set; ``methods`` (None: all) are the methods
    a member may log in with (a catalog name or ``pap``).  ``name`` (default:
    ``group``) is what the decision log and ``eapkit directory test`` call the entry
    (:attr:`label`)."""

    group: str
    second_factor: str | tuple[str, ...] | None = None
    policy: UserPolicy = field(default_factory=UserPolicy)
    name: str | None = None
    methods: frozenset[str] | None = None
    framed_ip_attribute: str | None = None

    @property
    def label(self) -> str:
        """The entry's name in the decision log (``policy``): ``name``, else ``group``."""
        return self.name if self.name is not None else self.group

    def __post_init__(self) -> None:
        if isinstance(self.second_factor, str) and self.second_factor not in GROUP_FACTORS:
            raise ConfigError(
                f"[[policy.groups]] second_factor is one of {', '.join(GROUP_FACTORS)}"
                " (or a list of them)"
            )
        if self.framed_ip_attribute is not None and self.policy.framed_ip is not None:
            raise ConfigError(
                f"[[policy.groups]] {self.group}: framed_ip or framed_ip_attribute, not both"
            )

    def matches(self, groups: Collection[str]) -> bool:
        if "=" in self.group:
            wanted = _norm_dn(self.group)
            return any(_norm_dn(g) == wanted for g in groups)
        name = self.group.casefold()
        return any(_rdn_value(g).casefold() == name for g in groups)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupPolicy:
        if not isinstance(data.get("group"), str) or not data["group"]:
            raise ConfigError("each [[policy.groups]] entry names a group (a DN or a name)")
        group = str(data["group"])
        klass = data.get("class")
        vendor = data.get("vendor", [])
        if not isinstance(vendor, list):
            raise ConfigError(f"[[policy.groups]] {group}: vendor is a list of tables")
        filter_id = data.get("filter_id")
        if filter_id is not None and not isinstance(filter_id, str):
            raise ConfigError(f"[[policy.groups]] {group}: filter_id is a string")
        try:
            policy = UserPolicy(
                session_timeout=data.get("session_timeout"),
                framed_pool=data.get("framed_pool"),
                framed_ip=data.get("framed_ip"),
                klass=klass.encode() if isinstance(klass, str) else None,
                filter_id=filter_id,
                vendor=tuple(_vendor_attribute(group, i, v) for i, v in enumerate(vendor, 1)),
            )
        except ValueError as exc:
            raise ConfigError(f"[[policy.groups]] {group}: {exc}") from None
        name = data.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"[[policy.groups]] {group}: name is a non-empty string")
        attribute = data.get("framed_ip_attribute")
        if attribute is not None and (not isinstance(attribute, str) or not attribute):
            raise ConfigError(f"[[policy.groups]] {group}: framed_ip_attribute names an attribute")
        return cls(
            group,
            _second_factor(group, data.get("second_factor")),
            policy,
            name,
            _methods(group, data.get("methods")),
            attribute,
        )


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """The ``[directory]`` table with ``kind = "ldap"`` (see docs/directories.md)."""

    servers: tuple[str, ...]
    base: str
    bind_dn: str | None = None
    bind_password: str = field(default="", repr=False)
    user_filter: str = "(uid={user})"
    group_attribute: str = "memberOf"
    group_base: str | None = None
    group_filter: str | None = None  # e.g. (&(objectClass=groupOfNames)(member={dn}))
    start_tls: bool = False
    ca: Path | None = None
    timeout: float = 5.0
    cache_ttl: float = 60.0
    cache_size: int = 1024
    pool_size: int = 4
    groups: tuple[GroupPolicy, ...] = ()
    # The attribute that names a user for good (a rename keeps it): second factors are
    # stored under it.  OpenLDAP's entryUUID (RFC 4530); AD's objectGUID.
    id_attribute: str = "entryUUID"
    # Users matching this filter (and the user filter) are refused: account_disabled.
    disabled_filter: str | None = None
    # What an unknown user's password is bound against, so that an unknown user costs
    # what a known one with a wrong password does: a DN that does not exist (default
    # cn=eapkit-unknown-user,<base>), so no real account ever counts a failure.
    unknown_user_dn: str | None = None
    # A search answered with continuation references (RFC 4511 §4.5.3): "refuse"
    # fails closed (the other server may hold another entry for the name, or a
    # group); "ignore" takes what this server holds, for a base whose references are
    # known not to hold users (AD's DomainDnsZones/ForestDnsZones at a domain's root).
    referrals: str = "refuse"
    # Follow groups in groups above the user's own (eapkit.directory.ldap; AD reads
    # its own setting, AdSettings.nested_groups, with the same default).
    nested_groups: bool = True

    @property
    def dummy_dn(self) -> str:
        return self.unknown_user_dn or f"cn=eapkit-unknown-user,{self.base}"

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("[directory] servers: at least one ldaps:// or ldap:// URL")
        for url in self.servers:
            scheme = url.split("://", 1)[0].lower() if "://" in url else ""
            if scheme not in ("ldap", "ldaps"):
                raise ConfigError(f"[directory] servers: {url!r} is not an ldap(s):// URL")
            if scheme == "ldap" and not self.start_tls:
                raise ConfigError(
                    f"[directory] {url}: passwords would cross in cleartext;"
                    " use ldaps:// or start_tls = true"
                )
        if self.bind_dn and not self.bind_password:
            raise ConfigError(
                "[directory] bind_dn without a password: that is an unauthenticated bind"
                " (RFC 4513 §5.1.2); set bind_password_file (or leave out bind_dn)"
            )
        if "{user}" not in self.user_filter:
            raise ConfigError("[directory] user_filter must contain {user}")
        if self.group_filter is not None and "{dn}" not in self.group_filter:
            raise ConfigError("[directory] group_filter must contain {dn}")
        if self.disabled_filter is not None and not (
            self.disabled_filter.startswith("(") and self.disabled_filter.endswith(")")
        ):
            raise ConfigError("[directory] disabled_filter is a filter in parentheses")
        if self.referrals not in ("refuse", "ignore"):
            raise ConfigError('[directory] referrals is "refuse" or "ignore"')
        if not self.id_attribute:
            raise ConfigError("[directory] id_attribute names an attribute (entryUUID)")
        if not 0 <= self.cache_ttl <= MAX_CACHE_TTL:
            raise ConfigError(
                f"[directory] cache_ttl is 0 to {MAX_CACHE_TTL:g} seconds: a user disabled"
                " in LDAP keeps logging in from the cache that long"
            )
        if not self.timeout > 0 or self.pool_size < 1 or self.cache_size < 0:
            raise ConfigError("[directory] timeout > 0, pool_size >= 1, cache_size >= 0")

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], base: Path = Path(), groups: Sequence[GroupPolicy] = ()
    ) -> LdapSettings:
        def p(value: str) -> Path:
            return base / value if not Path(value).is_absolute() else Path(value)

        if "base" not in data:
            raise ConfigError("[directory] base: the search base, e.g. ou=people,dc=example,dc=org")
        password = ""
        if "bind_password_file" in data:
            try:
                password = p(str(data["bind_password_file"])).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"[directory] bind_password_file: {exc.strerror}") from None
        servers = data.get("servers", [])
        return cls(
            servers=tuple([servers] if isinstance(servers, str) else servers),
            base=str(data["base"]),
            bind_dn=data.get("bind_dn"),
            bind_password=password,
            user_filter=str(data.get("user_filter", "(uid={user})")),
            group_attribute=str(data.get("group_attribute", "memberOf")),
            group_base=data.get("group_base"),
            group_filter=data.get("group_filter"),
            start_tls=bool(data.get("start_tls", False)),
            ca=p(str(data["ca"])) if "ca" in data else None,
            timeout=float(data.get("timeout", 5.0)),
            cache_ttl=float(data.get("cache_ttl", 60.0)),
            cache_size=int(data.get("cache_size", 1024)),
            pool_size=int(data.get("pool_size", 4)),
            groups=tuple(groups),
            id_attribute=str(data.get("id_attribute", "entryUUID")),
            disabled_filter=data.get("disabled_filter"),
            unknown_user_dn=data.get("unknown_user_dn"),
            referrals=str(data.get("referrals", "refuse")),
            nested_groups=bool(data.get("nested_groups", True)),
        )
