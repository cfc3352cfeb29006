"""The Active Directory directory without a DC: account state from the attributes,
``ntlm_auth``'s answers, the delegated MS-CHAPv2 check end to end (keys included), the
authorization step's reasons, the helper runner's timeout, and what ``eapkit directory
test`` shows (the DC's searches answered in-process).  The DC itself is in
tests/interop/test_ad_serve.py."""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.authz import Authorizer
from eapkit.cli import main
from eapkit.crypto.mschap import (
    challenge_hash,
    challenge_response,
    hash_nt_password_hash,
    nt_password_hash,
)
from eapkit.directory.ad import MAX_GROUPS, AdDirectory, _in_chain, holds_no_accounts
from eapkit.directory.ad_rules import (
    FILETIME_UNIX_EPOCH,
    UF_ACCOUNTDISABLE,
    UF_DONT_EXPIRE_PASSWD,
    UF_LOCKOUT,
    UF_PASSWORD_EXPIRED,
    AdSettings,
    account_state,
    bind_refusal,
    filetime_to_unix,
    parse_ntlm_auth,
)
from eapkit.directory.base import DirectoryUnavailable, User
from eapkit.directory.groups import GroupPolicy, LdapSettings
from eapkit.directory.ldap import BindRefused
from eapkit.errors import ConfigError
from eapkit.loopback import converse
from eapkit.methods.base import Factor
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.mschapv2_check import DelegatedCheck, NtResponseCheck, check_nt_response
from eapkit.policy import UserPolicy
from eapkit.radius.ntlm_auth import run_helper
from eapkit.rand import DeterministicRandom
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.testing import StaticNtHashes

NOW = 1_800_000_000.0
NEVER = 0x7FFFFFFFFFFFFFFF
SET = 134_000_000_000_000_000  # some pwdLastSet in the past
NORMAL = 0x200  # NORMAL_ACCOUNT


def _filetime(unix: float) -> int:
    return int(unix * 10_000_000) + FILETIME_UNIX_EPOCH


# -- account state ([MS-ADTS] §2.2.16) ------------------------------------------------------


def test_filetime_epoch() -> None:
    assert filetime_to_unix(FILETIME_UNIX_EPOCH) == 0
    assert filetime_to_unix(_filetime(NOW)) == pytest.approx(NOW)


@pytest.mark.parametrize(
    ("uac", "computed", "expires", "pwd_last_set", "reason"),
    [
        (NORMAL, 0, NEVER, SET, None),
        (NORMAL, 0, 0, SET, None),  # 0 is "never" too
        (NORMAL | UF_ACCOUNTDISABLE, 0, NEVER, SET, "account_disabled"),
        (NORMAL, UF_LOCKOUT, NEVER, SET, "account_locked"),  # only the computed one says so
        (NORMAL, 0, _filetime(NOW - 1), SET, "account_expired"),
        (NORMAL, 0, _filetime(NOW + 3600), SET, None),
        (NORMAL, 0, NEVER, 0, "password_must_change"),
        (NORMAL | UF_DONT_EXPIRE_PASSWD, 0, NEVER, 0, None),
        (NORMAL, UF_PASSWORD_EXPIRED, NEVER, SET, "password_must_change"),
        # several at once: Windows's order, disabled first
        (NORMAL | UF_ACCOUNTDISABLE, UF_LOCKOUT, _filetime(NOW - 1), 0, "account_disabled"),
        (NORMAL, UF_LOCKOUT, _filetime(NOW - 1), 0, "account_locked"),
        (NORMAL, 0, _filetime(NOW - 1), 0, "account_expired"),
    ],
)
def test_account_state(
    uac: int, computed: int, expires: int, pwd_last_set: int, reason: str | None
) -> None:
    assert account_state(uac, computed, expires, pwd_last_set, NOW) == reason


@given(
    uac=st.integers(0, 2**32 - 1),
    computed=st.integers(0, 2**32 - 1),
    expires=st.integers(0, 2**63 - 1),
    pwd_last_set=st.integers(0, 2**63 - 1),
)
def test_account_state_properties(uac: int, computed: int, expires: int, pwd_last_set: int) -> None:
    state = account_state(uac, computed, expires, pwd_last_set, NOW)
    assert state in (
        None,
        "account_disabled",
        "account_locked",
        "account_expired",
        "password_must_change",
    )
    if (uac | computed) & UF_ACCOUNTDISABLE:
        assert state == "account_disabled"
    clean = (uac | computed) & (UF_ACCOUNTDISABLE | UF_LOCKOUT | UF_PASSWORD_EXPIRED) == 0
    live = expires in (0, NEVER) or filetime_to_unix(expires) > NOW
    if clean and live and pwd_last_set != 0:
        assert state is None


