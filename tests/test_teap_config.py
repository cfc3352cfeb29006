"""``[teap]`` in ``eapkit serve``'s TOML (eapkit/teap_config.py, issue 19): what reaches
the TEAP method's ServerContext and the authorization step, and what ``eapkit check``
refuses (bad values, rules and bindings no login could meet)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.authz import ChainingRule, MachineBinding
from eapkit.check import check_data, errors_of
from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import Factor
from eapkit.serve import ServeConfig, build_authorizer, open_second_factors, server_context

NOW = dt.datetime.now(dt.UTC)
LONG = "0123456789abcdef-long-secret"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    files = pki.write_pki(tmp_path / "pki", now=NOW, server_names=["radius.example.org"])
    (tmp_path / "var").mkdir(mode=0o700)
    return {
        "db": str(tmp_path / "var" / "eapkit.db"),
        "methods": ["ttls"],  # + "teap" once the method is in the catalog
        "tls": {
            "cert": str(files.server_cert),
            "key": str(files.server_key),
            "ca": str(files.ca),
            "server_name": "radius.example.org",
        },
        "clients": [{"address": "192.0.2.1/32", "secret": LONG, "name": "gw"}],
    }


def messages(data: dict[str, Any], base: Path) -> list[str]:
    return [f"{f.where}: {f.message}" for f in errors_of(check_data(data, base, NOW))]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("any", 0),
        ("user", 1),
        ("machine", 2),
        ("user_or_machine", 3),
        ("machine_or_user", 4),
        ("machine_and_user", 5),
    ],
)
def test_identity_reaches_the_server_context(
    tmp_path: Path, site: dict[str, Any], name: str, number: int
) -> None:
    site["teap"] = {
        "identity": name,
        "user_inner": "basic-password",
        "machine_inner": "eap-mschapv2",
        "compat": "rfc7170",
    }
    cfg = ServeConfig.from_dict(site, base=tmp_path)
    users = LocalDirectory(tmp_path / "u.db")
    ctx = server_context(cfg, users)
    assert (ctx.teap_identity, ctx.teap_compat) == (number, "rfc7170")
    assert (ctx.teap_user_inner, ctx.teap_machine_inner) == ("basic-password", "eap-mschapv2")
    second = open_second_factors(cfg, users)
    assert build_authorizer(cfg, users, second).chaining.identity == number


def test_defaults_without_a_teap_table(tmp_path: Path, site: dict[str, Any]) -> None:
    cfg = ServeConfig.from_dict(site, base=tmp_path)
    ctx = server_context(cfg, LocalDirectory(tmp_path / "u.db"))
    assert (ctx.teap_identity, ctx.teap_compat) == (0, "rfc9930")
    assert (ctx.teap_user_inner, ctx.teap_machine_inner) == ("eap-mschapv2", "eap-tls")
    assert not cfg.teap.given


def test_rules_and_bindings_are_read(tmp_path: Path, site: dict[str, Any]) -> None:
    site["teap"] = {
        "identity": "machine_and_user",
        "machine_identity": ["cn"],
        "machine_prefix": "computer/",
        "unbound_users": "deny",
        "rules": [
            {"machine": ["machine_certificate"], "user": ["password", "otp_device"]},
            {"machine": ["machine_certificate"], "user": ["certificate"]},
        ],
        "bindings": [{"users": ["alice"], "machines": ["computer/alice-*"]}],
    }
    site["teap"]["user_inner"] = "eap-mschapv2"
    policy = ServeConfig.from_dict(site, base=tmp_path).teap.policy
    mc, pw, otp = Factor.MACHINE_CERTIFICATE, Factor.PASSWORD, Factor.OTP_DEVICE
    assert policy.rules[0] == ChainingRule(frozenset({mc}), frozenset({pw, otp}))
    assert policy.rules[1].user == frozenset({Factor.CERTIFICATE})
    assert policy.bindings == (MachineBinding(("alice",), ("computer/alice-*",)),)
    assert (policy.unbound_users, policy.machine_prefix) == ("deny", "computer/")
    assert policy.machine_identity.sources == ("cn",)


@pytest.mark.parametrize(
    ("teap", "expected"),
    [
        ({"identity": "machnie"}, "identity = 'machnie' is not one of"),
        ({"identity": "machine_and_users"}, "did you mean 'machine_and_user'"),
        ({"compat": "rfc7171"}, "compat = 'rfc7171' is not one of rfc9930, rfc7170"),
        ({"user_inner": "pap"}, "user_inner = 'pap' is not one of"),
        ({"machine_inner": "eap-ttls"}, "machine_inner = 'eap-ttls' is not one of"),
        ({"identity": 3}, "identity must be a string"),
        ({"rules": [{"user": ["passwrod"]}]}, "did you mean 'password'"),
        ({"bindings": [{"users": ["alice"]}]}, "no machines given"),
        ({"unbound_users": "maybe"}, "unbound_users = 'maybe'"),
        ({"machine_identity": ["subject"]}, "machine_identity = 'subject' is not one of"),
        ({"idnetity": "user"}, "unknown key 'idnetity' (did you mean 'identity'?)"),
    ],
)
def test_bad_values_are_errors(
    tmp_path: Path, site: dict[str, Any], teap: dict[str, Any], expected: str
) -> None:
    site["teap"] = teap
    found = messages(site, tmp_path)
    assert any(expected in m for m in found), found
    with pytest.raises(ConfigError):
        ServeConfig.from_dict(site, base=tmp_path)


@pytest.mark.parametrize(
    ("teap", "expected"),
    [
        (
            {"identity": "user", "rules": [{"machine": ["machine_certificate"]}]},
            "machine factors, but [teap] identity never asks for a machine",
        ),
        (
            {"identity": "machine", "rules": [{"user": ["password"]}]},
            "user factors, but [teap] identity never asks for a user",
        ),
        (
            {
                "identity": "machine_and_user",
                "user_inner": "eap-tls",
                "rules": [{"machine": ["machine_certificate"], "user": ["password", "otp_device"]}],
            },
            "user = ['otp_device', 'password'] cannot be proved by user_inner = 'eap-tls'",
        ),
        (
            {
                "identity": "machine_and_user",
                "machine_inner": "eap-mschapv2",
                "rules": [{"machine": ["machine_certificate"], "user": ["password"]}],
            },
            "machine = ['machine_certificate'] cannot be proved by machine_inner",
        ),
        (
            {"identity": "machine_and_user", "rules": [{"machine": [], "user": []}]},
            "asks for no factor",
        ),
        (  # MS-CHAPv2 is checked against the NT hash: it cannot carry a code
            {"identity": "user", "rules": [{"user": ["password", "otp_device"]}]},
            "user = ['otp_device'] cannot be proved by user_inner = 'eap-mschapv2'",
        ),
        (
            {"identity": "user", "bindings": [{"users": ["alice"], "machines": ["host/a"]}]},
            "never asks for a machine: every bound user would be refused",
        ),
        ({"unbound_users": "deny"}, '"deny" without [[teap.bindings]] refuses every user'),
        ({"machine_prefix": ""}, "machine_prefix names machine accounts"),
    ],
)
def test_policies_no_login_could_meet_are_errors(
    tmp_path: Path, site: dict[str, Any], teap: dict[str, Any], expected: str
) -> None:
    site["teap"] = teap
    found = messages(site, tmp_path)
    assert any(expected in m for m in found), found


def test_inner_eap_tls_needs_a_client_ca(tmp_path: Path, site: dict[str, Any]) -> None:
    site["teap"] = {"identity": "machine_and_user"}  # machine_inner defaults to eap-tls
    assert messages(site, tmp_path) == []
    del site["tls"]["ca"]
    assert messages(site, tmp_path) == [
        "[teap]: inner EAP-TLS needs [tls] ca: the CA of the client certificates"
    ]


def test_a_good_policy_passes_and_teap_outside_methods_warns(
    tmp_path: Path, site: dict[str, Any]
) -> None:
    site["teap"] = {
        "identity": "machine_and_user",
        "user_inner": "basic-password",
        "rules": [{"machine": ["machine_certificate"], "user": ["password", "otp_device"]}],
        "bindings": [{"users": ["alice"], "machines": ["host/alice-*"]}],
    }
    assert messages(site, tmp_path) == []
    warnings = [f.message for f in check_data(site, tmp_path, NOW) if f.level == "warning"]
    assert any('"teap" is not in methods' in w for w in warnings)


def test_require_emsk_binding_reaches_the_server_context(
    tmp_path: Path, site: dict[str, Any]
) -> None:
    """``[teap] require_emsk_binding`` (the stripped-EMSK-MAC downgrade; off by default
    for Windows) goes from the TOML to the method's context."""
    cfg = ServeConfig.from_dict(site, base=tmp_path)
    assert server_context(cfg, LocalDirectory(tmp_path / "a.db")).teap_require_emsk_binding is False
    site["teap"] = {"require_emsk_binding": True}
    cfg = ServeConfig.from_dict(site, base=tmp_path)
    assert server_context(cfg, LocalDirectory(tmp_path / "b.db")).teap_require_emsk_binding
