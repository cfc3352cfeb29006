"""``eapkit probe --method teap...`` against hostapd 2.10 rebuilt with EAP-TEAP (the
``/opt/eapkit/teap/hostapd`` that scripts/setup builds; :class:`TeapHostapd` of
teap_tools.py), a TEAP server no one here wrote, for ``eap_teap_id`` 0-5.

hostapd 2.10 implements RFC 7170 as its ``eap_teap_common.c`` reads it, so eapkit's peer
runs with ``--teap-compat rfc7170`` and the MS-MPPE keys and EAP-Key-Name hostapd sends
must equal the MSK and Session-Id the peer derived.  Two RFC 9930 differences
(:mod:`eapkit.methods.teap_keys`) show against it: with inner MS-CHAPv2 the swapped MSK
halves fail the Crypto-Binding, and with Basic-Password-Auth the advanced S-IMCK gives
another MSK.

The ``eapkit probe --method teap`` command line itself (the inner methods chosen from
the credentials given, the ``--machine-*`` flags) runs as a user runs it, in a
subprocess, at the end of this file.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from eapkit.probe import ProbeOptions, ok, probe, report
from eapkit.radius.nas import ProbeResult
from tests.interop.teap_tools import TeapHostapd, TeapPki, teap_tool

pytestmark = pytest.mark.interop

SECRET = "hostapd-secret"
SERVER_NAME = "radius.corp.example"  # TeapPki's server certificate
USERS = (
    '"alice" MSCHAPV2 "wonderland" [2]\n'
    '"host/pc1.example.org" MSCHAPV2 "machine-secret" [2]\n'
    '"alice-tls" TLS [2]\n'
    '"host/pc2.example.org" TLS [2]\n'
    "* TEAP\n"
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    teap_tool("hostapd")  # skip (fail under CI) before making the PKI
    return tmp_path_factory.mktemp("teap-hostapd")


@pytest.fixture(scope="module")
def pki_files(work: Path) -> TeapPki:
    """The CA (``ca.pem``), the server, user ``alice`` and machine ``laptop1``."""
    return TeapPki(work / "pki")


def _hostapd(workdir: Path, pki_files: TeapPki, teap_id: int, *extra: str) -> TeapHostapd:
    return TeapHostapd(workdir, USERS, pki_files, teap_id=teap_id, secret=SECRET, extra=extra)


def _probe(port: int, method: str, **kw: Any) -> tuple[bool, ProbeResult]:
    opts = ProbeOptions(
        server=("127.0.0.1", port),
        secret=SECRET.encode(),
        method=method,
        server_name=SERVER_NAME,
        **kw,
    )
    result = asyncio.run(probe(opts))
    return ok(result), result


def _machine_password() -> dict[str, Any]:
    return {"machine_identity": "host/pc1.example.org", "machine_password": "machine-secret"}


@pytest.fixture(scope="module")
def servers(work: Path, pki_files: TeapPki) -> Iterator[dict[int, TeapHostapd]]:
    with ExitStack() as stack:
        yield {n: stack.enter_context(_hostapd(work / f"id{n}", pki_files, n)) for n in range(6)}


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("teap_id", range(6))
def test_user_and_machine_mschapv2(
    servers: dict[int, TeapHostapd], pki_files: TeapPki, teap_id: int, tls: str
) -> None:
    """Each eap_teap_id: hostapd asks for the user, the machine or both (in its order);
    the peer answers with what is asked; keys and EAP-Key-Name equal hostapd's."""
    good, result = _probe(
        servers[teap_id].port,
        "teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=pki_files["ca.pem"],
        tls=tls,
        teap_compat="rfc7170",
        **_machine_password(),
    )
    assert good, result
    assert result.keys_match is True
    peer = result.peer
    assert peer is not None and peer.outcome is not None
    kinds = [proof.identity_type for proof in peer.outcome.inner]
    want = {0: ["user"], 1: ["user"], 2: ["machine"], 3: ["user"], 4: ["machine"]}
    want[5] = ["user", "machine"]  # hostapd's order
    assert kinds == want[teap_id]
    names = {"user": "alice", "machine": "host/pc1.example.org"}
    inner_lines = [line for line in report(result) if line.startswith("inner: ")]
    assert inner_lines == [f"inner: {k} {names[k]} eap-mschapv2 ok" for k in kinds]
    assert peer.keys is not None and result.eap_key_name == peer.keys.session_id


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_user_certificate_inner_eap_tls(
    servers: dict[int, TeapHostapd], pki_files: TeapPki, tls: str
) -> None:
    """Inner EAP-TLS (TLS 1.3 inside too): hostapd ends it with the Intermediate-Result,
    not the RFC 9190 commitment message, and the peer takes that as its end."""
    good, result = _probe(
        servers[1].port,
        "teap-tls",
        identity="alice-tls",
        cert=pki_files["alice.pem"],
        key=pki_files["alice.key"],
        ca=pki_files["ca.pem"],
        tls=tls,
        teap_compat="rfc7170",
    )
    assert good, result
    assert result.keys_match is True


