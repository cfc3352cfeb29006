"""``[directory]`` (kind = "ldap") and ``[[policy.groups]]`` in serve's TOML."""

from __future__ import annotations

from pathlib import Path

import pytest

from eapkit.config_schema import validate
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
                {"group": "contractors", "framed_pool": "pool-b", "session_timeout": 28800},
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": ["ldap://a.example.org"]}, "cleartext"),
        ({"servers": ["http://a.example.org"]}, "ldap"),
        ({"user_filter": "(uid=alice)"}, "{user}"),
        ({"bind_password_file": "missing.pw"}, "bind_password_file"),
    ],
)
def test_bad_ldap_settings_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    (tmp_path / "bind.pw").write_text("pw")
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ServeConfig.from_dict({"directory": {**LDAP, **change}}, base=tmp_path)


def test_schema_names_mistakes_in_the_tables() -> None:
    found = validate({"directory": {"kind": "ldap", "sever": ["x"]}})
    assert any("did you mean 'servers'" in f.message for f in found)
    found = validate({"policy": {"groups": [{"group": "g", "second_factor": "sms"}]}})
    assert any("'sms' is not one of" in f.message for f in found)
    assert any("no kind given" in f.message for f in validate({"directory": {}}))