# -- ntlm_auth's answers -----------------------------------------------------------------

KEY = "DAF6EEE86B55A45442332C8B9F802F9F"


@pytest.mark.parametrize(
    ("status", "output", "reason"),
    [
        (0, f"NT_KEY: {KEY}\n", "ok"),
        (1, "The attempted logon is invalid. ... (0xc000006d)\n", "bad_password"),
        (1, "The referenced account is currently disabled ... (0xc0000072)\n", "account_disabled"),
        (1, "The user account has expired. (0xc0000193)\n", "account_expired"),
        (1, "The user password must be changed ... (0xc0000224)\n", "password_must_change"),
        (1, "The referenced account is currently locked out ... (0xc0000234)\n", "account_locked"),
        (1, "Reading winbind reply failed! (0xc0000001)\n", "directory_unavailable"),
        (1, "", "directory_unavailable"),
        (0, "", "directory_unavailable"),  # exit 0 without a key: fail closed
        (0, f"NT_KEY: {KEY}\nNT_KEY: {KEY}\n", "directory_unavailable"),  # two: not ours
        (0, "NT_KEY: 1234\n", "directory_unavailable"),
    ],
)
def test_parse_ntlm_auth(status: int, output: str, reason: str) -> None:
    result = parse_ntlm_auth(status, output)
    assert result.reason == reason
    assert result.ok == (reason == "ok")
    if result.ok:
        assert result.nt_hash_hash == bytes.fromhex(KEY) and result.nt_hash is None


@given(status=st.integers(-255, 255), output=st.text())
def test_parse_ntlm_auth_never_raises(status: int, output: str) -> None:
    result = parse_ntlm_auth(status, output)
    assert result.ok <= (status == 0 and "NT_KEY: " in output)
    assert result.ok == (result.nt_hash_hash is not None)


@pytest.mark.parametrize(
    ("diagnostic", "reason"),
    [
        (
            "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e",
            "bad_password",
        ),
        (
            "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 533",
            "account_disabled",
        ),
        ("... data 701, v1db1", "account_expired"),
        ("... data 773, v1db1", "password_must_change"),
        ("... data 532, v1db1", "password_must_change"),
        ("... data 775, v1db1", "account_locked"),
        ("... data 999, v1db1", "bad_password"),
        ("", "bad_password"),
        ("metadata 533", "bad_password"),
    ],
)
def test_bind_refusal(diagnostic: str, reason: str) -> None:
    assert bind_refusal(diagnostic) == reason


@given(st.text())
def test_bind_refusal_never_raises(diagnostic: str) -> None:
    assert bind_refusal(diagnostic) in {
        "bad_password",
        "account_restricted",
        "password_must_change",
        "account_disabled",
        "account_expired",
        "account_locked",
    }


# -- the delegated check through the EAP-MSCHAPv2 state machine ---------------------------


class FakeDc:
    """What ntlm_auth does, in-process: right response -> NT_KEY, else 0xc000006d."""

    def __init__(self, passwords: dict[str, str], status: str | None = None) -> None:
        self.passwords = passwords
        self.status = status
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(list(argv))
        if self.status is not None:
            return 1, f"refused ({self.status})"
        args = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        nt_hash = nt_password_hash(self.passwords.get(args["username"], "\x00unknown"))
        right = challenge_response(bytes.fromhex(args["challenge"]), nt_hash)
        if right.hex() == args["nt-response"]:
            return 0, f"NT_KEY: {hash_nt_password_hash(nt_hash).hex().upper()}\n"
        return 1, "The attempted logon is invalid. (0xc000006d)"


def _lab(**changes: Any) -> LdapSettings:
    """The LDAP half of a test domain ``DC=lab`` read by the bind account ``CN=r``."""
    return LdapSettings(
        servers=("ldaps://dc.invalid",),
        base="DC=lab",
        bind_dn="CN=r",
        bind_password="reader-pw",
        **changes,
    )


def _directory(run: FakeDc | None, domain: str | None = "LAB") -> AdDirectory:
    ldap = _lab()
    return AdDirectory(AdSettings(ldap, domain=domain, ntlm_auth=("ntlm_auth", "-x")), None, run)