def test_machine_certificate_inner_eap_tls(
    servers: dict[int, TeapHostapd], pki_files: TeapPki
) -> None:
    good, result = _probe(
        servers[2].port,
        "teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=pki_files["ca.pem"],
        machine_identity="host/pc2.example.org",
        machine_cert=pki_files["alice.pem"],
        machine_key=pki_files["alice.key"],
        teap_compat="rfc7170",
    )
    assert good, result
    assert result.keys_match is True
    assert result.peer is not None and result.peer.outcome is not None
    assert [(p.identity_type, p.method) for p in result.peer.outcome.inner] == [
        ("machine", "eap-tls")
    ]


@pytest.mark.parametrize(("teap_id", "accepted"), [(4, True), (2, False), (5, False)])
def test_user_only_peer(
    servers: dict[int, TeapHostapd], pki_files: TeapPki, teap_id: int, accepted: bool
) -> None:
    """Asked for the machine, a peer without machine credentials answers as the user (as
    wpa_supplicant does): eap_teap_id=4 accepts that, 2 and 5 do not."""
    good, result = _probe(
        servers[teap_id].port,
        "teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=pki_files["ca.pem"],
        teap_compat="rfc7170",
    )
    assert good is accepted, result
    if accepted:
        assert result.keys_match is True


def test_wrong_machine_password_is_rejected(
    servers: dict[int, TeapHostapd], pki_files: TeapPki
) -> None:
    good, result = _probe(
        servers[5].port,
        "teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=pki_files["ca.pem"],
        teap_compat="rfc7170",
        machine_identity="host/pc1.example.org",
        machine_password="wrong",
    )
    assert not good
    assert result.peer is not None and not result.peer.success


def test_rfc9930_inner_mschapv2_differs_from_hostapd(
    servers: dict[int, TeapHostapd], pki_files: TeapPki
) -> None:
    """RFC 9930's EAP-FAST-MSCHAPv2 IMSK (halves swapped) is not hostapd 2.10's: the
    Crypto-Binding fails, which is what the rfc7170 setting is for."""
    good, result = _probe(
        servers[1].port,
        "teap-mschapv2",
        identity="alice",
        password="wonderland",
        ca=pki_files["ca.pem"],
        teap_compat="rfc9930",
    )
    assert not good
    assert result.peer is not None and result.peer.reason == "crypto_binding_failed"


@pytest.mark.parametrize("compat", ["rfc7170", "rfc9930"])
def test_basic_password_auth(tmp_path: Path, pki_files: TeapPki, compat: str) -> None:
    """hostapd ``eap_teap_auth=1``: Basic-Password-Auth.  Its CMK is the same in both
    modes, but RFC 9930 advances S-IMCK with the zero IMSK and hostapd 2.10 does not, so
    only the rfc7170 setting derives hostapd's MSK."""
    with _hostapd(tmp_path, pki_files, 1, "eap_teap_auth=1") as server:
        good, result = _probe(
            server.port,
            "teap-password",
            identity="alice",
            password="wonderland",
            ca=pki_files["ca.pem"],
            teap_compat=compat,
        )
    assert result.eap_key_name is not None  # hostapd accepted
    assert result.keys_match is (compat == "rfc7170")
    assert good is (compat == "rfc7170")


