"""EAP-TEAP interop: hostap's ``eapol_test`` 2.10, built with TEAP by ``scripts/setup``
(/opt/eapkit/teap), as the peer against ``eapkit serve`` started as a real process
(issue 19).

Each success must come with eapol_test's own verdict on the keys, ``MPPE keys OK``: the
MS-MPPE keys eapkit sent equal the MSK hostap derived.  hostap implements RFC 7170 as
it reads it, so every success row runs ``[teap] compat = "rfc7170"``; the two RFC 9930
rows show why (inner MS-CHAPv2: the crypto-binding fails, hostap reports Error 2001;
inner EAP-TLS: the tunnel passes but the final MSK differs).  A TOTP user proves password
and code through Basic-Password-Auth, and is refused through inner MS-CHAPv2.  The
failures end in an Access-Reject with the reason in eapkit's decision log.

A machine and a user in one conversation (``identity = "machine_and_user"``, hostapd's
eap_teap_id 5: the user, then the machine) needs the next inner method to start only
after the peer's Crypto-Binding answer: hostap starts it first and then fails the MSK
Compound MAC (found here; the method waits since, docs/teap.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.interop.teap_tools import (
    TeapHostapd,
    TeapPki,
    teap_eapol_test,
    teap_network,
    teap_tool,
)
from tests.interop.tools import EapkitServe, EapolResult

pytestmark = pytest.mark.interop

USERS = (
    ("alice", "wonderland"),
    ("tom", "pencil"),  # enrolled for TOTP on the servers of TOTP_SERVERS
    ("bob", "builder"),
    ("host/kiosk", "kiosk-password"),  # a machine account with a password
    ("host/laptop1.corp.example", "unused-machine-password"),  # machine certificates'
    ("host/laptop2.corp.example", "unused-machine-password"),  # accounts (laptop2 revoked)
)

SERVERS = {
    "user-mschapv2": 'compat = "rfc7170"',
    "user-mschapv2-rfc9930": 'compat = "rfc9930"',
    "user-basic-password": 'compat = "rfc7170"\nuser_inner = "basic-password"',
    "user-basic-password-rfc9930": 'compat = "rfc9930"\nuser_inner = "basic-password"',
    "user-basic-password-rule": (
        'compat = "rfc7170"\nuser_inner = "basic-password"\n'
        '[[teap.rules]]\nuser = ["password", "otp_device"]'
    ),
    "user-tls": 'compat = "rfc7170"\nuser_inner = "eap-tls"',
    "user-tls-rfc9930": 'compat = "rfc9930"\nuser_inner = "eap-tls"',
    "machine-mschapv2": 'compat = "rfc7170"\nidentity = "machine"\nmachine_inner = "eap-mschapv2"',
    "machine-tls": 'compat = "rfc7170"\nidentity = "machine"\nmachine_inner = "eap-tls"',
    "machine-and-user": (
        'compat = "rfc7170"\nidentity = "machine_and_user"\nmachine_inner = "eap-mschapv2"'
    ),
    "machine-and-user-bound": (
        'compat = "rfc7170"\nidentity = "machine_and_user"\nmachine_inner = "eap-mschapv2"\n'
        '[[teap.bindings]]\nusers = ["alice"]\nmachines = ["host/laptop1.*"]\n'
        '[[teap.bindings]]\nusers = ["bob"]\nmachines = ["host/kiosk"]'
    ),
    "machine-tls-and-user": (
        'compat = "rfc7170"\nidentity = "machine_and_user"\nmachine_inner = "eap-tls"'
    ),
}


TOTP_SERVERS = ("user-mschapv2", "user-basic-password")
TOTP_SECRETS: dict[str, str] = {}  # server name -> tom's TOTP secret (base32)


def _enroll_totp(workdir: Path, name: str) -> str:
    db = str(workdir / "eapkit.db")
    out = subprocess.run(
        [sys.executable, "-m", "eapkit", "enroll", "totp", name, "--no-terminal", "--db", db],
        capture_output=True,
        text=True,
        check=True,
        cwd=workdir,
    )
    found = re.search(r"secret=([A-Z2-7]+)", out.stdout)
    assert found is not None, out.stdout
    return found.group(1)


def _totp(secret: str) -> str:
    exe = require_tool("oathtool")["oathtool"]
    out = subprocess.run([exe, "--totp", "-b", secret], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> TeapPki:
    teap_tool("eapol_test")  # skip (fail under CI) before any server starts
    return TeapPki(tmp_path_factory.mktemp("teap-pki"))


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, pki_files: TeapPki
) -> Iterator[Callable[[str], EapkitServe]]:
    """``servers(name)``: eapkit serve with ``[teap]`` of SERVERS[name], started once."""
    started: dict[str, EapkitServe] = {}
    with ExitStack() as stack:

        def get(name: str) -> EapkitServe:
            if name not in started:
                workdir = tmp_path_factory.mktemp(f"serve-{name}")
                conf = workdir / "serve.toml"
                conf.write_text(
                    f"""methods = ["teap"]

