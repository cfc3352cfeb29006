"""What Active Directory's attributes and ``ntlm_auth``'s answers mean, and the
``[directory] kind = "ad"`` settings: no LDAP client needed to read them (the server's
configuration is parsed without the ``ldap`` extra).

- :func:`account_state`: userAccountControl ([MS-ADTS] §2.2.16), the constructed
  msDS-User-Account-Control-Computed, accountExpires and pwdLastSet ([MS-ADA1]) ->
  ``account_disabled``, ``account_locked``, ``account_expired``, ``password_must_change``;
- :func:`parse_ntlm_auth`: ``NT_KEY: <hex>`` (PasswordHashHash, RFC 2759 §8.4) or the
  NTSTATUS ([MS-ERREF] §2.3.1) Samba's ``ntlm_auth --request-nt-key`` prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eapkit.directory.groups import GroupPolicy, LdapSettings
from eapkit.errors import ConfigError
from eapkit.methods.mschapv2_check import NtResponseCheck

__all__ = [
    "AdSettings",
    "HelperRun",
    "account_state",
    "bind_refusal",
    "filetime_to_unix",
    "parse_ntlm_auth",
]

# [MS-ADTS] §2.2.16 userAccountControl flags
UF_ACCOUNTDISABLE = 0x0002
UF_LOCKOUT = 0x0010
UF_DONT_EXPIRE_PASSWD = 0x10000
UF_PASSWORD_EXPIRED = 0x800000
# [MS-ADA1] §2.20 accountExpires: 0 and 0x7FFFFFFFFFFFFFFF both mean "never"
NEVER_EXPIRES = frozenset({0, 0x7FFFFFFFFFFFFFFF})
FILETIME_UNIX_EPOCH = 116444736000000000  # 1970-01-01 in 100 ns intervals since 1601
# [MS-ERREF] §2.3.1 NTSTATUS values ntlm_auth prints as "(0x........)"
NTSTATUS_REASONS = {
    0xC000006D: "bad_password",  # STATUS_LOGON_FAILURE
    0xC000006A: "bad_password",  # STATUS_WRONG_PASSWORD
    0xC0000064: "bad_password",  # STATUS_NO_SUCH_USER: AD says 6D; the same to the log
    0xC0000072: "account_disabled",  # STATUS_ACCOUNT_DISABLED
    0xC0000193: "account_expired",  # STATUS_ACCOUNT_EXPIRED
    0xC0000234: "account_locked",  # STATUS_ACCOUNT_LOCKED_OUT
    0xC0000224: "password_must_change",  # STATUS_PASSWORD_MUST_CHANGE
    0xC0000071: "password_must_change",  # STATUS_PASSWORD_EXPIRED
    0xC000006E: "account_restricted",  # STATUS_ACCOUNT_RESTRICTION
    0xC000006F: "account_restricted",  # STATUS_INVALID_LOGON_HOURS
    0xC0000070: "account_restricted",  # STATUS_INVALID_WORKSTATION
}
_NT_KEY = re.compile(r"^NT_KEY: ([0-9A-Fa-f]{32})\s*$", re.MULTILINE)
_NTSTATUS = re.compile(r"\(0x([0-9A-Fa-f]{8})\)")

# run(argv, timeout) -> (exit status, stdout and stderr); raises OSError or TimeoutError
HelperRun = Callable[[Sequence[str], float], tuple[int, str]]


def filetime_to_unix(value: int) -> float:
    """A FILETIME ([MS-DTYP] §2.3.3: 100 ns intervals since 1601-01-01 UTC) as Unix time."""
    return (value - FILETIME_UNIX_EPOCH) / 10_000_000


def account_state(
    user_account_control: int,
    computed: int,
    account_expires: int,
    pwd_last_set: int,
    now: float,
) -> str | None:
    """Why AD would refuse this account whatever its password (None: it would not), in
    the order Windows checks them: disabled, locked out, expired, password to change.
    ``computed`` is msDS-User-Account-Control-Computed (LOCKOUT and PASSWORD_EXPIRED
    live there; a stored userAccountControl no longer carries them)."""
    flags = user_account_control | computed
    if flags & UF_ACCOUNTDISABLE:
        return "account_disabled"
    if flags & UF_LOCKOUT:
        return "account_locked"
    if account_expires not in NEVER_EXPIRES and filetime_to_unix(account_expires) <= now:
        return "account_expired"
    if flags & UF_PASSWORD_EXPIRED:
        return "password_must_change"
    if pwd_last_set == 0 and not user_account_control & UF_DONT_EXPIRE_PASSWD:
        return "password_must_change"
    return None


def parse_ntlm_auth(status: int, output: str) -> NtResponseCheck:
    """``ntlm_auth --request-nt-key``'s answer: exit 0 and ``NT_KEY: <32 hex>`` is a right
    response with PasswordHashHash; otherwise the NTSTATUS it names, as a reason.
    Anything else (no key, an unknown status, garbage) fails closed:
    ``directory_unavailable``."""
    if status == 0:
        keys = _NT_KEY.findall(output)
        if len(keys) == 1:
            return NtResponseCheck("ok", None, bytes.fromhex(keys[0]))
        return NtResponseCheck("directory_unavailable")
    found = _NTSTATUS.search(output)
    code = int(found.group(1), 16) if found else -1
    return NtResponseCheck(NTSTATUS_REASONS.get(code, "directory_unavailable"))


# The "data" code of AD's refused-bind diagnostic ("80090308: LdapErr: ..., comment:
# AcceptSecurityContext error, data 775, v1db1"): the Win32 error, in hex
BIND_DATA_REASONS = {
    "52e": "bad_password",  # ERROR_LOGON_FAILURE
    "525": "bad_password",  # ERROR_NO_SUCH_USER
    "530": "account_restricted",  # ERROR_INVALID_LOGON_HOURS
    "531": "account_restricted",  # ERROR_INVALID_WORKSTATION
    "532": "password_must_change",  # ERROR_PASSWORD_EXPIRED
    "533": "account_disabled",  # ERROR_ACCOUNT_DISABLED
    "701": "account_expired",  # ERROR_ACCOUNT_EXPIRED
    "773": "password_must_change",  # ERROR_PASSWORD_MUST_CHANGE
    "775": "account_locked",  # ERROR_ACCOUNT_LOCKED_OUT
}
# Characters no sAMAccountName may contain (AD schema, SAM-Account-Name attribute; Samba's
# samldb refuses them too): a name with one is an account that cannot exist, so a bad
# password for it is counted against nobody (AD's lockout counts per account)
SAM_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>')
_BIND_DATA = re.compile(r"\bdata ([0-9a-fA-F]{3,8})\b")


def bind_refusal(diagnostic: str) -> str:
    """Why AD refused a simple bind (RFC 4511 §4.1.9 diagnosticMessage, invalidCredentials):
    the account state its ``data`` code names, else ``bad_password``."""
    found = _BIND_DATA.search(diagnostic)
    return (
        BIND_DATA_REASONS.get(found.group(1).lower(), "bad_password") if found else ("bad_password")
    )


@dataclass(frozen=True, slots=True)
class AdSettings:
    """``[directory]`` with ``kind = "ad"``: the LDAP settings (servers, base, bind
    account, CA, timeouts, cache, ``[[policy.groups]]``) and AD's own."""

    ldap: LdapSettings
    domain: str | None = None  # the NetBIOS domain, for ntlm_auth (None: no MS-CHAPv2)
    ntlm_auth: tuple[str, ...] = ("ntlm_auth",)  # the helper and its fixed arguments
    ntlm_auth_timeout: float = 5.0
    nested_groups: bool = True
    # What ntlm_auth checks an unknown user's MS-CHAPv2 response against, so that it costs
    # what a known user's does: a name no account can have (see UNKNOWN_ACCOUNT)
    unknown_account: str = "eapkit?unknown"

    def __post_init__(self) -> None:
        if not self.ntlm_auth or not self.ntlm_auth_timeout > 0:
            raise ConfigError("[directory] ntlm_auth is a command; ntlm_auth_timeout > 0")
        if not set(self.unknown_account) & SAM_FORBIDDEN:
            raise ConfigError(
                "[directory] unknown_account must contain a character AD forbids in"
                f" sAMAccountName ({' '.join(sorted(SAM_FORBIDDEN))}), so no account has it"
            )

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], base: Path = Path(), groups: Sequence[GroupPolicy] = ()
    ) -> AdSettings:
        data = dict(data)
        data.setdefault("user_filter", "(sAMAccountName={user})")
        command = data.get("ntlm_auth", ["ntlm_auth"])
        command = [command] if isinstance(command, str) else list(command)
        return cls(
            ldap=LdapSettings.from_dict(data, base, groups),
            domain=str(data["domain"]) if data.get("domain") else None,
            ntlm_auth=tuple(str(c) for c in command),
            ntlm_auth_timeout=float(data.get("ntlm_auth_timeout", 5.0)),
            nested_groups=bool(data.get("nested_groups", True)),
            unknown_account=str(data.get("unknown_account", "eapkit?unknown")),
        )
