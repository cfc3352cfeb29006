"""A ``[[policy.groups]]`` entry's reply attributes, methods and second-factor lists
without a directory server: parsing (with the errors an operator sees), the Accept's
encoding (pyrad as the oracle), the record an account gets, and the authorization
step's refusals (``method_not_allowed``, ``second_factor_required``)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.authz import Authorizer, nas_scope
from eapkit.config_schema import validate
from eapkit.directory.base import ExternalAccounts, User, framed_ip_from
from eapkit.directory.groups import VENDOR_NAMES, GroupPolicy
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor
from eapkit.policy import UserPolicy, VendorAttribute
from eapkit.radius import dictionary as rd
from eapkit.radius.clients import Client
from eapkit.radius.packet import Code, decode, encode_reply
from eapkit.radius.reply import accept_attributes
from eapkit.rand import DeterministicRandom
from eapkit.serve import ServeConfig
from eapkit.store.memory import MemoryStore

ENTRY: dict[str, Any] = {
    "group": "contractors",
    "name": "contractors-acl",
    "filter_id": "contractors-acl",
    "vendor": [
        {"name": "Cisco-AVPair", "value": "shell:priv-lvl=1"},
        {"vendor": 9, "type": 1, "value": "ip:inacl#1=deny ip any any"},
        {"vendor": 11344, "type": 3, "value": "x"},
    ],
    "framed_ip_attribute": "ipHostNumber",
    "methods": ["ttls", "pap"],
    "second_factor": ["security_key", "yubikey"],
}


def test_entry_parsed_from_serve_toml(tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text("pw")
    data = {
        "directory": {
            "kind": "ldap",
            "servers": ["ldaps://a.example.org"],
            "base": "ou=people,dc=example,dc=org",
            "bind_dn": "cn=r,dc=example,dc=org",
            "bind_password_file": "bind.pw",
        },
        "policy": {"groups": [ENTRY]},
    }
    assert validate(data) == []
    cfg = ServeConfig.from_dict(data, base=tmp_path)
    assert cfg.ldap is not None
    (group,) = cfg.ldap.groups
    assert group.policy.filter_id == "contractors-acl"
    assert group.policy.vendor == (
        VendorAttribute(9, 1, b"shell:priv-lvl=1"),
        VendorAttribute(9, 1, b"ip:inacl#1=deny ip any any"),
        VendorAttribute(11344, 3, b"x"),
    )
    assert group.framed_ip_attribute == "ipHostNumber"
    assert group.methods == frozenset({"ttls", "pap"})
    assert group.second_factor == ("webauthn", "yubikey")  # the directory's kinds


def test_vendor_names_agree_with_the_radius_dictionary() -> None:
    for name, (vendor, number) in VENDOR_NAMES.items():
        d = rd.lookup(name)
        assert (d.vendor, d.number) == (vendor, number), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filter_id": 5}, "filter_id is a string"),
        ({"filter_id": "x" * 254}, "filter_id is 1 to 253"),
        ({"vendor": {"vendor": 9}}, "vendor is a list"),
        ({"vendor": [{"vendor": 9, "type": 1}]}, "value is a string"),
        ({"vendor": [{"vendor": "9", "type": 1, "value": "v"}]}, "are integers"),
        ({"vendor": [{"vendor": 9, "type": 256, "value": "v"}]}, "type 256"),
        ({"vendor": [{"vendor": 2**24, "type": 1, "value": "v"}]}, "24-bit"),
        ({"vendor": [{"vendor": 9, "type": 1, "value": "v" * 248}]}, "1 to 247 octets"),
        ({"vendor": [{"name": "Cisco-AVPairs", "value": "v"}]}, "not one eapkit knows"),
        ({"vendor": [{"name": "Cisco-AVPair", "vendor": 9, "value": "v"}]}, "not both"),
        # the MPPE keys are the server's own, salt-encrypted (RFC 2548 §2.4.2)
        ({"vendor": [{"vendor": 311, "type": 16, "value": "k"}]}, "salt-encrypted"),
        ({"methods": ["ttls", "peep"]}, "'peep' is not one of"),
        ({"methods": []}, "non-empty list"),
        ({"second_factor": ["yubikey", "any"]}, "'any' is not one of"),
        ({"second_factor": []}, "non-empty list"),
        ({"second_factor": "sms"}, "second_factor is one of"),
        ({"framed_ip": "10.0.0.1"}, "framed_ip or framed_ip_attribute"),
        ({"framed_ip_attribute": ""}, "names an attribute"),
    ],
)
def test_bad_entries_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GroupPolicy.from_dict({**ENTRY, **change})


def test_schema_names_mistakes_in_the_new_keys() -> None:
    bad = {
        "group": "g",
        "second_factor": ["yubikey", "securitykey"],
        "methods": ["tls", "ttsl"],
        "vendor": [{"vendr": 9, "type": 1, "value": "v"}],
        "filter_id": 3,
    }
    found = [f.message for f in validate({"policy": {"groups": [bad]}})]
    assert any("did you mean 'security_key'" in m for m in found), found
    assert any("did you mean 'ttls'" in m for m in found), found
    assert any("did you mean 'vendor'" in m for m in found), found
    assert any("filter_id must be a string" in m for m in found), found


def test_accept_carries_filter_id_and_vendor_attributes_pyrad_reads_them() -> None:
    pyrad_packet = pytest.importorskip("pyrad.packet")
    pyrad_dictionary = pytest.importorskip("pyrad.dictionary")
    oracle = pyrad_dictionary.Dictionary(
        str(Path(__file__).parent.parent / "radius" / "dictionary.pyrad")
    )
    secret = b"oracle-secret"
    request = pyrad_packet.AuthPacket(code=1, id=7, secret=secret, dict=oracle)
    request.AddAttribute("User-Name", "carl")
    request.add_message_authenticator()
    raw_request = request.RequestPacket()
    policy = UserPolicy(
        session_timeout=600,
        filter_id="contractors-acl",
        framed_ip="10.20.0.7",
        vendor=(
            VendorAttribute(9, 1, b"shell:priv-lvl=1"),
            VendorAttribute(9, 1, b"ip:inacl#1=deny ip any any"),
            VendorAttribute(11344, 3, b"\x00\x01"),
        ),
    )
    attrs = accept_attributes("carl", policy, DeterministicRandom(1))
    raw = encode_reply(Code.ACCESS_ACCEPT, decode(raw_request), attrs, secret)
    reply = request.CreateReply(packet=raw)
    assert request.VerifyReply(reply, raw, enforce_ma=True)
    assert reply["Filter-Id"] == ["contractors-acl"]
    assert reply["Cisco-AVPair"] == ["shell:priv-lvl=1", "ip:inacl#1=deny ip any any"]
    assert reply["Framed-IP-Address"] == ["10.20.0.7"]
    assert reply["Session-Timeout"] == [600]
    # a vendor pyrad's dictionary does not know: still one well-formed VSA (§5.26)
    assert (11344, 3, b"\x00\x01") in [
        (vendor, kind, value)
        for t, v in decode(raw).attributes
        if t == rd.Attr.VENDOR_SPECIFIC
        for vendor, subs in [rd.decode_vsa(v)]
        for kind, value in subs
    ]


def test_policy_with_vendor_attributes_survives_json() -> None:
    policy = UserPolicy(filter_id="f", vendor=(VendorAttribute(9, 1, b"a=b"),), klass=b"c")
    assert UserPolicy.from_json(policy.to_json()) == policy
    assert UserPolicy.from_json(UserPolicy(session_timeout=5).to_json()).vendor == ()


@pytest.mark.parametrize(
    ("values", "address"),
    [
        ([b"10.20.0.7"], "10.20.0.7"),
        ([b" 192.0.2.1 "], "192.0.2.1"),
        # AD's msRADIUSFramedIPAddress: the address as a signed 32-bit integer
        ([b"-1062731775"], "192.168.0.1"),
        ([b"167772161"], "10.0.0.1"),
        ([], None),
        ([b"10.0.0.1", b"10.0.0.2"], None),
        ([b"10.0.0.256"], None),
        ([b"2001:db8::1"], None),
        ([b"4294967296"], None),
        ([b"\xff\xfe"], None),
    ],
)
def test_framed_ip_from_the_entry(
    values: list[bytes], address: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "eapkit.directory.base"):
        assert framed_ip_from("carl", "ipHostNumber", values) == address
    logged = [r.getMessage() for r in caplog.records]
    if address is None:
        assert len(logged) == 1 and "no Framed-IP-Address" in logged[0]
    else:
        assert logged == []


class _Accounts(ExternalAccounts[Any]):
    """Only what ``_account_user`` reads: the store of enrolled kinds."""

    OVERLAY = "test:"

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache = OrderedDict()


def _record(entry: dict[str, Any], enrolled: str | None, **attributes: list[bytes]) -> User:
    store = MemoryStore()
    if enrolled is not None:
        store.put("test:k", enrolled.encode())
    group = GroupPolicy.from_dict({"group": "g", **entry})
    return _Accounts(store)._account_user("carl", "k", group, None, attributes)


def test_second_factor_list_keeps_an_enrolled_kind_it_names() -> None:
    wanted = {"second_factor": ["security_key", "yubikey"]}
    yubikey = _record(wanted, "yubikey")
    assert (yubikey.second_factor, yubikey.factor_not_allowed) == ("yubikey", False)
    key = _record(wanted, "webauthn")
    assert (key.second_factor, key.factor_not_allowed) == ("webauthn", False)
    for enrolled in ("totp", "none", None):
        other = _record(wanted, enrolled)
        assert other.factor_not_allowed, enrolled
        assert other.second_factor == "webauthn"  # never "none": possession is owed


def test_record_gets_methods_and_the_entry_address() -> None:
    entry = {"methods": ["pap"], "framed_ip_attribute": "ipHostNumber", "filter_id": "f"}
    carl = _record(entry, None, iphostnumber=[b"10.20.0.7"])  # names compared without case
    assert carl.methods == frozenset({"pap"})
    assert carl.policy.framed_ip == "10.20.0.7" and carl.policy.filter_id == "f"
    missing = _record(entry, None)
    assert missing.policy.framed_ip is None and missing.policy.filter_id == "f"


class _Users:
    """A directory of fixed records (the authorization step reads only ``get``)."""

    def __init__(self, *records: User) -> None:
        self.records = {r.name: r for r in records}

    def get(self, name: str) -> User | None:
        return self.records.get(name)


def _authorizer() -> Authorizer:
    pap_only = _record({"methods": ["pap", "ttls"]}, None)
    listed = _record({"second_factor": ["yubikey"]}, "totp")
    enrolled = _record({"second_factor": ["yubikey", "totp"]}, "totp")
    return Authorizer(
        _Users(  # type: ignore[arg-type]
            User("carl", methods=pap_only.methods, policy_name="contractors"),
            User(
                "tom",
                second_factor=listed.second_factor,
                factor_not_allowed=listed.factor_not_allowed,
                policy_name="keys",
            ),
            User("tim", second_factor=enrolled.second_factor, policy_name="keys"),
            User("dave"),
        )
    )


def test_method_not_in_the_group_list_refused() -> None:
    authz = _authorizer()
    password = {Factor.PASSWORD}
    for method in ("pap", "ttls", None):  # None: a caller that names no method
        assert authz.authorize("carl", password, None, 0.0, method=method).ok, method
    for method in ("peap", "mschapv2", "gtc"):
        refused = authz.authorize("carl", password, None, 0.0, method=method)
        assert (refused.ok, refused.reason, refused.policy_name) == (
            False,
            "method_not_allowed",
            "contractors",
        )
    assert authz.authorize("dave", password, None, 0.0, method="peap").ok  # no list: any


def test_second_factor_outside_the_group_list_refused() -> None:
    authz = _authorizer()
    both = {Factor.PASSWORD, Factor.OTP_DEVICE}
    # tom enrolled a TOTP app; his group accepts a YubiKey only: whatever he proves
    for factors in (both, {Factor.PASSWORD}, {Factor.PASSWORD, Factor.SECURITY_KEY}):
        refused = authz.authorize("tom", factors, None, 0.0)
        assert (refused.ok, refused.reason) == (False, "second_factor_required")
    assert authz.refused("tom", "unknown_user", 0.0) == "second_factor_required"
    # tim's TOTP is in his group's list: a code passes, a password alone does not
    assert authz.authorize("tim", both, None, 0.0).ok
    assert authz.authorize("tim", {Factor.PASSWORD}, None, 0.0).reason == ("second_factor_required")
    # a NAS that runs the second factor itself is still exempt
    with nas_scope(Client.of("192.0.2.1/32", "s", "gw", second_factor="nas"), 0.0):
        assert authz.authorize("tom", {Factor.PASSWORD}, None, 0.0).ok


@given(st.lists(st.binary(max_size=40), max_size=3))
def test_framed_ip_from_any_entry_values(values: list[bytes]) -> None:
    """Whatever bytes a directory holds in the attribute: an IPv4 address or None,
    never an exception (the login goes on without Framed-IP-Address)."""
    address = framed_ip_from("carl", "ipHostNumber", values)
    assert address is None or str(IPv4Address(address)) == address