[tls]
cert = "{pki_files["server.pem"]}"
key = "{pki_files["server.key"]}"
ca = "{pki_files["ca.pem"]}"
crl = ["{pki_files["ca.crl"]}"]
realms = ["corp.example"]

[teap]
{SERVERS[name]}
"""
                )
                started[name] = stack.enter_context(
                    EapkitServe(workdir, users=USERS, extra=["--config", str(conf)])
                )
                if name in TOTP_SERVERS:
                    TOTP_SECRETS[name] = _enroll_totp(workdir, "tom")
            return started[name]

        yield get


def _run(srv: EapkitServe, network: str, workdir: Path) -> tuple[EapolResult, dict[str, Any]]:
    before = len(srv.decisions)
    result = teap_eapol_test(network, srv.port, workdir)
    lines = srv.decisions[before:]
    assert len(lines) == 1, (lines, result.output[-2000:])
    return result, lines[0]


def _accepted(result: EapolResult, line: dict[str, Any]) -> None:
    assert result.success, (line, result.output[-3000:])
    assert result.mppe_ok, result.output[-3000:]
    assert (line["result"], line["reason"], line["method"]) == ("accept", "ok", "TEAP")


def _rejected(result: EapolResult, line: dict[str, Any], reason: str) -> None:
    assert not result.success and result.access_reject, result.output[-3000:]
    assert (line["result"], line["reason"]) == ("reject", reason), line


TLS = pytest.mark.parametrize("tls13", [False, True], ids=["tls12", "tls13"])


# -- one identity ---------------------------------------------------------------------------


@TLS
def test_user_only_inner_mschapv2(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path, tls13: bool
) -> None:
    result, line = _run(servers("user-mschapv2"), teap_network(pki_files, tls13=tls13), tmp_path)
    _accepted(result, line)
    assert line["user"] == "alice" and line["machine"] == ""
    assert line["tls_version"] == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert line["inner"] == [
        {
            "type": "user",
            "identity": "alice",
            "method": "eap-mschapv2",
            "success": True,
            "factors": ["password"],
        }
    ]


@TLS
def test_user_only_inner_eap_tls(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path, tls13: bool
) -> None:
    network = teap_network(pki_files, password=None, phase2="TLS", user_cert="alice", tls13=tls13)
    result, line = _run(servers("user-tls"), network, tmp_path)
    _accepted(result, line)
    # the user is named by the certificate (alice@corp.example, realm corp.example)
    assert line["user"] == "alice"
    assert line["inner"][0]["factors"] == ["certificate"]


@TLS
def test_machine_only_inner_eap_tls(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path, tls13: bool
) -> None:
    network = teap_network(
        pki_files,
        identity=None,
        password=None,
        phase2=None,
        machine_identity="host/laptop1",
        machine_phase2="TLS",
        machine_cert="laptop1",
        tls13=tls13,
    )
    result, line = _run(servers("machine-tls"), network, tmp_path)
    _accepted(result, line)
    # the machine account is named by the certificate's dNSName, not by what it said
    assert line["user"] == line["machine"] == "host/laptop1.corp.example"
    assert line["inner"][0]["factors"] == ["machine_certificate"]


def test_machine_only_inner_mschapv2(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    network = teap_network(
        pki_files,
        identity=None,
        password=None,
        phase2=None,
        machine_identity="host/kiosk",
        machine_password="kiosk-password",
        machine_phase2="MSCHAPV2",
    )
    result, line = _run(servers("machine-mschapv2"), network, tmp_path)
    _accepted(result, line)
    assert line["user"] == line["machine"] == "host/kiosk"


# -- a user's second factor: password + TOTP through Basic-Password-Auth ----------------------


def test_password_and_totp_through_basic_password_auth(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    srv = servers("user-basic-password")
    code = _totp(TOTP_SECRETS["user-basic-password"])
    network = teap_network(pki_files, identity="tom", password="pencil" + code, phase2=None)
    result, line = _run(srv, network, tmp_path / "ok")
    _accepted(result, line)
    assert line["user"] == "tom"
    assert line["inner"][0]["factors"] == ["otp_device", "password"]
    # the same code again is a replay; the password alone is not enough for tom
    result, line = _run(srv, network, tmp_path / "replay")
    _rejected(result, line, "replayed")
    alone = teap_network(pki_files, identity="tom", password="pencil", phase2=None)
    result, line = _run(srv, alone, tmp_path / "alone")
    assert not result.success and line["result"] == "reject", line


def test_inner_mschapv2_cannot_carry_the_second_factor(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    srv = servers("user-mschapv2")
    network = teap_network(pki_files, identity="tom", password="pencil")
    result, line = _run(srv, network, tmp_path)
    _rejected(result, line, "second_factor_required")


def test_a_rule_asking_for_a_code_refuses_a_password_alone(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    """alice has no second factor of her own; the [[teap.rules]] entry still asks one."""
    network = teap_network(pki_files, phase2=None)
    result, line = _run(servers("user-basic-password-rule"), network, tmp_path)
    _rejected(result, line, "teap_rule")


# -- a machine and a user ---------------------------------------------------------------------


@TLS
def test_machine_password_and_user_password(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path, tls13: bool
) -> None:
    network = teap_network(
        pki_files,
        machine_identity="host/kiosk",
        machine_password="kiosk-password",
        machine_phase2="MSCHAPV2",
        tls13=tls13,
    )
    result, line = _run(servers("machine-and-user"), network, tmp_path)
    _accepted(result, line)
    assert (line["user"], line["machine"]) == ("alice", "host/kiosk")
    assert [i["type"] for i in line["inner"]] == ["user", "machine"]


@TLS
def test_machine_certificate_and_user_password(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path, tls13: bool
) -> None:
    network = teap_network(
        pki_files,
        machine_identity="host/laptop1",
        machine_phase2="TLS",
        machine_cert="laptop1",
        tls13=tls13,
    )
    result, line = _run(servers("machine-tls-and-user"), network, tmp_path)
    _accepted(result, line)
    assert (line["user"], line["machine"]) == ("alice", "host/laptop1.corp.example")


def test_bindings_say_which_machines_a_user_logs_in_from(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    srv = servers("machine-and-user-bound")

    def kiosk(identity: str = "alice", password: str = "wonderland") -> str:
        return teap_network(
            pki_files,
            identity=identity,
            password=password,
            machine_identity="host/kiosk",
            machine_password="kiosk-password",
            machine_phase2="MSCHAPV2",
        )

    network = kiosk(identity="bob", password="builder")
    result, line = _run(srv, network, tmp_path / "bob")
    _accepted(result, line)
    assert (line["user"], line["machine"]) == ("bob", "host/kiosk")
    # alice's binding names her laptop only: both proofs succeed, the login does not
    result, line = _run(srv, kiosk(), tmp_path / "alice")
    _rejected(result, line, "machine_binding")
    assert [(i["type"], i["success"]) for i in line["inner"]] == [
        ("user", True),
        ("machine", True),
    ]


# -- failures: each an Access-Reject with its reason -------------------------------------------


def test_wrong_machine_password_with_right_user(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    network = teap_network(
        pki_files,
        machine_identity="host/kiosk",
        machine_password="not-the-kiosk-password",
        machine_phase2="MSCHAPV2",
    )
    result, line = _run(servers("machine-and-user"), network, tmp_path)
    _rejected(result, line, "bad_password")
    user, machine = line["inner"]
    assert (user["identity"], user["success"]) == ("alice", True)
    assert machine == {
        "type": "machine",
        "identity": "host/kiosk",
        "method": "eap-mschapv2",
        "success": False,
        "factors": [],
    }


def test_revoked_machine_certificate(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    network = teap_network(
        pki_files,
        identity=None,
        password=None,
        phase2=None,
        machine_identity="host/laptop2",
        machine_phase2="TLS",
        machine_cert="laptop2",
    )
    result, line = _run(servers("machine-tls"), network, tmp_path)
    _rejected(result, line, "certificate_revoked")


def test_missing_required_identity_type(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    """The server requires a machine; the peer has only a user's credentials."""
    result, line = _run(servers("machine-and-user"), teap_network(pki_files), tmp_path)
    _rejected(result, line, "identity_type_missing")


