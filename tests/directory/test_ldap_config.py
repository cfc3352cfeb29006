"""``[directory]`` (kind = "ldap") and ``[[policy.groups]]`` in serve's TOML."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from eapkit.config_schema import validate
from eapkit.directory.groups import GroupPolicy
from eapkit.directory.ldap import _stable_id
from eapkit.errors import ConfigError
from eapkit.policy import UserPolicy
from eapkit.serve import ServeConfig

LDAP = {
    "kind": "ldap",
    "servers": ["ldaps://a.example.org", "ldaps://b.example.org"],
    "base": "ou=people,dc=example,dc=org",
    "bind_dn": "cn=radius,dc=example,dc=org",
    "bind_password_file": "bind.pw",
}


def test_ldap_table_and_group_policies_parsed(tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text("s3cret\n")
    data = {
        "directory": LDAP,
        "policy": {
            "groups": [
                {"group": "vpn-admins", "second_factor": "security_key", "class": "admins"},
                {
                    "group": "contractors",
                    "name": "contractors-8h",
                    "framed_pool": "pool-b",
                    "session_timeout": 28800,
                },
            ]
        },
    }
    assert validate(data) == []
    cfg = ServeConfig.from_dict(data, base=tmp_path)
    assert cfg.directory == "ldap" and cfg.ldap is not None
    assert cfg.ldap.servers == tuple(LDAP["servers"])
    assert cfg.ldap.bind_password == "s3cret" and "s3cret" not in repr(cfg.ldap)
    first, second = cfg.ldap.groups
    assert first.second_factor == "security_key" and first.policy.klass == b"admins"
    assert second.policy == UserPolicy(session_timeout=28800, framed_pool="pool-b")
    # the decision log's name of each entry: its name, else its group
    assert (first.label, second.label) == ("vpn-admins", "contractors-8h")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": ["ldap://a.example.org"]}, "cleartext"),
        ({"servers": ["http://a.example.org"]}, "ldap"),
        ({"user_filter": "(uid=alice)"}, "{user}"),
        ({"bind_password_file": "missing.pw"}, "bind_password_file"),
        ({"disabled_filter": "employeeType=disabled"}, "disabled_filter"),
        ({"id_attribute": ""}, "id_attribute"),
        # an empty bind password is an unauthenticated bind (RFC 4513 §5.1.2)
        ({"bind_password_file": "empty.pw"}, "unauthenticated"),
        ({"cache_ttl": 86400}, "cache_ttl"),
        ({"referrals": "chase"}, "referrals"),
    ],
)
def test_bad_ldap_settings_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    (tmp_path / "bind.pw").write_text("pw")
    (tmp_path / "empty.pw").write_text("\n")
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ServeConfig.from_dict({"directory": {**LDAP, **change}}, base=tmp_path)


def test_schema_names_mistakes_in_the_tables() -> None:
    found = validate({"directory": {"kind": "ldap", "sever": ["x"]}})
    assert any("did you mean 'servers'" in f.message for f in found)
    found = validate({"policy": {"groups": [{"group": "g", "second_factor": "sms"}]}})
    assert any("'sms' is not one of" in f.message for f in found)
    assert any("no kind given" in f.message for f in validate({"directory": {}}))
    with pytest.raises(ConfigError, match="name is a non-empty string"):
        GroupPolicy.from_dict({"group": "g", "name": ""})


def test_account_state_and_stable_key_settings(tmp_path: Path) -> None:
    (tmp_path / "bind.pw").write_text("pw")
    data = {
        "directory": {
            **LDAP,
            "id_attribute": "objectGUID",
            "disabled_filter": "(employeeType=disabled)",
            "unknown_user_dn": "cn=nobody,dc=example,dc=org",
        }
    }
    assert validate(data) == []
    cfg = ServeConfig.from_dict(data, base=tmp_path)
    assert cfg.ldap is not None and cfg.ldap.id_attribute == "objectGUID"
    assert cfg.ldap.disabled_filter == "(employeeType=disabled)"
    assert cfg.ldap.dummy_dn == "cn=nobody,dc=example,dc=org"
    plain = ServeConfig.from_dict({"directory": LDAP}, base=tmp_path).ldap
    assert plain is not None and plain.id_attribute == "entryUUID"
    assert plain.dummy_dn == "cn=eapkit-unknown-user,ou=people,dc=example,dc=org"


def test_stable_ids_as_text() -> None:
    guid = uuid.UUID("0c6d8a2e-1b2c-4d3e-8f90-a1b2c3d4e5f6")
    assert _stable_id("objectGUID", [guid.bytes_le]) == str(guid)  # AD's byte order
    assert _stable_id("entryUUID", ["212bd8c2-827c-1041-8d83-0bce71940619"]) == (
        "212bd8c2-827c-1041-8d83-0bce71940619"
    )
    assert _stable_id("entryUUID", []) is None
    assert _stable_id("someId", [b"\x01\x02"]) == "0102"
