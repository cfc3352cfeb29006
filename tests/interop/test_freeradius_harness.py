"""The FreeRADIUS harness against tools no one here wrote (no eapkit peer code): if these
fail, the FreeRADIUS config the interop tests build cannot be trusted either.

- ``radclient`` (Debian ``freeradius-utils``, not anything from this virtualenv) sends
  PAP to the private FreeRADIUS.
- ``eapol_test`` (wpa_supplicant 2.10) runs TTLS/PAP, PEAP/MSCHAPv2 and EAP-TLS 1.3
  against it, so that a failure of eapkit's TTLS/PEAP peer against the same config is
  the peer's, not the config's.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit import pki
from tests.conftest import require_tool
from tests.interop.tools import FreeRadius, eapol_test

pytestmark = pytest.mark.interop

SECRET = "harness-secret"


@pytest.fixture(scope="module")
def freeradius(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FreeRadius, Path]]:
    work = tmp_path_factory.mktemp("freeradius-harness")
    pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="harness CA",
        server_names=["radius.harness.test"],
        client_name="carol",
    )
    with FreeRadius(
        work / "server",
        'carol Cleartext-Password := "pencil"\n',
        secret=SECRET,
        ca_cert=work / "ca.pem",
        server_cert=work / "server.pem",
        private_key=work / "server.key",
    ) as server_proc:
        yield server_proc, work


def _radclient(port: int, attrs: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("radclient")["radclient"]
    return subprocess.run(
        [exe, "-x", "-r", "1", "-t", "3", f"127.0.0.1:{port}", "auth", SECRET],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_radclient_is_freeradius_utils() -> None:
    exe = Path(require_tool("radclient")["radclient"]).resolve()
    assert not exe.is_relative_to(Path(sys.prefix).resolve()), exe  # not a venv script
    version = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)
    assert version.stdout.startswith("radclient version 3."), version.stdout


def test_radclient_pap(freeradius: tuple[FreeRadius, Path]) -> None:
    server, _ = freeradius
    good = _radclient(server.port, 'User-Name = "carol"\nUser-Password = "pencil"\n')
    assert "Received Access-Accept" in good.stdout, good.stdout + good.stderr
    bad = _radclient(server.port, 'User-Name = "carol"\nUser-Password = "pen"\n')
    assert "Received Access-Reject" in bad.stdout, bad.stdout + bad.stderr


def test_config_check(tmp_path: Path) -> None:
    check = FreeRadius(tmp_path, 'carol Cleartext-Password := "pencil"\n').check()
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "Configuration appears to be OK" in check.stdout + check.stderr


@pytest.mark.parametrize(
    "name,network",
    [
        ("ttls-pap", 'eap=TTLS\nphase2="auth=PAP"'),
        ("peap-mschapv2", 'eap=PEAP\nphase2="auth=MSCHAPV2"'),
        (
            "tls13",
            'eap=TLS\nphase1="tls_disable_tlsv1_3=0"\n'
            'client_cert="{work}/carol.pem"\nprivate_key="{work}/carol.key"',
        ),
    ],
)
def test_eapol_test(freeradius: tuple[FreeRadius, Path], name: str, network: str) -> None:
    server, work = freeradius
    block = (
        "key_mgmt=IEEE8021X\n"
        + network.format(work=work)
        + '\nidentity="carol"\nanonymous_identity="anonymous"\npassword="pencil"\n'
        + f'ca_cert="{work}/ca.pem"'
    )
    result = eapol_test(block, server.port, work / f"eapol-{name}", secret=SECRET)
    assert result.success and result.mppe_ok, (
        result.output[-2000:] + "\n--- FreeRADIUS ---\n" + server.output()[-3000:]
    )


def test_threaded_mode_with_settings(tmp_path: Path) -> None:
    """``debug=False`` (``-f``, the thread pool a benchmark must measure) and a
    radiusd.conf override reach the running server."""
    with FreeRadius(
        tmp_path,
        'carol Cleartext-Password := "pencil"\n',
        secret=SECRET,
        debug=False,
        settings={"cleanup_delay": "2", "start_servers": "2"},
    ) as server:
        conf = (server.confdir / "radiusd.conf").read_text()
        assert "\ncleanup_delay = 2\n" in conf and "start_servers = 2" in conf
        good = _radclient(server.port, 'User-Name = "carol"\nUser-Password = "pencil"\n')
        assert "Received Access-Accept" in good.stdout, good.stdout + server.output()[-2000:]
