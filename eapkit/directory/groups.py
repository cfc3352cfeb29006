"""The LDAP directory's settings and group policies (no LDAP client needed to read them).

``[directory]`` with ``kind = "ldap"`` becomes :class:`LdapSettings`; each
``[[policy.groups]]`` entry a :class:`GroupPolicy`, matched in order against the
groups a user is in (first match wins).  :func:`escape_filter_value` is RFC 4515 §3's
escaping of an assertion value, which makes LDAP filter injection impossible.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eapkit.directory.base import SECOND_FACTORS
from eapkit.errors import ConfigError
from eapkit.policy import UserPolicy

__all__ = [
    "GROUP_FACTORS",
    "GroupPolicy",
    "LdapSettings",
    "escape_filter_value",
    "filter_for",
]

_SPECIAL = {"*": "\\2a", "(": "\\28", ")": "\\29", "\\": "\\5c", "\x00": "\\00"}


def escape_filter_value(value: str) -> str:
    """RFC 4515 §3: in an assertion value, ``*``, ``(``, ``)``, ``\\`` and NUL are
    written ``\\XX`` (their octet in hex); everything else stands for itself."""
    return "".join(_SPECIAL.get(c, c) for c in value)


# A group policy's second_factor: the directory's kinds, "security_key" (the WebAuthn
# approval, said in the operator's words) and "any" (whatever the user enrolled).
GROUP_FACTORS = (*SECOND_FACTORS, "security_key", "any")


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


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """One ``[[policy.groups]]`` entry: members of ``group`` (a DN, or a group's name:
    the value of its first RDN) get ``second_factor`` (None: their own enrollment) and
    ``policy`` in the Accept."""

    group: str
    second_factor: str | None = None
    policy: UserPolicy = field(default_factory=UserPolicy)

    def __post_init__(self) -> None:
        if self.second_factor is not None and self.second_factor not in GROUP_FACTORS:
            raise ConfigError(
                f"[[policy.groups]] second_factor is one of {', '.join(GROUP_FACTORS)}"
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
        klass = data.get("class")
        try:
            policy = UserPolicy(
                session_timeout=data.get("session_timeout"),
                framed_pool=data.get("framed_pool"),
                framed_ip=data.get("framed_ip"),
                klass=klass.encode() if isinstance(klass, str) else None,
            )
        except ValueError as exc:
            raise ConfigError(f"[[policy.groups]] {data['group']}: {exc}") from None
        second = data.get("second_factor")
        return cls(str(data["group"]), str(second) if second is not None else None, policy)


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
        if "{user}" not in self.user_filter:
            raise ConfigError("[directory] user_filter must contain {user}")
        if self.group_filter is not None and "{dn}" not in self.group_filter:
            raise ConfigError("[directory] group_filter must contain {dn}")
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
        )
