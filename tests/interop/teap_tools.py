"""The TEAP-enabled hostapd and eapol_test (``scripts/setup`` builds them from Debian's
``wpa`` source into ``/opt/eapkit/teap/``: Debian's own packages have no EAP-TEAP) and
what the TEAP interop tests write for them (../shared/INTEROP.md, "TEAP"):

- :func:`teap_tool` finds a binary (skip, or fail under CI, when it is missing);
- :class:`TeapPki`: a CA, the server's certificate, machine and user certificates and a
  CRL revoking one machine certificate, as PEM files;
- :func:`teap_network`: eapol_test's network block for TEAP (user and machine
  credentials, inner MS-CHAPv2 or EAP-TLS, TLS 1.2 or 1.3);
- :func:`teap_eapol_test`: eapol_test run against a RADIUS server on loopback;
- :class:`TeapHostapd`: hostapd's RADIUS/EAP server with ``eap_teap_id`` (for
  ``eapkit probe --method teap...``: test_teap_probe_vs_hostapd.py, and the chained
  login of test_teap_serve.py).

Both binaries are hostap 2.10: RFC 7170 as hostap reads it, not RFC 9930.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from eapkit import pki
from tests.conftest import IN_CI, free_udp_port
from tests.interop.tools import Daemon, EapolResult

TEAP_DIR = Path("/opt/eapkit/teap")


def teap_tool(name: str) -> Path:
    """``/opt/eapkit/teap/<name>`` (``hostapd`` or ``eapol_test``)."""
    path = TEAP_DIR / name
    if not path.is_file():
        message = f"{path} is missing: scripts/setup builds it (as root)"
        if IN_CI:
            pytest.fail(f"interop tool missing under CI: {message}")
        pytest.skip(message)
    return path


@dataclass
class TeapPki:
    """PEM files in ``directory``: ``ca``, ``server``, machine ``laptop1`` (dNSName
    laptop1.corp.example), machine ``laptop2`` (revoked in ``crl``), user ``alice``
    (e-mail alice@corp.example)."""

    directory: Path
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca("eapkit TEAP test CA", now=self.now)
        issued = {
            "server": pki.make_server(ca, ["radius.corp.example"], now=self.now),
            "laptop1": pki.make_client(
                ca, "laptop1", dns_names=["laptop1.corp.example"], now=self.now
            ),
            "laptop2": pki.make_client(
                ca, "laptop2", dns_names=["laptop2.corp.example"], now=self.now
            ),
            "alice": pki.make_client(ca, "alice", email="alice@corp.example", now=self.now),
        }
        self.write("ca.pem", ca.cert_pem)
        for name, item in issued.items():
            self.write(f"{name}.pem", item.chain_pem)
            self.write(f"{name}.key", item.key_pem)
        crl = pki.make_crl(ca, [issued["laptop2"].serial], now=self.now)
        self.write("ca.crl", pki.crl_pem(crl))

    def write(self, name: str, data: bytes) -> None:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(0o600)

    def __getitem__(self, name: str) -> Path:
        return self.directory / name


def teap_network(
    pki_files: TeapPki | Mapping[str, Path],
    *,
    identity: str | None = "alice",
    password: str | None = "wonderland",
    phase2: str | None = "MSCHAPV2",
    user_cert: str | None = None,
    machine_identity: str | None = None,
    machine_password: str | None = None,
    machine_phase2: str | None = None,
    machine_cert: str | None = None,
    tls13: bool = False,
    outer_identity: str = "anonymous",
) -> str:
    """The inside of eapol_test's ``network={...}`` for TEAP.  ``phase2`` and
    ``machine_phase2`` name the inner EAP method (``MSCHAPV2`` or ``TLS``); a ``TLS``
    one uses ``user_cert``/``machine_cert``, a name in ``pki_files`` (a
    :class:`TeapPki`, or a mapping that has at least ``ca.pem``).  hostap's TEAP
    peer does not start without a ``pac_file``: a blob does."""
    lines = [
        "key_mgmt=IEEE8021X",
        "eap=TEAP",
        f'anonymous_identity="{outer_identity}"',
        f'ca_cert="{pki_files["ca.pem"]}"',
        'pac_file="blob://teap-pac"',
        f'phase1="tls_disable_tlsv1_3={0 if tls13 else 1}"',
    ]
    if identity is not None:
        lines.append(f'identity="{identity}"')
    if password is not None:
        lines.append(f'password="{password}"')
    if phase2 is not None:
        lines.append(f'phase2="auth={phase2}"')
    if user_cert is not None:
        lines += [
            f'ca_cert2="{pki_files["ca.pem"]}"',
            f'client_cert2="{pki_files[user_cert + ".pem"]}"',
            f'private_key2="{pki_files[user_cert + ".key"]}"',
        ]
    if machine_identity is not None:
        lines.append(f'machine_identity="{machine_identity}"')
    if machine_password is not None:
        lines.append(f'machine_password="{machine_password}"')
    if machine_phase2 is not None:
        lines.append(f'machine_phase2="auth={machine_phase2}"')
    if machine_cert is not None:
        lines += [
            f'machine_ca_cert="{pki_files["ca.pem"]}"',
            f'machine_client_cert="{pki_files[machine_cert + ".pem"]}"',
            f'machine_private_key="{pki_files[machine_cert + ".key"]}"',
        ]
    return "\n".join(lines) + "\n"


def teap_eapol_test(
    network: str,
    port: int,
    workdir: Path,
    *,
    secret: str = "testing123",
    timeout: int = 15,
    extra: Sequence[str] = (),
) -> EapolResult:
    """The TEAP-enabled ``eapol_test`` with ``network`` against 127.0.0.1:``port``."""
    exe = teap_tool("eapol_test")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "eapol_test.conf"
    conf.write_text("network={\n" + network.strip() + "\n}\n")
    argv = [str(exe), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-s", secret]
    argv += ["-t", str(timeout), *extra]
    proc = subprocess.run(
        argv, capture_output=True, text=True, errors="replace", timeout=timeout + 30, check=False
    )
    (workdir / "eapol_test.log").write_text(proc.stdout + proc.stderr)
    return EapolResult(proc.returncode, proc.stdout + proc.stderr)


@dataclass
class TeapHostapd:
    """The TEAP-enabled hostapd as a RADIUS/EAP server (``driver=none``) with
    ``eap_teap_id`` (0-5) and the eap_user file ``users``; TLS 1.3 enabled; ``extra``
    lines such as ``eap_teap_auth=1`` (Basic-Password-Auth).  It binds 0.0.0.0 on the
    port but answers only the 127.0.0.1 client.

    hostapd's TEAP server refuses to start without ``pac_opaque_encr_key``,
    ``eap_fast_a_id`` and ``eap_fast_a_id_info``, lines it parses only when built with
    ``CONFIG_EAP_FAST=y``: a hostapd built without it fails the test, saying so."""

    workdir: Path
    users: str
    pki_files: TeapPki
    teap_id: int = 0
    secret: str = "testing123"
    extra: Sequence[str] = ()
    port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    def __enter__(self) -> TeapHostapd:
        exe = teap_tool("hostapd")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        (self.workdir / "eap_users").write_text(self.users)
        (self.workdir / "clients").write_text(f"127.0.0.1/32 {self.secret}\n")
        lines = [
            "driver=none",
            "interface=lo",
            "logger_stdout=-1",
            "logger_stdout_level=0",
            "eap_server=1",
            f"eap_user_file={self.workdir / 'eap_users'}",
            f"radius_server_clients={self.workdir / 'clients'}",
            f"radius_server_auth_port={self.port}",
            "radius_server_acct_port=0",
            "radius_server_ipv6=0",
            f"ca_cert={self.pki_files['ca.pem']}",
            f"server_cert={self.pki_files['server.pem']}",
            f"private_key={self.pki_files['server.key']}",
            "tls_flags=[ENABLE-TLSv1.3]",
            f"eap_teap_id={self.teap_id}",
            # hostap's TEAP server shares EAP-FAST's PAC settings
            "pac_opaque_encr_key=000102030405060708090a0b0c0d0e0f",
            "eap_fast_a_id=101112131415161718191a1b1c1d1e1f",
            "eap_fast_a_id_info=eapkit-test",
            *self.extra,
        ]
        conf = self.workdir / "hostapd.conf"
        conf.write_text("\n".join(lines) + "\n")
        try:
            self.daemon = Daemon(
                [str(exe), "-dd", str(conf)],
                self.workdir / "hostapd.log",
                ready=r"interface state \S+->ENABLED",
            )
        except RuntimeError as exc:
            if "unknown configuration item 'pac_opaque_encr_key'" in str(exc):
                pytest.fail(f"{exe} was built without CONFIG_EAP_FAST=y (see TeapHostapd)")
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()