def _eap(lookup: object, password: str) -> tuple[bool, bool, bytes, bytes]:
    auth = AuthenticatorSession(
        [mschapv2_authenticator(lookup)],  # type: ignore[arg-type]
        random=DeterministicRandom(1),
    )
    peer = PeerSession([mschapv2_peer(password)], "alice", random=DeterministicRandom(2))
    conv = converse(auth, peer)
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    return (
        a.success,
        p.success,
        a.keys.msk if a.keys else b"",
        p.keys.msk if p.keys else b"",
    )


def test_delegated_eap_mschapv2_gives_the_keys_a_local_hash_gives() -> None:
    dc = FakeDc({"alice": "Alice-pass-12"})
    directory = _directory(dc)
    record = User("alice")
    ok_a, ok_p, msk_a, msk_p = _eap(lambda user: directory.delegated_check(record), "Alice-pass-12")
    assert ok_a and ok_p and msk_a == msk_p and len(msk_a) == 64
    local = StaticNtHashes.from_passwords({"alice": "Alice-pass-12"})
    assert _eap(local, "Alice-pass-12")[2] == msk_a  # same MSK as the NT-hash path
    argv = dc.calls[0]
    assert argv[:4] == ["ntlm_auth", "-x", "--request-nt-key", "--allow-mschapv2"]
    assert "--username=alice" in argv and "--domain=LAB" in argv
    assert not _eap(lambda user: directory.delegated_check(record), "wrong")[0]


@pytest.mark.parametrize(
    ("status", "reason"),
    [("0xc0000072", "account_disabled"), ("0xc0000193", "account_expired")],
)
def test_delegated_refusal_reasons(status: str, reason: str) -> None:
    directory = _directory(FakeDc({}, status))
    check = directory.delegated_check(User("bob"))
    result = check_nt_response(
        lambda user: check, "bob", b"\x01" * 16, b"\x02" * 16, b"bob", b"\x03" * 24
    )
    assert result.reason == reason and not result.ok


def test_helper_failures_fail_closed() -> None:
    def timeout(argv: Sequence[str], seconds: float) -> tuple[int, str]:
        raise TimeoutError

    def missing(argv: Sequence[str], seconds: float) -> tuple[int, str]:
        raise FileNotFoundError("ntlm_auth")

    args = (b"\x01" * 16, b"\x02" * 16, b"alice", b"\x03" * 24)
    for run in (timeout, missing):
        directory = _directory(run)  # type: ignore[arg-type]
        assert directory.delegated_check(User("alice")).verify(*args).reason == (
            "directory_unavailable"
        )
    unconfigured = _directory(FakeDc({}), domain=None)
    assert unconfigured.delegated_check(User("alice")).verify(*args).reason == (
        "mschapv2_not_configured"
    )


def test_empty_password_refused_before_any_bind() -> None:
    # the DC's name does not resolve: a bind would be directory_unavailable
    assert _directory(None).check_password("alice", "", NOW).reason == "empty_password"
    assert _directory(None).verify_password(User("alice"), "alice", "", NOW).reason == (
        "empty_password"
    )
    refused = User("bob", state="account_disabled")
    assert _directory(None).verify_password(refused, "bob", "pw", NOW).reason == (
        "account_disabled"
    )


class _Binds:
    """Stands for the LDAP connection step: records the DN of each bind and refuses it."""

    def __init__(self) -> None:
        self.dns: list[str | None] = []

    def __call__(self, dn: str | None, password: str, controls: object = None) -> object:
        self.dns.append(dn)
        raise BindRefused(None)


