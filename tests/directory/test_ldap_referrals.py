"""Incomplete and ambiguous LDAP answers (issue 18): a continuation reference or a
referral (RFC 4511 §4.5.3, §4.1.10), two entries for one name, a group search that
hits a size limit.  Each fails closed: an answer that may miss an entry for the name,
or a group that asks for a stronger second factor, is no answer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit.directory.groups import GroupPolicy, LdapSettings
from eapkit.directory.ldap import LdapDirectory
from tests.interop.ldap_server import (
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    add_entry,
    running_slapd,
)

pytestmark = pytest.mark.interop

ELSEWHERE = "ldap://ldap.elsewhere.test/ou=people,dc=elsewhere,dc=test"


def ou(slapd: Slapd, dn: str) -> None:
    add_entry(slapd, dn, ["organizationalUnit"], {"ou": dn.split(",", 1)[0].split("=", 1)[1]})


def person(slapd: Slapd, dn: str, uid: str, password: str) -> None:
    add_entry(
        slapd,
        dn,
        ["inetOrgPerson"],
        {"uid": uid, "cn": uid, "sn": uid, "userPassword": password},
    )


def referral(slapd: Slapd, dn: str) -> None:
    name = dn.split(",", 1)[0].split("=", 1)[1]
    add_entry(slapd, dn, ["referral", "extensibleObject"], {"ou": name, "ref": ELSEWHERE})


GROUPS_OU = f"ou=many-groups,{PEOPLE}"
FAR_GROUPS = f"ou=far-groups,{PEOPLE}"
GUS = f"uid=gus,ou=gus-zone,{PEOPLE}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-referrals"))) as server:
        # gus is in four groups found by a group search; the policy's group is last
        ou(server, f"ou=gus-zone,{PEOPLE}")
        person(server, GUS, "gus", "gus-pw")
        ou(server, GROUPS_OU)
        for group in ("g-a", "g-b", "g-c", "vpn-x"):
            add_entry(
                server,
                f"cn={group},{GROUPS_OU}",
                ["groupOfNames"],
                {"cn": group, "member": GUS},
            )
        referral(server, FAR_GROUPS)  # a group base that is held elsewhere
        # two entries answer to "twin"; three to "triplet"
        ou(server, f"ou=twins,{PEOPLE}")
        for n in range(3):
            ou(server, f"ou=t{n},ou=twins,{PEOPLE}")
            person(server, f"uid=triplet,ou=t{n},ou=twins,{PEOPLE}", "triplet", "trip-pw")
            if n < 2:
                person(server, f"uid=twin,ou=t{n},ou=twins,{PEOPLE}", "twin", "twin-pw")
        # zed lives beside a referral: the other server may hold another zed
        ou(server, f"ou=zone,{PEOPLE}")
        person(server, f"uid=zed,ou=zone,{PEOPLE}", "zed", "zed-pw")
        referral(server, f"ou=far,ou=zone,{PEOPLE}")
        yield server


def directory(slapd: Slapd, base: str, **kw: Any) -> LdapDirectory:
    return LdapDirectory(
        LdapSettings(
            servers=(slapd.ldaps_url,),
            base=base,
            bind_dn=READER,
            bind_password=READER_PASSWORD,
            ca=slapd.ca,
            timeout=2.0,
            cache_ttl=0.0,
            **kw,
        )
    )


def test_group_search_is_not_cut_at_two(slapd: Slapd) -> None:
    # The group search asked for at most 2 entries, and ldap3 does not raise on
    # sizeLimitExceeded: gus's third and fourth groups were dropped, and with them
    # vpn-x's security-key requirement.
    d = directory(
        slapd,
        f"ou=gus-zone,{PEOPLE}",
        group_attribute="cn",
        group_base=GROUPS_OU,
        group_filter="(&(objectClass=groupOfNames)(member={dn}))",
        groups=(GroupPolicy("vpn-x", "security_key"),),
    )
    gus = d.get("gus")
    assert gus is not None and gus.second_factor == "webauthn"
    explained = d.explain("gus")
    assert explained is not None and len(explained.searched) == 4


def test_group_base_referred_elsewhere_fails_closed(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    # The group base is a referral (resultCode 10), which ldap3 returns as "nothing
    # found": gus was let in with no group, so no group policy at all.
    d = directory(
        slapd,
        f"ou=gus-zone,{PEOPLE}",
        group_attribute="cn",
        group_base=FAR_GROUPS,
        group_filter="(&(objectClass=groupOfNames)(member={dn}))",
        groups=(GroupPolicy("vpn-x", "security_key"),),
    )
    with caplog.at_level(logging.WARNING, logger="eapkit.directory.ldap"):
        assert d.check_password("gus", "gus-pw", 0.0).reason == "directory_unavailable"
    assert "answered in part" in caplog.text


def test_continuation_reference_beside_the_user_fails_closed(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    # zed's entry came with a reference to another server that may hold another zed:
    # eapkit took the one entry it saw.
    d = directory(slapd, f"ou=zone,{PEOPLE}")
    with caplog.at_level(logging.WARNING, logger="eapkit.directory.ldap"):
        assert d.check_password("zed", "zed-pw", 0.0).reason == "directory_unavailable"
    assert "1 references" in caplog.text
    # an operator who knows the references hold no users may say so
    ignoring = directory(slapd, f"ou=zone,{PEOPLE}", referrals="ignore")
    assert ignoring.check_password("zed", "zed-pw", 0.0).ok


@pytest.mark.parametrize("name", ["twin", "triplet"])
def test_ambiguous_name_is_nobody(slapd: Slapd, name: str) -> None:
    d = directory(slapd, f"ou=twins,{PEOPLE}")
    password = "twin-pw" if name == "twin" else "trip-pw"
    assert d.get(name) is None
    assert d.check_password(name, password, 0.0).reason == "unknown_user"