def test_sha384_cipher_suite(tmp_path: Path, pki_files: TeapPki) -> None:
    """A ``*_SHA384`` suite: TEAP's PRF and Compound MAC use SHA-384 (hostapd's
    ``tls_cipher_suite_mac_sha384``), two inner methods chained."""
    ciphers = "openssl_ciphers=ECDHE-ECDSA-AES256-GCM-SHA384"
    with _hostapd(tmp_path, pki_files, 5, ciphers) as server:
        good, result = _probe(
            server.port,
            "teap-mschapv2",
            identity="alice",
            password="wonderland",
            ca=pki_files["ca.pem"],
            tls="1.2",
            teap_compat="rfc7170",
            machine_identity="host/pc2.example.org",
            machine_cert=pki_files["alice.pem"],
            machine_key=pki_files["alice.key"],
        )
    assert good, result
    assert result.keys_match is True
    assert result.peer is not None and result.peer.outcome is not None
    assert result.peer.outcome.attributes["tls_cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384"


# -- ``eapkit probe --method teap``: the command line, as a user runs it -----------------------


def _cli(server: TeapHostapd, pki_files: TeapPki, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "eapkit", "probe", "--server", f"127.0.0.1:{server.port}"]
    argv += ["--secret", SECRET, "--ca", str(pki_files["ca.pem"]), "--server-name", SERVER_NAME]
    argv += ["--teap-compat", "rfc7170", "--method", "teap", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _printed(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The ``name: value`` lines the probe printed (the last of each name)."""
    return dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)


def _assert_accepted_with_hostapds_keys(out: subprocess.CompletedProcess[str]) -> None:
    """Exit 0, an Access-Accept, and the MSK the peer printed is the one hostapd sent
    in MS-MPPE-Recv-Key/-Send-Key (RFC 2548; MSK[0:32], MSK[32:64]), the Session-Id
    its EAP-Key-Name: the probe's own ``MPPE keys OK`` verdict is checked here again."""
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("RADIUS reply: Access-Accept"), out.stdout
    assert lines[-2:] == ["MPPE keys OK", "ACCEPT"]
    printed = _printed(out)
    msk = printed["MSK"]
    assert len(msk) == 128 and msk != "00" * 64
    assert (printed["MS-MPPE-Recv-Key"], printed["MS-MPPE-Send-Key"]) == (msk[:64], msk[64:])
    assert printed["EAP-Key-Name"] == printed["Session-Id"]


def _inner(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stdout.splitlines() if line.startswith("inner: ")]


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_cli_teap_machine_password_and_user_password(
    servers: dict[int, TeapHostapd], pki_files: TeapPki, tls: str
) -> None:
    """eap_teap_id=5: the user (``--password``: inner EAP-MSCHAPv2), then the machine
    (``--machine-identity``/``--machine-password``) in one conversation."""
    out = _cli(
        servers[5],
        pki_files,
        *("--identity", "alice", "--password", "wonderland", "--tls", tls),
        *("--machine-identity", "host/pc1.example.org", "--machine-password", "machine-secret"),
    )
    _assert_accepted_with_hostapds_keys(out)
    assert _inner(out) == [
        "inner: user alice eap-mschapv2 ok",
        "inner: machine host/pc1.example.org eap-mschapv2 ok",
    ]


def test_cli_teap_machine_password_alone(
    servers: dict[int, TeapHostapd], pki_files: TeapPki
) -> None:
    """No user credentials: a machine-only peer, which eap_teap_id=2 accepts."""
    out = _cli(
        servers[2],
        pki_files,
        *("--identity", "host/pc1.example.org"),
        *("--machine-identity", "host/pc1.example.org", "--machine-password", "machine-secret"),
    )
    _assert_accepted_with_hostapds_keys(out)
    assert _inner(out) == ["inner: machine host/pc1.example.org eap-mschapv2 ok"]


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_cli_teap_machine_certificate_and_user_password(
    servers: dict[int, TeapHostapd], pki_files: TeapPki, tls: str
) -> None:
    """``--machine-cert``/``--machine-key``: the machine's inner EAP-TLS, after the
    user's EAP-MSCHAPv2 (eap_teap_id=5)."""
    out = _cli(
        servers[5],
        pki_files,
        *("--identity", "alice", "--password", "wonderland", "--tls", tls),
        *("--machine-identity", "host/pc2.example.org"),
        *("--machine-cert", str(pki_files["laptop1.pem"])),
        *("--machine-key", str(pki_files["laptop1.key"])),
    )
    _assert_accepted_with_hostapds_keys(out)
    assert _inner(out) == [
        "inner: user alice eap-mschapv2 ok",
        "inner: machine host/pc2.example.org eap-tls ok",
    ]


def test_cli_teap_user_certificate(servers: dict[int, TeapHostapd], pki_files: TeapPki) -> None:
    """``--cert``/``--key`` instead of ``--password``: the user's inner EAP-TLS."""
    out = _cli(
        servers[1],
        pki_files,
        *("--identity", "alice-tls", "--cert", str(pki_files["alice.pem"])),
        *("--key", str(pki_files["alice.key"])),
    )
    _assert_accepted_with_hostapds_keys(out)
    assert _inner(out) == ["inner: user alice-tls eap-tls ok"]


def test_cli_teap_wrong_machine_password_is_rejected(
    servers: dict[int, TeapHostapd], pki_files: TeapPki
) -> None:
    """The right user and a wrong machine password: hostapd rejects the whole login
    (the user's inner method passed, the machine's failed), the probe exits 1 and
    prints no keys."""
    out = _cli(
        servers[5],
        pki_files,
        *("--identity", "alice", "--password", "wonderland"),
        *("--machine-identity", "host/pc1.example.org", "--machine-password", "not-it"),
    )
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("RADIUS reply: Access-Reject"), out.stdout
    assert lines[-1] == "REJECT"
    assert lines[1].startswith("EAP: FAILURE method=TEAP"), out.stdout
    assert _inner(out) == [
        "inner: user alice eap-mschapv2 ok",
        "inner: machine host/pc1.example.org eap-mschapv2 failed",
    ]
    assert not {"MSK", "MS-MPPE-Recv-Key", "EAP-Key-Name"} & _printed(out).keys()