def test_unknown_and_refused_accounts_bind_the_unknown_user_dn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Equal cost: an unknown user's password and a refused account's are bound (against
    a DN that does not exist, never the account's own), as a wrong password is; before,
    neither bound at all, so their answer came a bind sooner."""
    directory = _directory(None)
    binds = _Binds()
    monkeypatch.setattr(directory._ldap, "_connect", binds)
    dummy = directory.settings.ldap.dummy_dn
    assert directory.verify_password(None, "ghost", "pw", NOW).reason == "unknown_user"
    refused = User("bob", state="account_disabled")
    assert directory.verify_password(refused, "bob", "pw", NOW).reason == "account_disabled"
    assert binds.dns == [dummy, dummy]
    assert directory.verify_password(None, "ghost", "", NOW).reason == "empty_password"
    assert len(binds.dns) == 2  # an empty password still never binds


def test_mschapv2_stand_in_runs_ntlm_auth_for_an_account_that_cannot_exist() -> None:
    """An unknown user's MS-CHAPv2 response goes to ntlm_auth (the cost of a known
    user's) for ``unknown_account``, whose '?' AD forbids in sAMAccountName; the answer is
    unknown_user even if the helper said yes."""
    dc = FakeDc({"eapkit?unknown": "pw"})  # a DC that (impossibly) had the account
    directory = _directory(dc)
    args = (b"\x01" * 16, b"\x02" * 16, b"ghost", b"\x03" * 24)
    assert directory.nt_stand_in("ghost").verify(*args).reason == "unknown_user"
    assert "--username=eapkit?unknown" in dc.calls[0]
    assert "--username=ghost" not in dc.calls[0]
    down = _directory(FakeDc({}, "0xdeadbeef"))  # an answer that is no NTSTATUS we know
    assert down.nt_stand_in("ghost").verify(*args).reason == "directory_unavailable"


@pytest.mark.parametrize("name", ["eapkit-unknown", "", "someone"])
def test_unknown_account_must_be_a_name_ad_forbids(name: str) -> None:
    ldap = LdapSettings(servers=("ldaps://dc.invalid",), base="DC=lab")
    with pytest.raises(ConfigError, match="unknown_account"):
        AdSettings(ldap, unknown_account=name)
    assert (
        AdSettings.from_dict(
            {"servers": ["ldaps://dc.invalid"], "base": "DC=lab", "unknown_account": "x|y"}
        ).unknown_account
        == "x|y"
    )


def test_delegated_check_passes_challenge_hash() -> None:
    dc = FakeDc({}, "0xc000006d")
    peer, auth = b"\x02" * 16, b"\x01" * 16
    _directory(dc).delegated_check(User("alice")).verify(auth, peer, b"LAB\\alice", b"\x03" * 24)
    expected = challenge_hash(peer, auth, b"alice")  # RFC 2759 §8.2: no domain
    assert f"--challenge={expected.hex()}" in dc.calls[0]


# -- the authorization step reads the directory's account state ---------------------------


class _OneUser:
    def __init__(self, record: User) -> None:
        self.record = record

    def get(self, name: str) -> User | None:
        return self.record if name == self.record.name else None


@pytest.mark.parametrize("state", ["account_expired", "password_must_change"])
def test_authz_refuses_with_the_directory_state(state: str) -> None:
    authz = Authorizer(_OneUser(User("carol", state=state)))  # type: ignore[arg-type]
    decision = authz.authorize("carol", {Factor.CERTIFICATE}, None, NOW)
    assert not decision.ok and decision.reason == state
    guarded = authz.nt_hash(lambda user: DelegatedCheck(lambda *a: NtResponseCheck("ok")))
    assert guarded("carol") is None  # never sent to the DC
    assert authz.refused("carol", "unknown_user", NOW) == state


class _OneAdUser(_OneUser, AdDirectory):
    """One record, and AD's MS-CHAPv2 stand-in (ntlm_auth through ``run``)."""

    def __init__(self, record: User, run: FakeDc) -> None:
        _OneUser.__init__(self, record)
        AdDirectory.__init__(self, _directory(run).settings, None, run)

    def get(self, name: str) -> User | None:
        return _OneUser.get(self, name)


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("ghost", User("carol")),  # unknown
        ("carol", User("carol", state="account_disabled")),  # refused
        ("carol", User("carol", second_factor="totp")),  # owes a second factor
    ],
)
def test_authz_withheld_ad_hash_costs_an_ntlm_auth_run(name: str, record: User) -> None:
    """Equal cost for MS-CHAPv2: a response that must fail is checked by ntlm_auth for
    the account that cannot exist (before: the local stand-in hash, no helper run, so
    an unknown name answered sooner than a known one)."""
    dc = FakeDc({"carol": "Carol-pass-12"})
    authz = Authorizer(_OneAdUser(record, dc))
    guarded = authz.nt_hash(lambda user: DelegatedCheck(lambda *a: NtResponseCheck("ok")))
    check = guarded(name)
    assert isinstance(check, DelegatedCheck)
    args = (b"\x01" * 16, b"\x02" * 16, name.encode(), b"\x03" * 24)
    assert check.verify(*args).reason == "unknown_user"
    assert [a for a in dc.calls[0] if a.startswith("--username=")] == ["--username=eapkit?unknown"]
    assert authz.refused(name, "unknown_user", NOW) == (
        "unknown_user" if name == "ghost" else record.state or "second_factor_required"
    )
    plain = Authorizer(_OneUser(User("carol")))  # type: ignore[arg-type]
    assert plain.authorize("carol", {Factor.CERTIFICATE}, None, NOW).ok


