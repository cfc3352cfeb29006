"""``eapkit device add|list|show|revoke|crl|check`` (issue 20)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from eapkit import pki
from eapkit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A config with alice and bob, a CA, alice's laptop and a second laptop."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("devices CA", now=now)
    files = {
        "ca.pem": ca.cert_pem,
        "ca.key": ca.key_pem,
        "alice-laptop.pem": pki.make_client(ca, "alice-laptop", now=now).cert_pem,
        "spare.pem": pki.make_client(ca, "spare-laptop", now=now).cert_pem,
        "old.pem": pki.make_client(ca, "old", now=now - dt.timedelta(days=30), days=1).cert_pem,
        "junk.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "eapkit.toml").write_text(
        f'db = "{tmp_path / "eapkit.db"}"\nlog = "{tmp_path / "log" / "decisions.log"}"\n'
    )
    for user in ("alice", "bob"):
        assert run(capsys, "user", "add", user, "--password", "pw", *cfg(tmp_path))[0] == 0
    return tmp_path


def cfg(site: Path) -> list[str]:
    return ["--config", str(site / "eapkit.toml")]


def events(site: Path) -> list[dict[str, object]]:
    lines = (site / "log" / "decisions.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if str(e.get("event", "")).startswith("device")]


def test_add_validates_its_input(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = str(site / "alice-laptop.pem")
    code, _, err = run(capsys, "device", "add", cert, "--user", "zed", *cfg(site))
    assert code != 0 and "no user zed" in err
    code, _, err = run(capsys, "device", "add", str(site / "junk.pem"), "--user", "bob", *cfg(site))
    assert code != 0 and "no X.509 certificate" in err and "Traceback" not in err
    code, _, err = run(capsys, "device", "add", str(site / "old.pem"), "--user", "bob", *cfg(site))
    assert code != 0 and "expired" in err
    code, out, _ = run(capsys, "device", "add", cert, "--user", "alice", "--by", "ops", *cfg(site))
    assert code == 0 and "device alice-laptop added for alice" in out
    code, _, err = run(capsys, "device", "add", cert, "--user", "bob", "--name", "x", *cfg(site))
    assert code != 0 and "registered already as alice-laptop" in err
    code, out, _ = run(capsys, "device", "list", *cfg(site))
    assert out.count("\n") == 1 and out.startswith("alice-laptop\tactive\talice\t")
    code, out, _ = run(capsys, "device", "show", "alice-laptop", *cfg(site))
    assert "identities:  CN=alice-laptop" in out and "by ops" in out
    [added] = events(site)
    assert added["event"] == "device_added" and added["user"] == ["alice"]
    assert added["by"] == "ops" and len(str(added["fingerprint"])) == 64


def test_revoke_rewrites_the_crl_and_a_bad_ca_changes_nothing(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for pem in ("alice-laptop.pem", "spare.pem"):
        assert run(capsys, "device", "add", str(site / pem), "--user", "alice", *cfg(site))[0] == 0
    crl = site / "devices.crl"
    ca = ["--ca", str(site / "ca.pem"), "--ca-key", str(site / "ca.pem")]  # wrong key file
    code, _, err = run(
        capsys,
        "device",
        "revoke",
        "alice-laptop",
        "--reason",
        "stolen",
        "--crl",
        str(crl),
        *ca,
        *cfg(site),
    )
    assert code != 0 and not crl.exists()
    assert "alice-laptop\tactive" in run(capsys, "device", "list", *cfg(site))[1]
    ca[-1] = str(site / "ca.key")
    with pytest.raises(SystemExit):  # argparse: --reason is required
        main(["device", "revoke", "alice-laptop", "--crl", str(crl), *ca, *cfg(site)])
    assert "--reason" in capsys.readouterr().err
    code, out, _ = run(
        capsys,
        "device",
        "revoke",
        "alice-laptop",
        "--reason",
        "stolen",
        "--crl",
        str(crl),
        *ca,
        "--by",
        "ops",
        *cfg(site),
    )
    assert code == 0 and "swanctl --load-creds" in out
    listed = x509.load_pem_x509_crl(crl.read_bytes())
    laptop = x509.load_pem_x509_certificate((site / "alice-laptop.pem").read_bytes())
    assert [r.serial_number for r in listed] == [laptop.serial_number]
    assert oct(crl.stat().st_mode & 0o777) == "0o644"
    code, _, err = run(capsys, "device", "revoke", "alice-laptop", "--reason", "x", *cfg(site))
    assert code != 0 and "revoked already" in err
    out2 = site / "again.crl"
    assert run(capsys, "device", "crl", "--out", str(out2), *ca, *cfg(site))[0] == 0
    again = x509.load_pem_x509_crl(out2.read_bytes())
    assert crl_number(again) > crl_number(listed) and len(list(again)) == 1
    revoked = [e for e in events(site) if e["event"] == "device_revoked"]
    assert [(e["device"], e["reason"], e["by"]) for e in revoked] == [
        ("alice-laptop", "stolen", "ops")
    ]


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _check(site: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """As ext-auth runs it: a shell, only the IKE_* variables, stderr into stdout."""
    script = f"2>&1 {sys.executable} -m eapkit device check {' '.join(cfg(site))}"
    return subprocess.run(
        ["/bin/sh", "-c", script],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def test_check_as_ext_auth_runs_it(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(capsys, "device", "add", str(site / "alice-laptop.pem"), "--user", "alice", *cfg(site))[
            0
        ]
        == 0
    )
    base = {"IKE_UNIQUE_ID": "7", "IKE_NAME": "rw", "IKE_REMOTE_HOST": "192.0.2.2"}
    base["IKE_REMOTE_ID"] = "CN=alice-laptop"
    ok = _check(site, {**base, "IKE_REMOTE_EAP_ID": "alice"})
    assert ok.returncode == 0, ok.stdout
    bob = _check(site, {**base, "IKE_REMOTE_EAP_ID": "bob"})
    assert bob.returncode == 1 and "refused, device_not_allowed" in bob.stdout
    nobody = _check(
        site, {**base, "IKE_REMOTE_ID": "CN=spare-laptop", "IKE_REMOTE_EAP_ID": "alice"}
    )
    assert nobody.returncode == 1 and "unknown_device" in nobody.stdout
    no_eap = _check(site, base)
    assert no_eap.returncode == 1 and "no_eap_identity" in no_eap.stdout
    lost = _check(site, {})
    assert (
        lost.returncode != 0 and "IKE_REMOTE_ID" in lost.stdout and "Traceback" not in lost.stdout
    )
    checks = [e for e in events(site) if e["event"] in ("device_allowed", "device_refused")]
    assert [(e["event"], e["user"], e["reason"]) for e in checks] == [
        ("device_allowed", "alice", "allowed"),
        ("device_refused", "bob", "device_not_allowed"),
        ("device_refused", "alice", "unknown_device"),
        ("device_refused", None, "no_eap_identity"),
    ]
    assert checks[1]["device"] == "alice-laptop" and checks[1]["ike_sa"] == "7"
    assert os.environ.get("IKE_REMOTE_ID") is None


def _get(url: str) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_serve_publishes_the_crl_at_the_certificates_distribution_point(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[bridge] device_crl``: after ``eapkit device revoke --crl``, the URL that the
    device certificate names as its CRL distribution point (RFC 5280 §4.2.1.13) serves
    the new CRL, DER, from a running ``eapkit serve``; a later revoke shows up too."""
    import time
    import urllib.request

    from cryptography.hazmat.primitives.serialization import Encoding

    from eapkit.devices import load_ca
    from tests.conftest import free_tcp_port
    from tests.security.serving import Serve

    tcp = free_tcp_port()
    now = dt.datetime.now(dt.UTC)
    ca = load_ca(site / "ca.pem", site / "ca.key")
    url = f"http://127.0.0.1:{tcp}/devices.crl"
    laptop = pki.make_client(ca, "cdp-laptop", now=now, crl_urls=[url]).certificate
    spare = pki.make_client(ca, "cdp-spare", now=now, crl_urls=[url]).certificate
    for name, cert in (("cdp-laptop", laptop), ("cdp-spare", spare)):
        (site / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        add = ["device", "add", str(site / f"{name}.pem"), "--user", "alice", *cfg(site)]
        assert run(capsys, *add)[0] == 0
    [point] = laptop.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name is not None
    [cdp] = [n.value for n in point.full_name]
    assert cdp == url

    bridge = f'[bridge]\nlisten = "127.0.0.1:{tcp}"\nurl = "http://localhost:{tcp}"\n'
    with Serve(site, bridge + 'device_crl = "devices.crl"\n'):
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{tcp}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the bridge did not start"
                time.sleep(0.2)
        assert _get(cdp)[0] == 503  # no CRL written yet
        ca_args = ["--ca", str(site / "ca.pem"), "--ca-key", str(site / "ca.key"), *cfg(site)]
        revoke = ["device", "revoke", "--reason", "stolen", "--crl", str(site / "devices.crl")]
        assert run(capsys, *revoke[:2], "cdp-laptop", *revoke[2:], *ca_args)[0] == 0
        status, ctype, body = _get(cdp)
        assert (status, ctype) == (200, "application/pkix-crl")
        crl = x509.load_der_x509_crl(body)  # DER, as §4.2.1.13 wants over http
        assert crl.is_signature_valid(ca.key.public_key())
        assert [r.serial_number for r in crl] == [laptop.serial_number]
        assert run(capsys, *revoke[:2], "cdp-spare", *revoke[2:], *ca_args)[0] == 0
        crl = x509.load_der_x509_crl(_get(cdp)[2])
        assert {r.serial_number for r in crl} == {laptop.serial_number, spare.serial_number}
