"""Group policies against a private slapd: Filter-Id, Cisco-AVPair and a Framed-IP-Address
read from the user's entry in the Accept of a running ``eapkit serve`` (``radclient``
reads them with FreeRADIUS's dictionaries), a method the group does not allow refused
(``eapol_test``, TTLS/PAP), and the directory's record for each setting."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.authz import Authorizer
from eapkit.directory.groups import GroupPolicy
from eapkit.directory.ldap import LdapDirectory
from eapkit.methods.base import Factor
from eapkit.store.memory import MemoryStore
from tests.directory.test_ldap import settings
from tests.interop.ldap_server import (
    FRAMED_IP_ATTRIBUTE,
    FRAMED_IPS,
    GROUPS,
    Slapd,
    directory_table,
    running_slapd,
)
from tests.interop.test_radclient import radclient
from tests.interop.tools import EapkitServe, eapol_test

pytestmark = pytest.mark.interop

CONTRACTORS = f"""
[[policy.groups]]
group = "cn=contractors,{GROUPS}"
name = "contractors-acl"
filter_id = "contractors-acl"
framed_ip_attribute = "{FRAMED_IP_ATTRIBUTE}"
methods = ["pap"]
vendor = [
  {{ name = "Cisco-AVPair", value = "shell:priv-lvl=1" }},
  {{ vendor = 9, type = 1, value = "ip:inacl#1=deny ip any any" }},
]
"""


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd"))) as server:
        yield server


@pytest.fixture(scope="module")
def server(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    work = Path(tmp_path_factory.mktemp("serve-policy"))
    (work / "serve.toml").write_text(directory_table(slapd, work, extra=CONTRACTORS))
    extra = ["--config", str(work / "serve.toml"), "--methods", "ttls,gtc"]
    with EapkitServe(work, users=(), extra=extra) as srv:
        yield srv


def _reply(out: str, code: str) -> str:
    assert f"Received {code}" in out, out
    return out.split("Received", 1)[1]


def test_accept_carries_filter_id_vendor_attributes_and_the_entry_address(
    server: EapkitServe,
) -> None:
    attrs = 'User-Name = "carl"\nUser-Password = "carl-pw"\nMessage-Authenticator = 0x00\n'
    reply = _reply(radclient(server.port, attrs).stdout, "Access-Accept")
    assert 'Filter-Id = "contractors-acl"' in reply
    assert 'Cisco-AVPair = "shell:priv-lvl=1"' in reply
    assert 'Cisco-AVPair = "ip:inacl#1=deny ip any any"' in reply
    assert f"Framed-IP-Address = {FRAMED_IPS['carl']}" in reply
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["policy"]) == ("carl", "accept", "contractors-acl")
    # dave is in no listed group: none of it
    attrs = attrs.replace("carl", "dave")
    reply = _reply(radclient(server.port, attrs).stdout, "Access-Accept")
    assert "Filter-Id" not in reply and "Cisco-AVPair" not in reply
    assert "Framed-IP-Address" not in reply


def test_method_the_group_does_not_allow_refused(server: EapkitServe) -> None:
    block = f"""
key_mgmt=IEEE8021X
eap=TTLS
identity="carl"
anonymous_identity="anonymous"
password="carl-pw"
ca_cert="{server.pki / "ca.pem"}"
phase2="auth=PAP"
"""
    result = eapol_test(block, server.port, server.workdir / "eapol-carl")
    assert not result.success, result.output[-2000:]
    line = server.decisions[-1]
    assert (line["user"], line["result"], line["reason"], line["policy"]) == (
        "carl",
        "reject",
        "method_not_allowed",
        "contractors-acl",
    )
    # the same method for a user in no listed group: allowed
    dave = block.replace('"carl"', '"dave"').replace("carl-pw", "dave-pw")
    assert eapol_test(dave, server.port, server.workdir / "eapol-dave").success


def _directory(slapd: Slapd, *groups: GroupPolicy) -> LdapDirectory:
    return LdapDirectory(settings(slapd, groups=groups), MemoryStore())


def _contractors(**entry: object) -> GroupPolicy:
    return GroupPolicy.from_dict({"group": "contractors", **entry})


def test_framed_ip_read_from_the_entry_or_left_out(
    slapd: Slapd, caplog: pytest.LogCaptureFixture
) -> None:
    carl = _directory(slapd, _contractors(framed_ip_attribute="ipHostNumber")).get("carl")
    assert carl is not None and carl.policy.framed_ip == FRAMED_IPS["carl"]
    with caplog.at_level(logging.WARNING, "eapkit.directory.base"):
        # cn holds "carl", not an address; description is not in the entry
        for attribute in ("cn", "description"):
            d = _directory(slapd, _contractors(framed_ip_attribute=attribute, filter_id="f"))
            carl = d.get("carl")
            assert carl is not None and carl.policy.framed_ip is None, attribute
            assert carl.policy.filter_id == "f" and carl.policy_name == "contractors"
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and all("no Framed-IP-Address" in m for m in logged), logged


def test_second_factor_list_and_methods_from_the_directory(slapd: Slapd) -> None:
    store = MemoryStore()
    d = _directory(slapd, _contractors(second_factor=["yubikey", "totp"], methods=["pap"]))
    d.store = store
    authz = Authorizer(d)
    both = {Factor.PASSWORD, Factor.OTP_DEVICE}
    # carl enrolled nothing the group accepts: refused whatever he proves
    refused = authz.authorize("carl", both, None, 0.0, method="pap")
    assert (refused.reason, refused.policy_name) == ("second_factor_required", "contractors")
    assert d.set_second_factor("carl", "totp")
    assert authz.authorize("carl", both, None, 0.0, method="pap").ok
    assert authz.authorize("carl", both, None, 0.0, method="ttls").reason == ("method_not_allowed")
    assert d.set_second_factor("carl", "webauthn")
    assert authz.authorize("carl", both, None, 0.0, method="pap").reason == (
        "second_factor_required"
    )
