"""The schema of ``eapkit serve``'s TOML file, as data, and its validation.

Every key :class:`eapkit.serve.ServeConfig` reads is listed here with the type it
must have (and, for a few, the values it may take).  :func:`validate` walks a parsed
TOML document against it and returns one :class:`Finding` per mistake: an unknown
key names the nearest valid one (``seconds_factor`` -> ``second_factor``), a wrong
type says the key and what it should be, a missing client secret says so.  The
semantic checks (files, certificates, weak settings) are in :mod:`eapkit.check`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eapkit.authz import IDENTITY_SOURCES, TEAP_IDENTITIES
from eapkit.catalog import CATALOG
from eapkit.directory import DIRECTORIES
from eapkit.directory.groups import GROUP_FACTORS, GROUP_METHODS, VENDOR_NAMES
from eapkit.methods.base import Factor
from eapkit.teap_config import TEAP_COMPAT, TEAP_INNER

__all__ = ["SCHEMA", "Finding", "Key", "Table", "nearest", "validate"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``eapkit check`` has to say: an ``error`` stops ``eapkit serve``."""

    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.level}: {self.where}: {self.message}"
            if self.where
            else (f"{self.level}: {self.message}")
        )


@dataclass(frozen=True, slots=True)
class Key:
    """A key's type: ``kind`` is one of str, int, number, bool, path, str-list, hostports;
    ``choices`` its allowed values; ``required`` a key the table cannot do without."""

    kind: str
    choices: tuple[str, ...] = ()
    required: bool = False
    hint: str = ""
    table: Table | None = None  # a table is accepted in place of the value


@dataclass(frozen=True, slots=True)
class Table:
    """A TOML table (``many``: an array of tables, ``[[clients]]``)."""

    keys: Mapping[str, Key | Table]
    many: bool = False


METHOD_NAMES = tuple(entry.name for entry in CATALOG)
DIRECTORY_NAMES = DIRECTORIES

TLS = Table(
    {
        "cert": Key("path"),
        "key": Key("path"),
        "ca": Key("path"),
        "crl": Key("paths"),
        "server_name": Key("str", hint="the name clients check (strongSwan aaa_id)"),
        "fragment_size": Key("int"),
        "min_version": Key("str", ("1.2", "1.3")),
        "max_version": Key("str", ("1.2", "1.3")),
        "resume_lifetime": Key("int"),
        "profile": Key("str", ("default", "legacy")),
        "ciphers": Key("str", hint="a TLS 1.2 cipher list in OpenSSL's syntax"),
        "groups": Key("str", hint="key exchange groups, e.g. X25519:P-256"),
        "signature_algorithms": Key("str"),
        "security_level": Key("int"),
        "peap_version": Key("int", hint="0 or 1: the highest PEAP version offered"),
        "identity": Key(
            "str-list", hint="certificate names that name the user: san_upn, san_email, cn, ..."
        ),
        "realms": Key("str-list", hint="realms whose user@realm names the user alone"),
    }
)

CLIENTS = Table(
    {
        "address": Key(
            "str", required=True, hint="the NAS's address or network, e.g. 192.0.2.1/32"
        ),
        "secret": Key(
            "str", required=True, hint="the shared secret, the same as the NAS's (RFC 2865 §3)"
        ),
        "name": Key("str"),
        "second_factor": Key("str", ("enforce", "nas")),
        "bind_rounds": Key("bool"),
    },
    many=True,
)

DIRECTORY = Table(  # directory = "local" | "store", or a [directory] table
    {
        "kind": Key(
            "str", DIRECTORY_NAMES, required=True, hint='"ldap" or "ad" (or "local", "store")'
        ),
        "servers": Key("str-list", hint="ldaps:// or ldap:// URLs, tried in order"),
        "base": Key("str"),
        "bind_dn": Key("str"),
        "bind_password_file": Key("path"),
        "user_filter": Key("str", hint="e.g. (uid={user})"),
        "group_attribute": Key("str"),
        "group_base": Key("str"),
        "group_filter": Key("str", hint="e.g. (&(objectClass=groupOfNames)(member={dn}))"),
        "start_tls": Key("bool"),
        "ca": Key("path"),
        "timeout": Key("number"),
        "cache_ttl": Key("number"),
        "cache_size": Key("int"),
        "pool_size": Key("int"),
        "id_attribute": Key("str", hint="the stable identifier: entryUUID (AD: objectGUID)"),
        "disabled_filter": Key("str", hint="e.g. (employeeType=disabled)"),
        "unknown_user_dn": Key("str", hint="a DN that does not exist (unknown users bind it)"),
        "domain": Key("str", hint='kind = "ad": the NetBIOS domain, for ntlm_auth'),
        "ntlm_auth": Key("str-list", hint='kind = "ad": the ntlm_auth command'),
        "ntlm_auth_timeout": Key("number"),
        "nested_groups": Key("bool"),
        "referrals": Key("str", ("refuse", "ignore")),
        "unknown_account": Key("str", hint='kind = "ad": a name AD cannot have (ntlm_auth)'),
    }
)

