"""Hostile user names and passwords against the LDAP directory (issue 18): filter and
DN metacharacters, UTF-8 and what is not, 253-octet names; empty, invisible, control
and very long passwords.  None may make an unauthenticated bind (RFC 4513 §5.1.2),
raise, or look like a directory failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.directory.groups import LdapSettings
from eapkit.directory.ldap import LdapDirectory
from tests.interop.ldap_server import (
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    add_user,
    running_slapd,
)

pytestmark = pytest.mark.interop

# DN-special characters (RFC 4514 §2.4) and filter metacharacters (RFC 4515 §3) in
# names that exist: their DN is escaped by the server, the bind must use it as given
ODD_NAMES = ["o,brien", "a+b", 'q"uote', "x=y", "#hash", "semi;colon", "star*", "par(en)", "é-ü"]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-input"))) as server:
        for name in ODD_NAMES:
            add_user(server, name, f"pw-{name}")
        yield server


@pytest.fixture(scope="module")
def d(slapd: Slapd) -> Iterator[LdapDirectory]:
    directory = LdapDirectory(
        LdapSettings(
            servers=(slapd.ldaps_url,),
            base=PEOPLE,
            bind_dn=READER,
            bind_password=READER_PASSWORD,
            ca=slapd.ca,
            timeout=2.0,
        )
    )
    yield directory
    directory.close()


class Counted:
    """Counts the fresh connections and the binds a directory makes."""

    def __init__(self, d: LdapDirectory, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connects: list[str | None] = []
        self.binds: list[str] = []
        connect, bind = d._connect, d._user_bind

        def counted_connect(dn: str | None, password: str, controls: Any = None) -> Any:
            self.connects.append(dn)
            return connect(dn, password, controls)

        def counted_bind(dn: str, password: str) -> Any:
            self.binds.append(dn)
            return bind(dn, password)

        monkeypatch.setattr(d, "_connect", counted_connect)
        monkeypatch.setattr(d, "_user_bind", counted_bind)


@pytest.mark.parametrize("password", ["\x00", "carl-pw\x00", "\x07bell", "\ue000", "\udcff"])
def test_password_saslprep_prohibits_is_bad_password_without_a_bind(
    d: LdapDirectory, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # ldap3's SASLprep (RFC 4013 §2.3) refused these inside the bind with an
    # LDAPException: eapkit took it for a dead server, opened a fresh TLS connection to
    # every server and answered directory_unavailable.
    assert d.check_password("carl", "carl-pw", 0.0).ok  # warm: kept connections
    counted = Counted(d, monkeypatch)
    assert d.check_password("carl", password, 0.0).reason == "bad_password"
    assert d.check_password("nobody", password, 0.0).reason == "unknown_user"
    assert counted.binds == [] and counted.connects == []
    assert d.check_password("carl", "carl-pw", 0.0).ok


@pytest.mark.parametrize("password", ["", "\u200b", "\u00ad\u200b\ufeff", "\u034f"])
def test_invisible_password_is_empty_and_never_bound(
    d: LdapDirectory, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # SASLprep maps these to nothing (RFC 3454 B.1): what remains is the empty
    # password of an unauthenticated bind (RFC 4513 §5.1.2).
    counted = Counted(d, monkeypatch)
    for user in ("carl", "nobody"):
        assert d.check_password(user, password, 0.0).reason == "empty_password"
    assert counted.binds == []


def test_spaces_and_long_passwords_are_real_binds(
    d: LdapDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(d, monkeypatch)
    for password in (" ", "   ", "x" * 4096, "carl-pw" + " " * 300):
        assert d.check_password("carl", password, 0.0).reason == "bad_password"
    assert len(counted.binds) == 4 and counted.connects == []  # answered by slapd


@pytest.mark.parametrize("name", ODD_NAMES)
def test_dn_special_names_log_in_as_themselves(d: LdapDirectory, name: str) -> None:
    assert d.check_password(name, f"pw-{name}", 0.0).ok
    assert d.check_password(name, "pw-carl", 0.0).reason == "bad_password"
    explained = d.explain(name)
    assert explained is not None and explained.dn.endswith(PEOPLE)


@pytest.mark.parametrize(
    "name",
    [
        "\udcff",  # a lone surrogate (not UTF-8)
        "carl\udcff",
        "amy\\xff",  # what invalid UTF-8 in User-Name becomes (backslashreplace)
        "carl\x00",
        "x" * 253,
        "é" * 126,  # 252 octets of UTF-8
        "uid=carl," + PEOPLE,  # a DN, not a name
        " ",
        "carl)(|(uid=*)",
        "\\2a",
    ],
)
def test_hostile_names_are_unknown(d: LdapDirectory, name: str) -> None:
    # "\udcff" raised UnicodeEncodeError out of the directory (a traceback)
    assert d.get(name) is None
    assert d.check_password(name, "carl-pw", 0.0).reason == "unknown_user"
    assert d.explain(name) is None


@settings(max_examples=40, deadline=None)
@given(name=st.text(max_size=40), password=st.text(max_size=40))
def test_any_name_and_password_end_in_a_reason(d: LdapDirectory, name: str, password: str) -> None:
    verdict = d.check_password(name, password, 0.0)
    assert verdict.reason in {
        "ok",
        "bad_password",
        "unknown_user",
        "empty_password",
        "account_locked",
        "password_must_change",
        "password_expired",
    }
    assert verdict.reason != "ok" or password == f"pw-{name}" or password.endswith("-pw")
