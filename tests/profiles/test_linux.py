"""The Linux swanctl tree: its syntax, and loaded into a real charon with swanctl
--load-all (Debian's strongSwan), in a private directory with a private VICI socket."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from eapkit.profiles import linux
from eapkit.profiles.common import ProfileError
from tests.conftest import require_tool
from tests.profiles.charon import private_charon
from tests.profiles.helpers import P12_PASSWORD, pki, request, swanctl_sections


@pytest.mark.parametrize("method", linux.METHODS)
def test_tree_layout_and_sections(method: str) -> None:
    files = linux.swanctl_tree(request(method))
    conf = files["conf.d/eapkit-alice.conf"].decode()
    sections = swanctl_sections(conf)
    assert "connections.eapkit-alice.remote" in sections
    assert "connections.eapkit-alice.children.eapkit" in sections
    assert files["x509ca/eapkit-ca.pem"] == pki()[0].cert_pem
    if method == "cert-eap":
        assert {"connections.eapkit-alice.local-1", "connections.eapkit-alice.local-2"} <= set(
            sections
        )
    if method in ("eap-tls", "cert-eap"):
        loaded = pkcs12.load_pkcs12(files["pkcs12/alice.p12"], P12_PASSWORD.encode())
        assert loaded.key is not None
    assert P12_PASSWORD not in conf


def test_values_are_quoted_so_a_name_cannot_open_a_section() -> None:
    files = linux.swanctl_tree(request(user='eve" } connections { x', gateway="gw"))
    (name,) = [n for n in files if n.startswith("conf.d/")]
    conf = files[name].decode()
    assert 'eap_id = "eve\\" } connections { x"' in conf
    first = next(s for s in swanctl_sections(conf) if s.startswith("connections."))
    assert first.startswith("connections.eapkit-eve___")


def test_methods_swanctl_profile_lacks_are_refused() -> None:
    with pytest.raises(ProfileError, match="not peap"):
        linux.swanctl_tree(request("peap"))


@pytest.fixture
def charon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private charon (tests/profiles/charon.py) and the swanctl that talks to it."""
    tools = require_tool("charon", "swanctl", "unshare", "mount")
    with private_charon(tools, tmp_path / "charon") as (_, vici):
        yield tools["swanctl"], vici


def _load(swanctl: str, vici: Path, tree: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [swanctl, "--load-all", "--noprompt", "--uri", f"unix://{vici}",
         "--file", str(tree / "swanctl.conf"), *extra],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip


def _tree(tmp_path: Path, method: str, extra_secret: str = "") -> Path:
    tree = tmp_path / f"swanctl-{method}"
    for relative, data in linux.swanctl_tree(request(method)).items():
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # /etc/swanctl/swanctl.conf includes conf.d/*.conf; the test's stands in for it
    (tree / "swanctl.conf").write_text(f"include conf.d/*.conf\n{extra_secret}")
    return tree


@pytest.mark.parametrize("method", linux.METHODS)
def test_real_charon_loads_the_connection(
    method: str, charon: tuple[str, Path], tmp_path: Path
) -> None:
    swanctl, vici = charon
    # the PKCS#12's password would be typed at --load-creds; the test gives it in a file
    secret = ""
    if method != "eap-mschapv2":
        secret = f'secrets {{ pkcs12-test {{ file = alice.p12\n secret = "{P12_PASSWORD}" }} }}\n'

    tree = _tree(tmp_path, method, secret)
    run = _load(swanctl, vici, tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "loaded connection 'eapkit-alice'" in run.stdout
    assert "successfully loaded 1 connections, 0 unloaded" in run.stdout
    listed = subprocess.run(
        [swanctl, "--list-conns", "--uri", f"unix://{vici}"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert "eapkit-alice: IKEv2" in listed.stdout, listed.stdout
    assert "remote: vpn.example.org" in listed.stdout or "vpn.example.org" in listed.stdout
    expected = {
        "eap-mschapv2": ["local EAP_MSCHAPV2 authentication"],
        "eap-tls": ["local EAP_TLS authentication"],
        "cert-eap": ["local public key authentication", "local EAP authentication"],
    }[method]
    for line in expected:
        assert line in listed.stdout, listed.stdout
    if method != "eap-mschapv2":  # the key came out of the PKCS#12 with its password
        assert "loaded ECDSA key from" in run.stdout and "pkcs12/alice.p12" in run.stdout


def test_real_swanctl_refuses_a_broken_tree(charon: tuple[str, Path], tmp_path: Path) -> None:
    """The check above can fail: a misspelt setting is refused by the same load."""
    swanctl, vici = charon
    tree = _tree(tmp_path, "eap-mschapv2")
    conf = tree / "conf.d" / "eapkit-alice.conf"
    conf.write_text(conf.read_text().replace("-ecp384", "-ecp999"))
    run = _load(swanctl, vici, tree)
    assert (
        run.returncode != 0 or "loading connection 'eapkit-alice' failed" in run.stdout + run.stderr
    )