@pytest.mark.parametrize("tamper", [False, True], ids=["intact", "tampered"])
def test_tampered_crypto_binding_through_radius(
    servers: Callable[[str], EapkitServe],
    pki_files: TeapPki,
    monkeypatch: pytest.MonkeyPatch,
    tamper: bool,
) -> None:
    """eapkit's own peer (hostap cannot be made to tamper) through a running eapkit serve
    over RADIUS: one bit of the MSK Compound MAC flipped is an Access-Reject with reason
    ``crypto_binding_failed``; the same login intact is accepted (RFC 9930 §4.2.13)."""
    import asyncio
    from dataclasses import replace

    from eapkit.methods.teap_peer import TeapPeer
    from eapkit.probe import ProbeOptions, probe

    if tamper:
        bind = TeapPeer._bind

        def tampered(self: TeapPeer, request: Any) -> Any:
            response = bind(self, request)
            if isinstance(response, str):
                return response
            return replace(
                response, msk_mac=bytes([response.msk_mac[0] ^ 1]) + response.msk_mac[1:]
            )

        monkeypatch.setattr(TeapPeer, "_bind", tampered)
    srv = servers("user-mschapv2-rfc9930")
    before = len(srv.decisions)
    opts = ProbeOptions(
        server=("127.0.0.1", srv.port),
        secret=srv.secret.encode(),
        method="teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=Path(pki_files["ca.pem"]),
        timeout=10.0,
    )
    result = asyncio.run(probe(opts))
    lines = srv.decisions[before:]
    assert len(lines) == 1, lines
    if tamper:
        assert not result.accepted
        assert (lines[0]["result"], lines[0]["reason"]) == ("reject", "crypto_binding_failed")
    else:
        assert result.accepted and result.keys_match is not False
        assert (lines[0]["result"], lines[0]["reason"]) == ("accept", "ok")