# -- the helper runner (eapkit.radius.ntlm_auth) ------------------------------------------


def test_run_helper_returns_status_and_output() -> None:
    status, output = run_helper([sys.executable, "-c", "print('NT_KEY: AB'); exit(3)"], 10)
    assert status == 3 and "NT_KEY: AB" in output


def test_run_helper_times_out() -> None:
    with pytest.raises(TimeoutError):
        run_helper([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    with pytest.raises(OSError):
        run_helper(["/nonexistent/ntlm_auth"], 1)


# -- what the server would see (`eapkit directory test`) ----------------------------------

ALICE_GUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ALICE_DN = "CN=alice,CN=Users,DC=lab"
VPN_STAFF, VPN_ADMINS = "CN=vpn-staff,CN=Users,DC=lab", "CN=vpn-admins,CN=Users,DC=lab"
# objectGUID as AD sends it ([MS-DTYP] §2.3.4: the first three fields little-endian)
_ENTRIES = {
    "alice": (ALICE_DN, uuid.UUID(ALICE_GUID).bytes_le, NORMAL, [VPN_STAFF]),
    "bob": ("CN=bob,CN=Users,DC=lab", b"\x0b" * 16, NORMAL | UF_ACCOUNTDISABLE, []),
}
# the nested-group search's answer: alice is in vpn-admins through vpn-staff
_IN_CHAIN = {ALICE_DN: [VPN_STAFF, VPN_ADMINS]}


def _fake_search(
    self: AdDirectory, base: str, query: str, attributes: list[str], limit: int
) -> list[dict[str, Any]]:
    """What a DC answers eapkit's two searches (the account, its nested groups) with."""
    if query.startswith("(sAMAccountName="):
        found = _ENTRIES.get(query.removeprefix("(sAMAccountName=").removesuffix(")"))
        if found is None:
            return []
        dn, guid, uac, member_of = found
        raw = {
            "objectGUID": [guid],
            "sAMAccountName": [dn.split(",")[0][3:].encode()],
            "memberOf": [g.encode() for g in member_of],
            "userAccountControl": [str(uac).encode()],
            "pwdLastSet": [str(SET).encode()],
            "accountExpires": [b"0"],
        }
        return [{"type": "searchResEntry", "dn": dn, "raw_attributes": raw}]
    dn = query.removeprefix("(member:1.2.840.113556.1.4.1941:=").removesuffix(")")
    return [{"type": "searchResEntry", "dn": g} for g in _IN_CHAIN.get(dn, [])]


def test_explain_shows_the_entry_nested_groups_state_and_matched_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AdDirectory, "_search", _fake_search)
    admins = GroupPolicy("vpn-admins", "totp", UserPolicy(session_timeout=3600), "admins")
    ldap = _lab(user_filter="(sAMAccountName={user})", groups=(admins,))
    directory = AdDirectory(AdSettings(ldap), None, None, clock=lambda: NOW)
    alice = directory.explain("alice")
    assert alice is not None
    assert (alice.dn, alice.key, alice.server) == (ALICE_DN, ALICE_GUID, "ldaps://dc.invalid")
    assert alice.member_of == (VPN_STAFF,) and alice.searched == (VPN_STAFF, VPN_ADMINS)
    assert alice.state is None and alice.unseen == ""  # AD's entry tells every state
    assert alice.matched == "admins"  # through the nested group, as the decision log says
    assert alice.user.second_factor == "totp" and alice.user.policy.session_timeout == 3600
    bob = directory.explain("bob")
    assert bob is not None and bob.state == "account_disabled" and bob.matched is None
    assert bob.member_of == bob.searched == ()
    assert directory.explain("ghost") is None


def test_directory_test_command_against_ad(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eapkit directory test`` shows an AD account as it does an LDAP entry (before, it
    printed the local-record rows: no DN, no groups, ``none matched``)."""
    monkeypatch.setattr(AdDirectory, "_search", _fake_search)
    (tmp_path / "bind.pw").write_text("reader-pw\n")
    toml = tmp_path / "serve.toml"
    toml.write_text(
        f"""
db = "{tmp_path / "eapkit.db"}"

[directory]
kind = "ad"
servers = ["ldaps://dc.invalid"]
base = "DC=lab"
bind_dn = "CN=r"
bind_password_file = "bind.pw"

[[policy.groups]]
group = "vpn-admins"
name = "admins"
second_factor = "totp"
session_timeout = 3600
"""
    )
    assert main(["directory", "test", "alice", "--config", str(toml)]) == 0
    rows = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    fields = {k: v.strip() for k, v in rows.items()}
    assert fields["dn"] == ALICE_DN and fields["stable id"] == ALICE_GUID
    assert fields["groups (memberOf)"] == VPN_STAFF
    assert fields["groups (search)"] == f"{VPN_STAFF}, {VPN_ADMINS}"
    assert fields["account state"] == "usable"
    assert fields["policy"] == "admins ([[policy.groups]])"
    assert fields["second factor"] == "totp"
    assert fields["reply attributes"] == "session_timeout=3600"
    assert main(["directory", "test", "bob", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "account_disabled" in out and "none matched" in out
    assert main(["directory", "test", "ghost", "--config", str(toml)]) == 1
    assert "no user ghost" in capsys.readouterr().err


# -- incomplete answers fail closed, as LDAP's do (RFC 4511 §4.5.3, §4.1.9) ---------------

CHILD_REF = "ldap://child.lab/DC=child,DC=lab"  # a child domain: may hold another alice
PARTITION_REFS = [
    "ldap://DomainDnsZones.lab/DC=DomainDnsZones,DC=lab",
    "ldap://ForestDnsZones.lab/DC=ForestDnsZones,DC=lab",
    "ldap://lab/CN=Configuration,DC=lab",
]
_TIME_LIMIT, _SIZE_LIMIT = 3, 4


class _FakeDcConnection:
    """An ldap3 connection to a DC, in-process: answers the account search with
    ``_fake_search``'s entries plus ``refs`` (continuation references), and the
    nested-group search with ``groups`` entries; ``code`` is the searchResDone's
    resultCode of the search whose filter contains ``code_for``."""

    def __init__(
        self, refs: Sequence[str] = (), groups: int = 2, code: int = 0, code_for: str = ""
    ) -> None:
        self.refs, self.groups, self.code, self.code_for = list(refs), groups, code, code_for
        self.result: dict[str, Any] = {}
        self.response: list[dict[str, Any]] = []
        self.searches: list[tuple[str, int]] = []

    def search(
        self,
        base: str,
        query: str,
        scope: str,
        attributes: list[str],
        size_limit: int,
        time_limit: int,
    ) -> None:
        self.searches.append((query, size_limit))
        if query.startswith("(sAMAccountName="):
            entries = _fake_search(None, base, query, attributes, size_limit)  # type: ignore[arg-type]
        else:
            entries = [
                {"type": "searchResEntry", "dn": f"CN=g{i},CN=Users,DC=lab"}
                for i in range(self.groups)
            ]
        if size_limit and len(entries) > size_limit:
            entries, code = entries[:size_limit], _SIZE_LIMIT
        else:
            code = self.code if self.code_for and self.code_for in query else 0
        refs = [{"type": "searchResRef", "uri": [uri]} for uri in self.refs]
        self.response = entries + refs
        self.result = {"result": code}


def _dc_directory(
    monkeypatch: pytest.MonkeyPatch, conn: _FakeDcConnection, **ldap: Any
) -> AdDirectory:
    settings = _lab(user_filter="(sAMAccountName={user})", cache_ttl=0.0, **ldap)
    directory = AdDirectory(AdSettings(settings), None, None, clock=lambda: NOW)

    @contextlib.contextmanager
    def connection() -> Iterator[_FakeDcConnection]:
        yield conn

    monkeypatch.setattr(directory._ldap, "_search_connection", connection)
    return directory


def test_ad_partition_references_pass_another_fails_closed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A subtree search at the domain's root comes with references to the DNS and
    configuration partitions (no accounts there): the answer stands.  A reference to a
    child domain (which may hold another alice, or a group) made AD take what it had;
    now it is directory_unavailable, as for LDAP, unless referrals = "ignore"."""
    found = _dc_directory(monkeypatch, _FakeDcConnection(PARTITION_REFS)).explain("alice")
    assert found is not None and found.dn == ALICE_DN
    refused = _dc_directory(monkeypatch, _FakeDcConnection([*PARTITION_REFS, CHILD_REF]))
    with caplog.at_level(logging.WARNING, logger="eapkit.directory.ldap"):
        assert refused.check_password("alice", "pw", NOW).reason == "directory_unavailable"
        with pytest.raises(DirectoryUnavailable):
            refused.explain("alice")
    assert "1 references" in caplog.text  # the partitions are not counted
    ignoring = _dc_directory(monkeypatch, _FakeDcConnection([CHILD_REF]), referrals="ignore")
    assert ignoring.get("alice") is not None


@pytest.mark.parametrize("code_for", ["(sAMAccountName=", "(member:"])
def test_ad_time_limit_fails_closed(monkeypatch: pytest.MonkeyPatch, code_for: str) -> None:
    conn = _FakeDcConnection(code=_TIME_LIMIT, code_for=code_for)
    with pytest.raises(DirectoryUnavailable):
        _dc_directory(monkeypatch, conn).get("alice")
    assert _dc_directory(monkeypatch, _FakeDcConnection()).get("alice") is not None


def test_ad_nested_groups_beyond_the_cap_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """More than MAX_GROUPS groups: the DC stopped at the size limit and AD took the
    first 1,000, perhaps without the group whose policy asks for a security key."""
    conn = _FakeDcConnection(groups=MAX_GROUPS)
    alice = _dc_directory(monkeypatch, conn).explain("alice")
    assert alice is not None and len(alice.searched) == MAX_GROUPS
    assert conn.searches[-1] == (_in_chain(ALICE_DN), MAX_GROUPS + 1)
    with pytest.raises(DirectoryUnavailable):
        _dc_directory(monkeypatch, _FakeDcConnection(groups=MAX_GROUPS + 1)).get("alice")
    # the DC's own size limit (MaxPageSize) cut the group search short of what was asked
    capped = _FakeDcConnection(code=_SIZE_LIMIT, code_for="(member:")
    with pytest.raises(DirectoryUnavailable):
        _dc_directory(monkeypatch, capped).get("alice")


def test_ad_two_entries_for_a_name_is_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    """The account search asks for 2 entries: sizeLimitExceeded there is the expected
    sign of an ambiguous name (unknown), not an incomplete answer."""
    conn = _FakeDcConnection()
    directory = _dc_directory(monkeypatch, conn)

    def twice(base: str, query: str, attrs: list[str], limit: int) -> list[dict[str, Any]]:
        entries = _fake_search(directory, base, query, attrs, limit)
        return entries * 2 if query.startswith("(sAMAccountName=") else entries

    monkeypatch.setattr(directory, "_search", twice)
    assert directory.get("alice") is None


@pytest.mark.parametrize(
    ("uri", "base", "passes"),
    [
        ("ldap://DomainDnsZones.lab/DC=DomainDnsZones,DC=lab", "DC=lab", True),
        ("ldap://x/dc=forestdnszones,dc=LAB", "DC=lab", True),
        ("ldap://lab/CN=Configuration,DC=lab", "dc=lab", True),
        ("ldap://lab/CN%3DConfiguration%2CDC%3Dlab", "DC=lab", True),  # RFC 4516 escapes
        ("ldap://lab/CN=Configuration,DC=lab??sub", "DC=lab", True),
        ("ldap://child.lab/DC=child,DC=lab", "DC=lab", False),
        ("ldap://lab/CN=Configuration,DC=other", "DC=lab", False),  # not below base
        ("ldap://lab/DC=DomainDnsZones,DC=x,DC=lab", "DC=lab", False),  # not directly
        ("ldap://lab/CN=Users,DC=lab", "DC=lab", False),
        ("ldap://lab", "DC=lab", False),
        ("", "DC=lab", False),
        ("ldap://lab/CN=Configuration", "", False),
    ],
)
def test_holds_no_accounts(uri: str, base: str, passes: bool) -> None:
    assert holds_no_accounts(uri, base) is passes


@given(uri=st.text(), base=st.text())
def test_holds_no_accounts_reads_any_reference(uri: str, base: str) -> None:
    """A continuation reference is whatever a server sends: any text gives an answer,
    never an exception, and without ``/`` after a scheme it never passes."""
    passes = holds_no_accounts(uri, base)
    assert isinstance(passes, bool)
    if "://" not in uri or "/" not in uri.split("://", 1)[1]:
        assert not passes
