"""The LDAP directory against a real slapd (tests/interop/ldap_server.py): users found
by the bind account, passwords checked by binding, groups -> [[policy.groups]],
failover, fail closed, certificate verification, and RFC 4515 escaping."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.authz import Authorizer
from eapkit.directory import DirectoryUnavailable
from eapkit.directory.groups import GroupPolicy, LdapSettings, escape_filter_value, filter_for
from eapkit.directory.ldap import LdapDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor
from eapkit.policy import UserPolicy
from eapkit.store.memory import MemoryStore
from tests.conftest import free_tcp_port
from tests.interop.ldap_server import (
    GROUPS,
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    running_slapd,
    write_pki,
)

pytestmark = pytest.mark.interop

POLICIES = (
    GroupPolicy("vpn-admins", "security_key", UserPolicy(session_timeout=3600, klass=b"admins")),
    GroupPolicy(
        f"cn=contractors,{GROUPS}", None, UserPolicy(28800, framed_pool="pool-b"), "contractors-8h"
    ),
)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd"))) as server:
        yield server


def settings(slapd: Slapd, servers: tuple[str, ...] | None = None, **kw: object) -> LdapSettings:
    base: dict[str, object] = {
        "servers": servers or (slapd.ldaps_url,),
        "base": PEOPLE,
        "bind_dn": READER,
        "bind_password": READER_PASSWORD,
        "ca": slapd.ca,
        "timeout": 2.0,
        "groups": POLICIES,
    }
    base.update(kw)
    return LdapSettings(**base)  # type: ignore[arg-type]


def down_url() -> str:
    return f"ldaps://localhost:{free_tcp_port()}"


def test_user_found_with_groups_and_policy(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd), MemoryStore())
    amy = d.get("amy")
    assert amy is not None and amy.second_factor == "webauthn"
    assert amy.policy == UserPolicy(session_timeout=3600, klass=b"admins")
    carl = d.get("carl")
    assert carl is not None and carl.second_factor == "none"
    assert carl.policy.framed_pool == "pool-b" and carl.policy.session_timeout == 28800
    dave = d.get("dave")
    assert dave is not None and dave.policy.empty
    # the entry that matched, as the decision log names it: its group, or its name
    assert (amy.policy_name, carl.policy_name, dave.policy_name) == (
        "vpn-admins",
        "contractors-8h",
        None,
    )
    assert d.get("nobody") is None
    assert any("vpn-admins" in g for g in d.groups("amy", time.monotonic()))
    assert d.nt_hash("amy") is None  # no NT hash in LDAP: MS-CHAPv2 fails cleanly


def test_authorization_names_the_matched_policy(slapd: Slapd) -> None:
    """The authorization step names the [[policy.groups]] entry from the record it read,
    on an Accept and on its own refusals; a user in no listed group gets none."""
    authz = Authorizer(LdapDirectory(settings(slapd), MemoryStore()))
    carl = authz.authorize("carl", {Factor.PASSWORD}, None, 0.0)
    assert carl.ok and carl.policy_name == "contractors-8h"
    # vpn-admins want a security key: a password alone is refused, naming why
    amy = authz.authorize("amy", {Factor.PASSWORD}, None, 0.0)
    assert (amy.reason, amy.policy_name) == ("second_factor_required", "vpn-admins")
    dave = authz.authorize("dave", {Factor.PASSWORD}, None, 0.0)
    assert dave.ok and dave.policy_name is None


def test_password_checked_by_binding_as_the_user(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd))
    ok = d.check_password("carl", "carl-pw", 0.0)
    assert ok.ok and ok.factors == frozenset({Factor.PASSWORD})
    assert d.check_password("carl", "amy-pw", 0.0).reason == "bad_password"
    assert d.check_password("nobody", "x", 0.0).reason == "unknown_user"


def test_empty_password_refused_before_any_bind(slapd: Slapd) -> None:
    # RFC 4513 §5.1.2: slapd would treat a DN with no password as an anonymous bind.
    d = LdapDirectory(settings(slapd, servers=(down_url(),)))
    assert d.check_password("carl", "", 0.0).reason == "empty_password"


@pytest.mark.parametrize(
    "name", ["*", "c*", ")(uid=*", "carl)(uid=*", "*)(|(uid=*", "carl\\", "\x00"]
)
def test_injection_finds_nobody(slapd: Slapd, name: str) -> None:
    d = LdapDirectory(settings(slapd))
    assert d.get(name) is None
    assert d.check_password(name, "carl-pw", 0.0).reason == "unknown_user"


def test_start_tls(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd, servers=(slapd.ldap_url,), start_tls=True))
    assert d.check_password("dave", "dave-pw", 0.0).ok


def test_failover_to_the_second_server(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd, servers=(down_url(), slapd.ldaps_url)))
    assert d.check_password("dave", "dave-pw", 0.0).ok


def test_all_servers_down_fails_closed(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd, servers=(down_url(), down_url())))
    with pytest.raises(DirectoryUnavailable):
        d.get("dave")
    assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"
    decision = Authorizer(d).authorize("dave", {Factor.PASSWORD}, None, 0.0)
    assert not decision.ok and decision.reason == "directory_unavailable"


def test_certificate_not_verified_fails_closed(slapd: Slapd, tmp_path: Path) -> None:
    write_pki(tmp_path)  # another CA: slapd's certificate does not verify against it
    d = LdapDirectory(settings(slapd, ca=tmp_path / "ca.pem"))
    assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"


def test_certificate_name_checked(slapd: Slapd) -> None:
    # The certificate names localhost, not 127.0.0.1.
    d = LdapDirectory(settings(slapd, servers=(f"ldaps://127.0.0.1:{slapd.ldaps_port}",)))
    assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"


def test_bind_account_refused_fails_closed(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd, bind_password="wrong"))
    with pytest.raises(DirectoryUnavailable):
        d.get("dave")


def test_group_search_instead_of_member_of(slapd: Slapd) -> None:
    d = LdapDirectory(
        settings(
            slapd,
            group_attribute="cn",
            group_base=GROUPS,
            group_filter="(&(objectClass=groupOfNames)(member={dn}))",
        )
    )
    carl = d.get("carl")
    assert carl is not None and carl.policy.framed_pool == "pool-b"


def test_lookups_cached_and_bounded(slapd: Slapd) -> None:
    d = LdapDirectory(settings(slapd, cache_size=2, cache_ttl=60.0))
    for name in ("amy", "carl", "dave"):
        assert d.get(name) is not None
    assert list(d._cache) == ["carl", "dave"]
    # unknown names are cached too: a cached known name must not be cheaper to ask
    # about than an unknown one (equal cost)
    assert d.get("nobody") is None and d._cache["nobody"][1] is None
    assert list(d._cache) == ["dave", "nobody"]


def test_enrollment_in_eapkits_store(slapd: Slapd) -> None:
    store = MemoryStore()
    d = LdapDirectory(settings(slapd), store)
    assert d.set_second_factor("dave", "totp")
    assert not d.set_second_factor("nobody", "totp")  # must exist in the directory
    dave = d.get("dave")
    assert dave is not None and dave.second_factor == "totp"
    amy = d.get("amy")  # the group policy wins over an enrollment
    assert d.set_second_factor("amy", "totp") and amy is not None
    assert amy.second_factor == "webauthn"
    with pytest.raises(ConfigError):
        d.add("eve", "pw")


def test_cleartext_ldap_refused() -> None:
    with pytest.raises(ConfigError, match="cleartext"):
        LdapSettings(servers=("ldap://ldap.example.org",), base=PEOPLE)


@given(st.text())
def test_escaped_value_has_no_filter_syntax(name: str) -> None:
    escaped = escape_filter_value(name)
    assert not set("*()\x00") & set(escaped)
    # every backslash starts a two-hex-digit escape, and unescaping gives the name back
    out, i = [], 0
    while i < len(escaped):
        if escaped[i] == "\\":
            out.append(chr(int(escaped[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(escaped[i])
            i += 1
    assert "".join(out) == name
    assert filter_for("(uid={user})", name) == f"(uid={escaped})"


def test_connections_send_without_nagle_delay(slapd: Slapd) -> None:
    # The first request after the TLS handshake waited ~40 ms for a delayed ACK
    # (Nagle) before TCP_NODELAY: every password check paid it.
    d = LdapDirectory(settings(slapd))
    with d._search_connection() as conn:
        assert conn.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert socket.IPPROTO_TCP == 6 and socket.TCP_NODELAY == 1  # the numbers ldap.py uses
    d.close()


def test_password_binds_reuse_kept_connections(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh TLS connection per password check cost ~4 ms of CPU (the handshake);
    # binds now replace the identity of a kept connection (RFC 4511 §4.2.1).
    d = LdapDirectory(settings(slapd))
    assert d.check_password("dave", "dave-pw", 0.0).ok  # one connection made here
    fresh: list[str | None] = []
    connect = d._connect

    def counted(dn: str | None, password: str, controls: list[Any] | None = None) -> Any:
        fresh.append(dn)
        return connect(dn, password, controls)

    monkeypatch.setattr(d, "_connect", counted)
    for user, password, reason in [
        ("dave", "wrong", "bad_password"),
        ("carl", "carl-pw", "ok"),
        ("nobody", "x", "unknown_user"),
        ("rita", "rita-pw", "password_must_change"),  # the ppolicy control on a rebind
        ("lou", "lou-pw", "account_locked"),
        ("dave", "dave-pw", "ok"),  # a connection restricted after rita's bind rebinds
    ]:
        assert d.check_password(user, password, 0.0).reason == reason
    assert [dn for dn in fresh if dn != READER] == []  # no new connection for a bind
    assert d._binders and all(c.password is None for c in d._binders)  # no password kept
    # a kept connection the server closed meanwhile: a fresh one, the same answer
    for conn in d._binders:
        conn.socket.close()
    assert d.check_password("carl", "carl-pw", 0.0).ok
    assert d.check_password("carl", "wrong", 0.0).reason == "bad_password"
    d.close()
