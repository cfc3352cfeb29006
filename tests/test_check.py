"""``eapkit check`` (eapkit/check.py, eapkit/config_schema.py): every configuration
mistake of issue 22 is rejected with a clear message, and ``eapkit serve`` refuses to
start on one."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit import pki
from eapkit.check import check_data, check_file, errors_of
from eapkit.cli import main
from eapkit.config_schema import SCHEMA, Finding, Table, validate
from eapkit.errors import ConfigError
from eapkit.serve import ServeConfig

NOW = dt.datetime.now(dt.UTC)
LONG = "0123456789abcdef-long-secret"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """A correct configuration with its files (the single-round default)."""
    files = pki.write_pki(tmp_path / "pki", now=NOW, server_names=["radius.example.org"])
    ca = pki.make_ca("other", now=NOW)
    (tmp_path / "pki" / "ca.crl").write_bytes(b"")
    (tmp_path / "var").mkdir(mode=0o700)
    return {
        "db": str(tmp_path / "var" / "eapkit.db"),
        "log": str(tmp_path / "var" / "decisions.log"),
        "methods": ["ttls", "gtc"],
        "tls": {
            "cert": str(files.server_cert),
            "key": str(files.server_key),
            "ca": str(files.ca),
            "server_name": "radius.example.org",
        },
        "clients": [{"address": "192.0.2.1/32", "secret": LONG, "name": "gw"}],
        "_other_ca": ca,
    }


def _check(data: dict[str, Any], tmp_path: Path | None = None) -> list[Finding]:
    clean = {k: v for k, v in data.items() if not k.startswith("_")}
    return check_data(clean, tmp_path or Path(), NOW)


def _errors(data: dict[str, Any]) -> list[str]:
    return [str(f) for f in errors_of(_check(data))]


def test_the_correct_site_passes(site: dict[str, Any]) -> None:
    assert _check(site) == []


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ({"lsiten": "127.0.0.1:1812"}, "unknown key 'lsiten' (did you mean 'listen'?)"),
        ({"seconds_factor": "nas"}, "(did you mean 'second_factor' in [[clients]]?)"),
        ({"methods": ["ttls", "mschap2"]}, "'mschap2' is not one of"),
        ({"methods": ["ttls", "mschap2"]}, "(did you mean 'mschapv2'?)"),
        ({"gtc": "codes"}, "(did you mean 'code'?)"),
        ({"conversation_ttl": "60"}, "conversation_ttl must be a number, not string '60'"),
        ({"pap": "yes"}, "pap must be true or false"),
        ({"max_conversations": 1.5}, "max_conversations must be an integer"),
        ({"tls": {"crt": "x.pem"}}, "[tls]: unknown key 'crt' (did you mean 'cert'?)"),
        ({"clients": {"address": "x"}}, "clients must be an array of tables"),
    ],
)
def test_schema_mistakes(mistake: dict[str, Any], message: str) -> None:
    found = [str(f) for f in validate(mistake)]
    assert any(message in line for line in found), found
    with pytest.raises(ConfigError):  # eapkit serve's parser refuses the same
        ServeConfig.from_dict(mistake)


def test_client_mistakes() -> None:
    found = [str(f) for f in validate({"clients": [{"address": "192.0.2.1", "name": "gw"}]})]
    assert found == [
        "error: [[clients]] #1 (gw): no secret given: secret is the shared secret, "
        "the same as the NAS's (RFC 2865 §3)"
    ]
    found = [
        str(f)
        for f in validate(
            {"clients": [{"address": "192.0.2.1", "secret": LONG, "seconds_factor": "nas"}]}
        )
    ]
    assert found == [
        "error: [[clients]] #1: unknown key 'seconds_factor' (did you mean 'second_factor'?)"
    ]


def test_missing_files_and_directories(site: dict[str, Any], tmp_path: Path) -> None:
    site["db"] = "/nonexistent/var/lib/eapkit/eapkit.db"
    site["log"] = "/nonexistent/var/log/eapkit/decisions.log"
    site["tls"]["ca"] = str(tmp_path / "nope.pem")
    errors = _errors(site)
    # Missing directories are no mistake: serve and the commands create them 0700.
    assert not any("/nonexistent" in e for e in errors)
    assert any(f"[tls] ca: {tmp_path / 'nope.pem'} does not exist" in e for e in errors)


def test_permissions(site: dict[str, Any]) -> None:
    key = Path(site["tls"]["key"])
    key.chmod(0o644)
    assert any("readable by others (mode 0644): chmod 600" in str(f) for f in _check(site))
    key.chmod(0o602)
    assert any("writable by everyone" in e for e in _errors(site))


def test_certificate_key_name_and_chain(site: dict[str, Any], tmp_path: Path) -> None:
    site["tls"]["server_name"] = "vpn.example.org"
    assert any("does not name 'vpn.example.org'" in e for e in _errors(site))
    site["tls"]["server_name"] = "radius.example.org"
    other = pki.make_server(site["_other_ca"], ["radius.example.org"], now=NOW)
    wrong_key = tmp_path / "other.key"
    wrong_key.write_bytes(other.key_pem)
    wrong_key.chmod(0o600)
    site["tls"]["key"] = str(wrong_key)
    assert any("is not the key of the certificate" in e for e in _errors(site))
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(other.chain_pem)
    site["tls"]["cert"] = str(foreign)
    found = [str(f) for f in _check(site)]
    assert any("does not chain to [tls] ca" in line for line in found)


def test_expired_certificate(site: dict[str, Any], tmp_path: Path) -> None:
    ca = pki.make_ca("old CA", now=NOW)
    old = pki.make_server(ca, ["radius.example.org"], now=NOW - dt.timedelta(days=900))
    (tmp_path / "old.pem").write_bytes(old.chain_pem)
    (tmp_path / "old.key").write_bytes(old.key_pem)
    (tmp_path / "old.key").chmod(0o600)
    site["tls"].update(cert=str(tmp_path / "old.pem"), key=str(tmp_path / "old.key"))
    assert any("[tls] cert: expired on" in e for e in _errors(site))


def test_crl_past_next_update_and_foreign_issuer(site: dict[str, Any], tmp_path: Path) -> None:
    ca_dir = Path(site["tls"]["ca"]).parent
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = pki.Issued(ca_cert, ca_key)  # type: ignore[arg-type]
    stale = pki.make_crl(ca, now=NOW - dt.timedelta(days=10), days=3)
    (tmp_path / "stale.crl").write_bytes(pki.crl_pem(stale))
    site["tls"]["crl"] = [str(tmp_path / "stale.crl")]
    assert any("past its nextUpdate" in e for e in _errors(site))
    fresh = pki.make_crl(ca, now=NOW)
    (tmp_path / "fresh.crl").write_bytes(pki.crl_pem(fresh))
    site["tls"]["crl"] = [str(tmp_path / "fresh.crl")]
    assert _errors(site) == []
    foreign = pki.make_crl(site["_other_ca"], now=NOW)
    (tmp_path / "foreign.crl").write_bytes(pki.crl_pem(foreign))
    site["tls"]["crl"] = [str(tmp_path / "foreign.crl")]
    assert any("is not signed by a CA in [tls] ca" in e for e in _errors(site))


def test_client_secrets(site: dict[str, Any]) -> None:
    site["clients"] = [{"address": "192.0.2.0/24", "secret": "testing123", "name": "gw"}]
    assert _errors(site) == [
        "error: [[clients]] #1 (gw): the demo secret 'testing123' on a non-loopback client: "
        "use a long random one"
    ]
    site["clients"] = [{"address": "127.0.0.1", "secret": "testing123", "name": "lo"}]
    found = [str(f) for f in _check(site)]
    assert found == [
        "warning: [[clients]] #1 (lo): the secret is 10 characters: use 16 or more (random)"
    ]


def test_settings_that_weaken_a_factor_are_named(site: dict[str, Any]) -> None:
    site.update(gtc="code", methods=["tls", "mschapv2", "gtc"], require_message_authenticator=False)
    site["clients"] = [
        {"address": "192.0.2.1", "secret": LONG, "name": "gw", "second_factor": "nas"},
        {"address": "192.0.2.2", "secret": LONG, "name": "certgw", "bind_rounds": False},
    ]
    found = {(f.where, f.message.split(":")[0]) for f in _check(site) if f.level == "warning"}
    assert ("gtc", 'gtc = "code"') in found
    assert ("[[clients]] #1 (gw)", 'second_factor = "nas"') in found
    assert ("[[clients]] #2 (certgw)", "bind_rounds = false") in found
    assert ("methods", "EAP-TLS proves a device certificate alone (no password, no code)") in found
    assert ("[tls] crl", "no CRL") in found
    assert ("require_message_authenticator", "false") in found


@pytest.mark.parametrize("kind", ["ad", "ldap"])
def test_ad_directory_keys_that_do_nothing_are_named(site: dict[str, Any], kind: str) -> None:
    """kind = "ad" reads memberOf, objectGUID and userAccountControl whatever these say:
    a disabled_filter there disabled nobody, silently.  LDAP reads them: no warning."""
    site["directory"] = {
        "kind": kind,
        "servers": ["ldaps://dc.example.org"],
        "base": "DC=corp,DC=example,DC=org",
        "group_attribute": "memberOf",
        "group_filter": "(&(objectClass=group)(member={dn}))",
        "id_attribute": "objectGUID",
        "disabled_filter": "(description=disabled)",
        "referrals": "ignore",  # read by AD too (eapkit.directory.ad.AdDirectory._search)
        "nested_groups": True,
    }
    warned = {f.where for f in _check(site) if "has no effect" in f.message}
    if kind == "ldap":
        assert warned == set()
        return
    assert warned == {
        "[directory] group_attribute",
        "[directory] group_filter",
        "[directory] id_attribute",
        "[directory] disabled_filter",
    }
    del site["directory"]["disabled_filter"], site["directory"]["group_filter"]
    warned = {f.where for f in _check(site) if "has no effect" in f.message}
    assert warned == {"[directory] group_attribute", "[directory] id_attribute"}
    assert not errors_of(_check(site))


def test_eapkit_check_command(
    site: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "eapkit.toml"
    path.write_text('lsiten = "127.0.0.1:1812"\nmethods = ["ttls", "mschap2"]\n')
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "did you mean 'listen'?" in out and "did you mean 'mschapv2'?" in out
    assert "2 errors" in out
    path.write_text("[[clients]]\naddress = 3\n")
    assert main(["check", "--config", str(path)]) == 1
    assert "address must be a string" in capsys.readouterr().out
    assert check_file(tmp_path / "missing.toml", NOW)[0].message.startswith("cannot read")


def test_serve_refuses_to_start_on_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "eapkit.toml"
    conf.write_text(
        '[[clients]]\naddress = "192.0.2.0/24"\nsecret = "testing123"\n'
        f'[tls]\nca = "{tmp_path}/missing-ca.pem"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "eapkit", "serve", "--config", str(conf), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "refusing to start" in proc.stderr
    assert "does not exist" in proc.stderr and "testing123" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- properties ---------------------------------------------------------------------------


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from([*SCHEMA.keys, "lsiten", "tls", "clients", "bridge"]) | st.text(max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_validate_never_raises_and_flags_every_unknown_key(data: dict[str, Any]) -> None:
    found = validate(data)
    assert all(isinstance(f, Finding) for f in found)
    for key in data:
        if key not in SCHEMA.keys:
            assert any(f"unknown key {key!r}" in f.message for f in found)
    if not found:  # what the schema accepts, serve's parser accepts
        with contextlib.suppress(ConfigError):  # values the schema cannot see (addresses)
            ServeConfig.from_dict(data)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(k for k, v in SCHEMA.keys.items() if not isinstance(v, Table))),
        _values,
        min_size=1,
        max_size=4,
    )
)
def test_a_wrong_type_is_named_with_its_key(data: dict[str, Any]) -> None:
    for finding in validate(data):
        assert finding.level == "error"
        assert any(key in finding.message for key in data)


def test_a_misspelled_method_on_the_command_line_is_an_error(tmp_path: Path) -> None:
    from eapkit.check import check_config

    cfg = ServeConfig(db=tmp_path / "eapkit.db", methods=["ttls", "mschap2"])
    [error] = errors_of(check_config(cfg, NOW))
    assert str(error) == (
        "error: methods: 'mschap2' is not one of tls, ttls, peap, teap, mschapv2, gtc "
        "(did you mean 'mschapv2'?)"
    )


def test_the_schema_knows_every_key_serve_reads() -> None:
    """A key ServeConfig.from_dict reads but the schema lacks would stop serve at start:
    every data["..."] / data.get("...") of from_dict must be in the schema."""
    import inspect
    import re

    from eapkit import serve
    from eapkit.config_schema import CLIENTS, TLS

    source = inspect.getsource(serve.ServeConfig.from_dict)
    tables = {"data": SCHEMA, "tls": TLS, "entry": CLIENTS}
    for table, key in re.findall(r'\b(data|tls|entry)(?:\.get\(|\[)"(\w+)"', source):
        assert key in tables[table].keys, f"{table}: {key}"
    for key, table in re.findall(r'"(\w+)" in (data|tls|entry)\b', source):
        assert key in tables[table].keys, f"{table}: {key}"