# -- why hostap needs compat = "rfc7170" ---------------------------------------------------------


def test_rfc9930_inner_mschapv2_fails_hostaps_crypto_binding(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    """RFC 9930 swaps the inner MS-CHAPv2 MSK halves (EAP-FAST's order); hostap 2.10
    does not, so the Crypto-Binding's compound MAC differs and hostap reports Error
    2001 (tunnel compromise)."""
    result, line = _run(servers("user-mschapv2-rfc9930"), teap_network(pki_files), tmp_path)
    _rejected(result, line, "crypto_binding_failed")


def test_rfc9930_basic_password_auth_gives_hostap_another_msk(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    """RFC 9930 §6.2 advances S-IMCK with an all-zero IMSK after Basic-Password-Auth;
    hostap 2.10 leaves S-IMCK where it was, so the final MSKs differ."""
    network = teap_network(pki_files, phase2=None)
    result, line = _run(servers("user-basic-password-rfc9930"), network, tmp_path)
    assert line["result"] == "accept"
    assert not result.success and not result.mppe_ok
    assert "mismatch: 1" in result.output


def test_rfc9930_inner_eap_tls_gives_hostap_another_msk(
    servers: Callable[[str], EapkitServe], pki_files: TeapPki, tmp_path: Path
) -> None:
    """RFC 9930 §6.4 takes the final MSK from the EMSK chain when the last
    Crypto-Binding carried an EMSK Compound MAC (inner EAP-TLS has an EMSK); hostap 2.10
    always from the MSK chain.  Both ends finish the tunnel, but the MPPE keys eapkit
    sends are not the MSK hostap derived."""
    network = teap_network(pki_files, password=None, phase2="TLS", user_cert="alice")
    result, line = _run(servers("user-tls-rfc9930"), network, tmp_path)
    assert line["result"] == "accept"
    assert not result.success and not result.mppe_ok
    assert "mismatch: 1" in result.output


# -- the build itself ---------------------------------------------------------------------------


def test_the_teap_build_hostap_against_hostap(pki_files: TeapPki, tmp_path: Path) -> None:
    """scripts/setup's two binaries against each other (eap_teap_id 5, machine and user
    with MS-CHAPv2): what the rows above compare eapkit with."""
    users = (
        '* TEAP\n"alice" MSCHAPV2 "wonderland" [2]\n"host/kiosk" MSCHAPV2 "kiosk-password" [2]\n'
    )
    with TeapHostapd(tmp_path / "hostapd", users, pki_files, teap_id=5) as server:
        network = teap_network(
            pki_files,
            machine_identity="host/kiosk",
            machine_password="kiosk-password",
            machine_phase2="MSCHAPV2",
        )
        result = teap_eapol_test(network, server.port, tmp_path / "eapol")
    assert result.success and result.mppe_ok, result.output[-3000:]