VENDOR_ATTRIBUTES = Table(  # a [[policy.groups]] entry's vendor = [{...}, ...]
    {
        "name": Key("str", tuple(VENDOR_NAMES), hint="an attribute eapkit names"),
        "vendor": Key("int", hint="the vendor's enterprise number, e.g. 9 (Cisco)"),
        "type": Key("int", hint="the vendor's attribute number, e.g. 1 (Cisco-AVPair)"),
        "value": Key("str", required=True, hint="the value, sent as UTF-8"),
    },
    many=True,
)

GROUP_POLICIES = Table(
    {
        "group": Key("str", required=True, hint="a group's DN or name"),
        "name": Key("str", hint="the entry's name in the decision log (default: group)"),
        "second_factor": Key(
            "str-or-list",
            GROUP_FACTORS,
            hint="one kind, or a list of the kinds accepted",
        ),
        "methods": Key("str-list", GROUP_METHODS, hint="the methods members may use"),
        "session_timeout": Key("int"),
        "framed_pool": Key("str"),
        "framed_ip": Key("str"),
        "framed_ip_attribute": Key("str", hint="the entry's attribute holding the address"),
        "class": Key("str"),
        "filter_id": Key("str"),
        "vendor": VENDOR_ATTRIBUTES,
    },
    many=True,
)

POLICY = Table(
    {
        "groups": GROUP_POLICIES,
        "certificate_is_possession": Key("bool"),
        "max_password_failures": Key("int"),
        "max_nas_password_failures": Key("int"),
        "password_failure_window": Key("number"),
    }
)

BRIDGE = Table(
    {
        "listen": Key("str"),
        "url": Key("str"),
        "rp_id": Key("str"),
        "rp_name": Key("str"),
        "timeout": Key("number"),
        "user_verification": Key("str", ("required", "preferred", "discouraged")),
        "enroll_ttl": Key("number"),
        "session_ttl": Key("number"),
        "max_pending": Key("int"),
        "device_crl": Key("path", hint="the device CRL file, served at GET /devices.crl"),
    }
)

RADSEC_CLIENTS = Table(
    {
        "name": Key("str", hint="the client's name in policy and the decision log"),
        "ca": Key("path", required=True, hint="the CA that issued the NAS's certificate"),
        "subject": Key("str", hint="a shell pattern for the certificate's subject CN"),
        "san": Key("str", hint="a shell pattern for one of the certificate's dNSName SANs"),
        "second_factor": Key("str", ("enforce", "nas")),
        "bind_rounds": Key("bool"),
    },
    many=True,
)

RADSEC = Table(
    {
        "listen": Key("hostports"),
        "cert": Key("path"),
        "key": Key("path"),
        "ca": Key("paths"),
        "crl": Key("paths"),
        "min_version": Key("str", ("1.2", "1.3")),
        "radius_1_1": Key("str", ("forbid", "allow", "require"), hint="RFC 9765 by ALPN"),
        "idle_timeout": Key("number"),
        "handshake_timeout": Key("number"),
        "max_connections": Key("int"),
        "max_connections_per_client": Key("int"),
        "tls13_tickets": Key("bool"),
        "dtls_listen": Key("hostports"),
        "session_lifetime": Key("number"),
        "clients": RADSEC_CLIENTS,
    }
)

ADMIN = Table({"administrators": Key("str-list", hint="who may issue bypasses, approve resets")})

FACTORS = tuple(f.value for f in Factor)

TEAP = Table(  # eapkit.teap_config, docs/teap.md
    {
        "identity": Key("str", tuple(TEAP_IDENTITIES), hint="which identity types to require"),
        "user_inner": Key("str", TEAP_INNER),
        "machine_inner": Key("str", TEAP_INNER),
        "compat": Key("str", TEAP_COMPAT, hint='"rfc7170" for hostapd/wpa_supplicant 2.10'),
        "require_emsk_binding": Key("bool", hint="refuse MSK-only Crypto-Binding answers"),
        "machine_identity": Key("str-list", IDENTITY_SOURCES),
        "machine_prefix": Key("str", hint="machine accounts' prefix in the directory: host/"),
        "unbound_users": Key("str", ("allow", "deny")),
        "rules": Table(
            {"machine": Key("str-list", FACTORS), "user": Key("str-list", FACTORS)}, many=True
        ),
        "bindings": Table(
            {
                "users": Key("str-list", required=True, hint="user names or shell patterns"),
                "machines": Key("str-list", required=True, hint="machine names or shell patterns"),
            },
            many=True,
        ),
    }
)

