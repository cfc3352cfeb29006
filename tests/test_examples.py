"""docs/examples/ as shipped (issue 22): ``eapkit check`` passes on each eapkit TOML
example, with the warnings its comments promise and no others; the scripts parse;
docs/ikev2.md names every example.  The IKEv2 lab runs them for real:
tests/e2e/test_ikev2_doc.py."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from eapkit import pki
from eapkit.check import check_file
from eapkit.serve import ServeConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
GUIDE = EXAMPLES.parent / "ikev2.md"
NOW = dt.datetime.now(dt.UTC)

# what each example's eapkit check says, as (where, first words)
EXPECTED_WARNINGS = {
    "single-round": {
        ("methods", "EAP-TLS proves a device certificate alone (no password, no code)")
    },
    "two-rounds": {
        ("gtc", 'gtc = "code"'),
        ("[[clients]] #1 (vpn-gateway)", 'second_factor = "nas"'),
    },
    "cert-then-code": {
        ("gtc", 'gtc = "code"'),
        ("[[clients]] #1 (vpn-gateway)", "bind_rounds = false"),
    },
}


def _installed(example: str, tmp_path: Path) -> Path:
    """The guide's layout: eapkit.toml and pki/ (with pki.sh's file names) in one
    0700 directory."""
    d = tmp_path / "eapkit"
    (d / "pki").mkdir(parents=True)
    d.chmod(0o700)
    files = pki.write_pki(tmp_path / "made", now=NOW, server_names=["radius.example.org"])
    shutil.copy(files.server_cert, d / "pki" / "radius.pem")
    shutil.copy(files.server_key, d / "pki" / "radius.key")
    shutil.copy(files.ca, d / "pki" / "ca.pem")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    issuer = pki.Issued(
        x509.load_pem_x509_certificate(files.ca.read_bytes()),
        serialization.load_pem_private_key(files.ca_key.read_bytes(), None),  # type: ignore[arg-type]
    )
    (d / "pki" / "ca.crl").write_bytes(pki.crl_pem(pki.make_crl(issuer, now=NOW, days=30)))
    shutil.copy(EXAMPLES / f"eapkit-{example}.toml", d / "eapkit.toml")
    return d / "eapkit.toml"


@pytest.mark.parametrize("example", sorted(EXPECTED_WARNINGS))
def test_eapkit_check_passes_on_each_example(example: str, tmp_path: Path) -> None:
    found = check_file(_installed(example, tmp_path), NOW)
    assert [f for f in found if f.level == "error"] == []
    warnings = {(f.where, f.message.split(":")[0]) for f in found}
    assert warnings == EXPECTED_WARNINGS[example]


def test_the_default_example_lets_no_factor_in_alone() -> None:
    cfg = ServeConfig.from_toml(EXAMPLES / "eapkit-single-round.toml")
    assert cfg.gtc == "password"
    assert "mschapv2" not in cfg.methods and "gtc" not in cfg.methods
    assert all(c.second_factor == "enforce" for c in cfg.clients)


def test_two_rounds_example_binds_its_rounds() -> None:
    cfg = ServeConfig.from_toml(EXAMPLES / "eapkit-two-rounds.toml")
    assert cfg.gtc == "code" and all(c.bind_rounds for c in cfg.clients)


@pytest.mark.parametrize("script", ["pki.sh", "lab.sh"])
def test_scripts_parse(script: str) -> None:
    subprocess.run(["sh", "-n", str(EXAMPLES / script)], check=True)


def test_swanctl_examples_are_balanced_and_named_in_the_guide() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for path in sorted(EXAMPLES.iterdir()):
        assert path.name in guide, f"docs/ikev2.md does not name {path.name}"
        if path.suffix == ".conf":
            text = path.read_text(encoding="utf-8")
            assert text.count("{") == text.count("}"), path.name


def test_the_gateway_and_eapkit_share_a_secret() -> None:
    gateway = (EXAMPLES / "gateway-eap-radius.conf").read_text(encoding="utf-8")
    for toml in EXAMPLES.glob("eapkit-*.toml"):
        [client] = ServeConfig.from_toml(toml).clients
        assert f"secret = {client.secret.decode()}\n" in gateway
        assert len(client.secret) >= 16
