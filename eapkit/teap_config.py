"""The ``[teap]`` table of ``eapkit serve``: EAP-TEAP's phase 2 (RFC 9930 §3.6) and the
chaining policy of :mod:`eapkit.authz` (docs/teap.md)::

    [teap]
    identity = "machine_and_user"  # which identity types phase 2 asks for and requires,
                                   # as hostapd's eap_teap_id: "any" (0, the default),
                                   # "user" (1), "machine" (2), "user_or_machine" (3),
                                   # "machine_or_user" (4), "machine_and_user" (5)
    user_inner = "basic-password"  # "eap-mschapv2" (default) | "eap-tls" | "basic-password"
    machine_inner = "eap-tls"
    compat = "rfc9930"             # "rfc7170": hostapd/wpa_supplicant 2.10's behaviour
    machine_identity = ["san_dns", "cn"]  # machine certificate -> machine account ...
    machine_prefix = "host/"       # ... named host/<name> in the directory
    unbound_users = "allow"        # "deny": users no [[teap.bindings]] names are refused

    [[teap.rules]]                 # any one rule met lets the login pass
    machine = ["machine_certificate"]
    user = ["password", "otp_device"]  # password+code: user_inner = "basic-password"

    [[teap.bindings]]              # alice logs in only from her laptop
    users = ["alice"]
    machines = ["host/alice-laptop.corp.example"]

What each inner method can prove is :data:`INNER_FACTORS`; ``eapkit check`` refuses a
rule no configured inner method can meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eapkit.authz import (
    TEAP_IDENTITIES,
    CertificateIdentity,
    ChainingPolicy,
    ChainingRule,
    MachineBinding,
)
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor

__all__ = [
    "INNER_FACTORS",
    "TEAP_COMPAT",
    "TEAP_INNER",
    "TeapSettings",
    "teap_settings",
]

TEAP_INNER = ("eap-mschapv2", "eap-tls", "basic-password")
TEAP_COMPAT = ("rfc9930", "rfc7170")

# What an inner method can prove, per identity type (methods/base.py InnerProof).
# Basic-Password-Auth carries the password in clear inside the tunnel, so it can carry
# password+code (the users' second factors); MS-CHAPv2 proves the password alone (its
# check is against the NT hash of the password).
INNER_FACTORS: dict[tuple[str, str], frozenset[Factor]] = {
    ("machine", "eap-tls"): frozenset({Factor.MACHINE_CERTIFICATE}),
    ("user", "eap-tls"): frozenset({Factor.CERTIFICATE}),
    ("machine", "eap-mschapv2"): frozenset({Factor.PASSWORD}),
    ("user", "eap-mschapv2"): frozenset({Factor.PASSWORD}),
    ("machine", "basic-password"): frozenset({Factor.PASSWORD, Factor.OTP_DEVICE}),
    ("user", "basic-password"): frozenset({Factor.PASSWORD, Factor.OTP_DEVICE}),
}


@dataclass(frozen=True, slots=True)
class TeapSettings:
    """``[teap]`` parsed: what the TEAP method is built with (``ServerContext.teap_*``)
    and the authorization step's :class:`~eapkit.authz.ChainingPolicy`."""

    identity_name: str = ""  # as written; "" is "any", eap_teap_id 0
    user_inner: str = "eap-mschapv2"
    machine_inner: str = "eap-tls"
    compat: str = "rfc9930"
    require_emsk_binding: bool = False
    policy: ChainingPolicy = field(default_factory=ChainingPolicy)
    given: bool = False  # a [teap] table was there

    @property
    def identity(self) -> int:
        return self.policy.identity


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = str(table.get(key, default))
    if value not in choices:
        raise ConfigError(f"[teap] {key} is one of {', '.join(choices)}, not {value!r}")
    return value


def _factors(entry: dict[str, Any], key: str) -> frozenset[Factor]:
    values = entry.get(key, [])
    try:
        return frozenset(Factor(str(v)) for v in values)
    except ValueError:
        raise ConfigError(
            f"[[teap.rules]] {key}: each of {', '.join(f.value for f in Factor)}"
        ) from None


def _strings(entry: dict[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    values = [value] if isinstance(value, str) else list(value)
    if not values:
        raise ConfigError(f"[[teap.bindings]] needs {key}: a list of names or shell patterns")
    return tuple(str(v) for v in values)


def teap_settings(table: dict[str, Any]) -> TeapSettings:
    """The ``[teap]`` table (already checked against the schema)."""
    identity_name = str(table.get("identity", ""))
    if identity_name and identity_name not in TEAP_IDENTITIES:
        raise ConfigError(
            f"[teap] identity is one of {', '.join(TEAP_IDENTITIES)}, not {identity_name!r}"
        )
    sources = table.get("machine_identity", ["san_dns", "cn"])
    policy = ChainingPolicy(
        identity=TEAP_IDENTITIES.get(identity_name, 0),
        rules=tuple(
            ChainingRule(_factors(dict(r), "machine"), _factors(dict(r), "user"))
            for r in table.get("rules", [])
        ),
        bindings=tuple(
            MachineBinding(_strings(dict(b), "users"), _strings(dict(b), "machines"))
            for b in table.get("bindings", [])
        ),
        unbound_users=_choice(table, "unbound_users", ("allow", "deny"), "allow"),
        machine_identity=CertificateIdentity(
            tuple(str(s) for s in ([sources] if isinstance(sources, str) else sources))
        ),
        machine_prefix=str(table.get("machine_prefix", "host/")),
    )
    return TeapSettings(
        identity_name=identity_name,
        user_inner=_choice(table, "user_inner", TEAP_INNER, "eap-mschapv2"),
        machine_inner=_choice(table, "machine_inner", TEAP_INNER, "eap-tls"),
        compat=_choice(table, "compat", TEAP_COMPAT, "rfc9930"),
        require_emsk_binding=bool(table.get("require_emsk_binding", False)),
        policy=policy,
        given=True,
    )