SCHEMA = Table(
    {
        "listen": Key("hostports"),
        "db": Key("path"),
        "log": Key("str"),
        "syslog": Key("str", hint="udp://HOST:PORT or unix:/PATH (RFC 5424 copy of the log)"),
        "syslog_facility": Key("int"),
        "methods": Key("str-list", METHOD_NAMES),
        "require_message_authenticator": Key("bool"),
        "conversation_ttl": Key("number"),
        "max_conversations": Key("int"),
        "pap": Key("bool"),
        "gtc": Key("str", ("password", "code")),
        "store": Key("str"),
        "directory": Key("str", DIRECTORY_NAMES, table=DIRECTORY),
        "store_keys_file": Key("path"),
        "round_window": Key("number"),
        "accounting_ports": Key("int-list"),
        "tls": TLS,
        "clients": CLIENTS,
        "bridge": BRIDGE,
        "policy": POLICY,
        "radsec": RADSEC,
        "admin": ADMIN,
        "devices": Table(
            {
                "bind_clients": Key(
                    "str-list", hint="clients whose logins need a registered device round first"
                )
            }
        ),
        "teap": TEAP,
    }
)

_EXPECTED = {
    "str": "a string",
    "path": "a path (string)",
    "paths": "a path or a list of paths",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str-list": "a list of strings",
    "str-or-list": "a string or a list of strings",
    "int-list": "a list of integers",
    "hostports": 'a "HOST:PORT" string or a list of them',
}


def nearest(word: str, choices: Any) -> str:
    """' (did you mean X?)' for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _elsewhere(word: str, table: Table) -> str:
    """' (did you mean X in [t]?)' for a close key of a table nested in ``table``."""
    for name, spec in table.keys.items():
        if isinstance(spec, Table):
            close = difflib.get_close_matches(word, list(spec.keys), n=1, cutoff=0.6)
            if close:
                label = f"[[{name}]]" if spec.many else f"[{name}]"
                return f" (did you mean {close[0]!r} in {label}?)"
    return ""


def _type_name(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _fits(kind: str, value: object) -> bool:
    if kind in ("str", "path"):
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int-list":
        return isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    if kind == "str-list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    # paths, hostports: one string or a list of strings
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


def _check_key(name: str, key: Key, value: object, where: str) -> list[Finding]:
    if not _fits(key.kind, value):
        return [
            Finding(
                "error",
                where,
                f"{name} must be {_EXPECTED[key.kind]}, not {_type_name(value)} {value!r}",
            )
        ]
    if not key.choices:
        return []
    values = value if isinstance(value, list) else [value]
    return [
        Finding(
            "error",
            where,
            f"{name} = {v!r} is not one of {', '.join(key.choices)}{nearest(str(v), key.choices)}",
        )
        for v in values
        if v not in key.choices
    ]


def _check_table(table: Table, data: Mapping[str, Any], where: str) -> list[Finding]:
    found: list[Finding] = []
    for name, value in data.items():
        spec = table.keys.get(name)
        if spec is None:
            hint = nearest(name, table.keys) or _elsewhere(name, table)
            found.append(Finding("error", where, f"unknown key {name!r}{hint}"))
        elif isinstance(spec, Key) and spec.table is not None and isinstance(value, dict):
            found += [  # the message names the key, as for a plain value
                Finding(f.level, f.where, f"{name}: {f.message}")
                for f in _check_table(spec.table, value, f"[{name}]")
            ]
        elif isinstance(spec, Key):
            found += _check_key(name, spec, value, where)
        elif spec.many:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                found.append(
                    Finding("error", where, f"{name} must be an array of tables [[{name}]]")
                )
                continue
            for i, entry in enumerate(value, 1):
                label = f"[[{name}]] #{i}" + (
                    f" ({entry['name']})" if isinstance(entry.get("name"), str) else ""
                )
                found += _check_table(spec, entry, label)
        elif not isinstance(value, dict):
            found.append(Finding("error", where, f"{name} must be a table [{name}]"))
        else:
            found += _check_table(spec, value, f"[{name}]")
    for name, spec in table.keys.items():
        if isinstance(spec, Key) and spec.required and name not in data:
            found.append(Finding("error", where, f"no {name} given: {name} is {spec.hint}"))
    return found


def validate(data: Mapping[str, Any]) -> list[Finding]:
    """The schema mistakes of a parsed ``eapkit serve`` configuration, in file order."""
    return _check_table(SCHEMA, data, "")
