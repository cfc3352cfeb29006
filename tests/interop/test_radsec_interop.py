"""RadSec (RADIUS over TLS, RFC 6614) against software no one here wrote.

1. FreeRADIUS 3.2 as a RadSec server (``proto = tcp`` + ``tls`` with
   ``require_client_cert``): ``eapkit probe --radsec`` authenticates with PAP,
   EAP-MSCHAPv2, TTLS/PAP, PEAP, EAP-TLS 1.2/1.3; the MPPE keys FreeRADIUS sends (under
   the secret ``radsec``) must equal the MSK the peer derived; a client certificate
   from another CA is refused.
2. radsecproxy 1.9 in front of it: ``eapol_test`` -> radsecproxy (UDP) -> FreeRADIUS
   (TLS), every EAP method, ``MPPE keys OK``: proof that the harness bridges, before it
   is pointed at eapkit serve.
3. ``eapkit probe --radsec`` against eapkit serve's RadSec listener (``[radsec]``), and a
   client certificate from another CA refused there.  eapol_test through radsecproxy and
   FreeRADIUS to eapkit serve: ``test_radsec_serve_interop.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eapkit import pki
from eapkit.loadgen import LoadSpec, run_load
from eapkit.private_files import write_private
from eapkit.probe import ProbeOptions, ok, probe, radius_client
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RADSEC_SECRET, ProbeResult, RadsecError
from eapkit.radius.packet import Code
from tests.conftest import free_tcp_port
from tests.interop.radsec_tools import FreeRadiusRadsec, RadsecProxy, serve_output, wait_for_tcp
from tests.interop.tools import EapkitServe, EapolResult, eapol_test

pytestmark = pytest.mark.interop

SERVER_NAME = "radsec.freeradius.test"
PASSWORD = "wonderland"
USERS = f'alice Cleartext-Password := "{PASSWORD}"\n'
KEY_NAME = (  # FreeRADIUS derives the Session-Id but sends it only if told to
    "if (&reply:EAP-Session-Id) {",
    "    update reply {",
    "        &EAP-Key-Name := &reply:EAP-Session-Id",
    "    }",
    "}",
)


@dataclass
class Certs:
    files: pki.PkiFiles
    work: Path

    @property
    def rogue_cert(self) -> Path:
        return self.work / "rogue.pem"

    @property
    def rogue_key(self) -> Path:
        return self.work / "rogue.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    work = tmp_path_factory.mktemp("radsec-pki")
    now = dt.datetime.now(dt.UTC)
    # One CA issues the server's, the NAS's ("gateway") and the EAP user's certificates.
    files = pki.write_pki(
        work, now=now, ca_name="radsec CA", server_names=[SERVER_NAME], client_name="gateway"
    )
    ca = pki.make_ca("radsec CA", now=now)  # same name, another key: not the real CA
    rogue = pki.make_client(ca, "gateway", now=now)
    (work / "rogue.pem").write_bytes(rogue.chain_pem)
    write_private(work / "rogue.key", rogue.key_pem)
    return Certs(files, work)


@pytest.fixture(scope="module")
def freeradius(certs: Certs) -> Iterator[FreeRadiusRadsec]:
    with FreeRadiusRadsec(
        certs.work / "freeradius",
        USERS,
        ca_cert=certs.files.ca,
        server_cert=certs.files.server_cert,
        private_key=certs.files.server_key,
        default_eap_type="mschapv2",
        post_auth=KEY_NAME,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(certs: Certs, freeradius: FreeRadiusRadsec) -> Iterator[RadsecProxy]:
    with RadsecProxy(
        certs.work / "radsecproxy",
        freeradius.radsec_port,
        ca=certs.files.ca,
        cert=certs.files.client_cert,
        key=certs.files.client_key,
        server_name=SERVER_NAME,
    ) as bridge:
        yield bridge


def _opts(certs: Certs, port: int, method: str, **kw: Any) -> ProbeOptions:
    base: dict[str, Any] = {
        "server": ("127.0.0.1", port),
        "secret": RADSEC_SECRET,
        "method": method,
        "identity": "alice",
        "password": PASSWORD,
        "ca": certs.files.ca,
        "server_name": SERVER_NAME,
        "radsec": True,
        "radsec_cert": certs.files.client_cert,
        "radsec_key": certs.files.client_key,
        "radsec_ca": certs.files.ca,
        "radsec_server_name": SERVER_NAME,
    }
    if method == "tls":
        base.update(cert=certs.files.client_cert, key=certs.files.client_key)
    elif method != "mschapv2":
        base["anonymous_identity"] = "anonymous"
    base.update(kw)
    return ProbeOptions(**base)


def _accepted_with_keys(result: ProbeResult, log: str) -> None:
    explain = f"{result}\n--- server log (tail) ---\n{log[-5000:]}"
    assert ok(result), explain
    assert result.keys_match is True, explain
    assert result.peer is not None and result.peer.keys is not None
    if result.peer.keys.session_id:  # keys_match compares it only when it came back
        assert result.eap_key_name == result.peer.keys.session_id, explain


# -- 1. eapkit probe --radsec against FreeRADIUS ------------------------------------------

PROBE_ROWS = [
    ("mschapv2", {}),
    ("ttls-pap", {"tls": "1.3"}),
    ("ttls-eap-mschapv2", {"tls": "1.2"}),
    ("peap-mschapv2", {"tls": "1.2"}),
    ("tls", {"tls": "1.2"}),
    ("tls", {"tls": "1.3"}),
]


@pytest.mark.parametrize(("method", "extra"), PROBE_ROWS)
def test_probe_radsec_vs_freeradius(
    freeradius: FreeRadiusRadsec, certs: Certs, method: str, extra: dict[str, Any]
) -> None:
    result = asyncio.run(probe(_opts(certs, freeradius.radsec_port, method, **extra)))
    _accepted_with_keys(result, freeradius.output())


def test_probe_radsec_wrong_password_rejected(freeradius: FreeRadiusRadsec, certs: Certs) -> None:
    opts = _opts(certs, freeradius.radsec_port, "mschapv2", password="guess")
    result = asyncio.run(probe(opts))
    assert not ok(result)
    assert result.reply is not None and result.reply.code == Code.ACCESS_REJECT


def test_pap_over_radsec_vs_freeradius(freeradius: FreeRadiusRadsec, certs: Certs) -> None:
    """Plain PAP: User-Password hidden with the secret ``radsec`` (RFC 6614 §2.3)."""

    async def one(password: str) -> int:
        async with radius_client(_opts(certs, freeradius.radsec_port, "mschapv2")) as client:
            authenticator = bytes(range(16))
            hidden = hide_password(password.encode(), RADSEC_SECRET, authenticator)
            reply, _ = await client.request(
                [(Attr.USER_NAME, b"alice"), (Attr.USER_PASSWORD, hidden)],
                authenticator=authenticator,
            )
            return reply.code

    assert asyncio.run(one(PASSWORD)) == Code.ACCESS_ACCEPT, freeradius.output()[-4000:]
    assert asyncio.run(one("guess")) == Code.ACCESS_REJECT


def test_probe_cli_radsec(freeradius: FreeRadiusRadsec, certs: Certs, tmp_path: Path) -> None:
    """The command line: ``--radsec`` with no ``--secret`` uses ``radsec``."""
    argv = [sys.executable, "-m", "eapkit", "probe", "--radsec"]
    argv += ["--server", f"127.0.0.1:{freeradius.radsec_port}", "--method", "mschapv2"]
    argv += ["--identity", "alice", "--password-file", str(_secret_file(tmp_path))]
    argv += ["--radsec-cert", str(certs.files.client_cert)]
    argv += ["--radsec-key", str(certs.files.client_key)]
    argv += ["--radsec-ca", str(certs.files.ca), "--alpn", "radius/1.0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr + freeradius.output()[-3000:]
    assert "MPPE keys OK" in done.stdout and done.stdout.rstrip().endswith("ACCEPT")


def _secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_probe_load_over_radsec(freeradius: FreeRadiusRadsec, certs: Certs) -> None:
    opts = _opts(certs, freeradius.radsec_port, "mschapv2")
    report = run_load(opts, LoadSpec(concurrency=8, count=40))
    assert report.completed == 40 and report.accepted == 40, report.lines()


def test_client_certificate_from_another_ca_refused(
    freeradius: FreeRadiusRadsec, certs: Certs
) -> None:
    opts = _opts(
        certs,
        freeradius.radsec_port,
        "mschapv2",
        radsec_cert=certs.rogue_cert,
        radsec_key=certs.rogue_key,
    )
    with pytest.raises(RadsecError):
        asyncio.run(probe(opts))
    # and FreeRADIUS keeps serving the right one
    _accepted_with_keys(
        asyncio.run(probe(_opts(certs, freeradius.radsec_port, "mschapv2"))), freeradius.output()
    )


def test_server_certificate_name_checked(freeradius: FreeRadiusRadsec, certs: Certs) -> None:
    opts = _opts(certs, freeradius.radsec_port, "mschapv2", radsec_server_name="other.test")
    with pytest.raises(RadsecError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(probe(opts))


# -- 2. eapol_test -> radsecproxy (UDP) -> FreeRADIUS (TLS) -------------------------------

EAPOL_ROWS = [
    ("md5", "eap=MD5", True),
    ("gtc", "eap=GTC", True),
    ("mschapv2", "eap=MSCHAPV2", False),
    ("ttls-pap", 'eap=TTLS\nphase2="auth=PAP"\nanonymous_identity="anonymous"', False),
    (
        "ttls-eap-mschapv2",
        'eap=TTLS\nphase2="autheap=MSCHAPV2"\nanonymous_identity="anonymous"',
        False,
    ),
    ("peap-mschapv2", 'eap=PEAP\nphase2="auth=MSCHAPV2"\nanonymous_identity="anonymous"', False),
    ("peap-gtc", 'eap=PEAP\nphase2="auth=GTC"\nanonymous_identity="anonymous"', False),
    (
        "tls13",
        'eap=TLS\nphase1="tls_disable_tlsv1_3=0"\nclient_cert="{cert}"\nprivate_key="{key}"',
        False,
    ),
]


def _eapol(
    certs: Certs,
    port: int,
    name: str,
    network: str,
    no_mppe: bool,
    password: str = PASSWORD,
    pki_dir: Path | None = None,
) -> EapolResult:
    """eapol_test to 127.0.0.1:``port``; the EAP server's CA and alice's certificate
    come from ``pki_dir`` (eapkit serve's demo PKI) or the test PKI."""
    ca = pki_dir / "ca.pem" if pki_dir else certs.files.ca
    cert = pki_dir / "alice.pem" if pki_dir else certs.files.client_cert
    key = pki_dir / "alice.key" if pki_dir else certs.files.client_key
    block = (
        "key_mgmt=IEEE8021X\n"
        + network.format(cert=cert, key=key)
        + f'\nidentity="alice"\npassword="{password}"\nca_cert="{ca}"'
    )
    return eapol_test(block, port, certs.work / f"eapol-{name}", no_mppe=no_mppe)


@pytest.mark.parametrize(("name", "network", "no_mppe"), EAPOL_ROWS)
def test_eapol_test_through_radsecproxy_to_freeradius(
    proxy: RadsecProxy,
    freeradius: FreeRadiusRadsec,
    certs: Certs,
    name: str,
    network: str,
    no_mppe: bool,
) -> None:
    relayed = "Access-Accept for user "  # the outer name: alice or anonymous
    before = proxy.output().count(relayed)
    result = _eapol(certs, proxy.port, name, network, no_mppe)
    explain = (
        result.output[-2000:]
        + "\n--- radsecproxy ---\n"
        + proxy.output()[-2000:]
        + "\n--- FreeRADIUS ---\n"
        + freeradius.output()[-2000:]
    )
    assert result.success, explain
    assert no_mppe or result.mppe_ok, explain
    # The Accept came back over the TLS hop ("from home", the RadSec server).
    accepted = [line for line in proxy.output().splitlines() if relayed in line]
    assert len(accepted) == before + 1 and "from home to nas" in accepted[-1], explain


def test_eapol_test_through_radsecproxy_wrong_password(proxy: RadsecProxy, certs: Certs) -> None:
    result = _eapol(certs, proxy.port, "wrong", "eap=MSCHAPV2", False, password="guess")
    assert not result.success and result.access_reject, result.output[-2000:]


# -- 3. eapkit probe --radsec against eapkit serve's RadSec listener ----------------------
#
# eapol_test through radsecproxy and FreeRADIUS to eapkit serve: test_radsec_serve_interop.py.


def serve_radsec_config(certs: Certs, port: int) -> str:
    """The ``[radsec]`` table: the listener on 127.0.0.1:``port`` with the test PKI's
    server certificate, one client entry (the "gateway" certificate of that CA)."""
    return (
        "[radsec]\n"
        f'listen = ["127.0.0.1:{port}"]\n'
        f'cert = "{certs.files.server_cert}"\n'
        f'key = "{certs.files.server_key}"\n'
        "\n[[radsec.clients]]\n"
        'name = "gateway"\n'
        f'ca = "{certs.files.ca}"\n'
        'subject = "gateway"\n'
    )


@pytest.fixture(scope="module")
def eapkit_radsec(certs: Certs) -> Iterator[tuple[EapkitServe, int]]:
    work = certs.work / "serve"
    work.mkdir()
    port = free_tcp_port()
    config = work / "radsec.toml"
    config.write_text(serve_radsec_config(certs, port))
    with EapkitServe(work, extra=["--config", str(config)]) as serve:
        wait_for_tcp(port, serve)
        yield serve, port


@pytest.mark.parametrize("method", ["mschapv2", "ttls-pap", "peap-mschapv2"])
def test_probe_radsec_vs_eapkit_serve(
    eapkit_radsec: tuple[EapkitServe, int], certs: Certs, method: str
) -> None:
    serve, port = eapkit_radsec
    opts = _opts(certs, port, method, ca=serve.pki / "ca.pem", server_name=None)
    _accepted_with_keys(asyncio.run(probe(opts)), serve_output(serve))


def test_eapkit_serve_refuses_a_client_certificate_from_another_ca(
    eapkit_radsec: tuple[EapkitServe, int], certs: Certs
) -> None:
    serve, port = eapkit_radsec
    rogue = _opts(certs, port, "mschapv2", radsec_cert=certs.rogue_cert, radsec_key=certs.rogue_key)
    with pytest.raises(RadsecError):
        asyncio.run(probe(rogue))
    _accepted_with_keys(asyncio.run(probe(_opts(certs, port, "mschapv2"))), serve_output(serve))
