"""The two policy examples of docs/teap.md, read from the page as written, each run as
one TEAP conversation (RFC 9930 §3.6: a user and a machine inner method in one tunnel)
through ``eapkit serve``'s core (:func:`eapkit.serve.build_core` on a loopback port)
with eapkit's own peer (``eapkit probe``'s :func:`eapkit.probe.probe`):

- machine certificate + user password + TOTP (inner EAP-TLS for the machine,
  Basic-Password-Auth with the code in a second prompt for the user);
- user certificate + machine certificate (inner EAP-TLS twice).

Each accept must show both identities and what each proved in the decision log line;
each part missing or wrong must end in an Access-Reject with its reason (issue 19).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eapkit.check import check_config, errors_of
from eapkit.directory import LocalDirectory
from eapkit.probe import ProbeOptions, probe
from eapkit.radius.clients import Client
from eapkit.radius.nas import ProbeResult
from eapkit.serve import ServeConfig, build_core, open_second_factors
from eapkit.verify.otp import OtpCredential, totp
from tests.interop.teap_tools import TeapPki
from tests.radius.test_server import running

DOC = Path(__file__).resolve().parent.parent / "docs" / "teap.md"
SECRET = "teap-examples-secret"
OTP_SECRET = bytes(range(20))
SERVER_NAME = "radius.corp.example"  # TeapPki's server certificate
MACHINE = "host/laptop1.corp.example"  # TeapPki's laptop1: dNSName laptop1.corp.example


def doc_example(title: str) -> dict[str, Any]:
    """The TOML block under ``### Example: <title>`` in docs/teap.md, parsed."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"^### Example: {re.escape(title)}\n.*?```toml\n(.*?)```", text, re.M | re.S)
    assert found is not None, f"docs/teap.md has no example {title!r}"
    return tomllib.loads(found.group(1))


CERT_PASSWORD_OTP = "machine certificate + user password + TOTP"
CERT_CERT = "user certificate + machine certificate"


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> TeapPki:
    return TeapPki(tmp_path_factory.mktemp("teap-examples-pki"))


@dataclass
class Login:
    result: ProbeResult
    line: dict[str, Any]  # the decision log's line

    @property
    def accepted(self) -> bool:
        return self.result.accepted

    def inner(self) -> list[tuple[str, str, str, bool, list[str]]]:
        return [
            (i["type"], i["identity"], i["method"], i["success"], i["factors"])
            for i in self.line["inner"]
        ]


def login(workdir: Path, pki_files: TeapPki, example: str, **peer: Any) -> Login:
    """One TEAP conversation against a server configured with ``example`` (plus the
    server's certificate files and ``methods = ["teap"]``), users alice, tom (TOTP)
    and the machine account of laptop1."""
    data = doc_example(example)
    data["methods"] = ["teap"]
    data["tls"] = {
        **data.get("tls", {}),
        "cert": str(pki_files["server.pem"]),
        "key": str(pki_files["server.key"]),
        "ca": str(pki_files["ca.pem"]),
        "crl": [str(pki_files["ca.crl"])],
    }
    cfg = ServeConfig.from_dict(data)
    cfg.db = workdir / "eapkit.db"
    cfg.clients = [Client.of("127.0.0.1/32", SECRET)]
    assert errors_of(check_config(cfg, dt.datetime.now(dt.UTC))) == []  # `eapkit check`
    users = LocalDirectory(cfg.db)
    users.add("alice", "wonderland", iterations=1000)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    for machine in (MACHINE, "host/laptop2.corp.example"):
        users.add(machine, "unused-machine-password", iterations=1000)
    log = io.StringIO()
    core = build_core(cfg, users, log_stream=log)
    open_second_factors(cfg, users).totp.enroll("tom", OtpCredential(OTP_SECRET), time.time() - 60)
    with running(core) as addr:
        opts = ProbeOptions(
            server=addr,
            secret=SECRET.encode(),
            ca=pki_files["ca.pem"],
            server_name=SERVER_NAME,
            timeout=5.0,
            **peer,
        )
        result = asyncio.run(probe(opts))
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    assert len(lines) == 1, lines
    return Login(result, lines[0])


def machine_cert(pki_files: TeapPki, name: str = "laptop1") -> dict[str, Any]:
    return {
        "machine_identity": f"host/{name}",
        "machine_cert": pki_files[f"{name}.pem"],
        "machine_key": pki_files[f"{name}.key"],
    }


def tom(code: str | None = None) -> dict[str, Any]:
    """Tom through Basic-Password-Auth: the password, then the code at the second prompt."""
    return {
        "method": "teap-password",
        "identity": "tom",
        "password": "pencil",
        "otp": code or totp(OTP_SECRET, time.time()),
    }


# -- machine certificate + user password + TOTP ----------------------------------------------


def test_machine_certificate_user_password_and_totp(tmp_path: Path, pki_files: TeapPki) -> None:
    done = login(tmp_path, pki_files, CERT_PASSWORD_OTP, **tom(), **machine_cert(pki_files))
    assert done.accepted, done.line
    assert done.result.keys_match is True
    assert (done.line["result"], done.line["reason"]) == ("accept", "ok")
    assert (done.line["user"], done.line["machine"]) == ("tom", MACHINE)
    assert done.inner() == [  # the user first, then the machine (hostapd's order)
        ("user", "tom", "basic-password", True, ["otp_device", "password"]),
        ("machine", "host/laptop1", "eap-tls", True, ["machine_certificate"]),
    ]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong-code", "bad_code"),
        ("wrong-password", "bad_password"),
        ("no-machine", "identity_type_missing"),
        ("revoked-machine", "certificate_revoked"),
        ("no-code", "teap_rule"),
    ],
)
def test_machine_certificate_user_password_and_totp_refused(
    tmp_path: Path, pki_files: TeapPki, case: str, reason: str
) -> None:
    """Each part wrong or missing: an Access-Reject with that part's reason."""
    peer = {**tom(), **machine_cert(pki_files)}
    if case == "wrong-code":
        peer["otp"] = f"{(int(totp(OTP_SECRET, time.time())) + 1) % 10**6:06d}"
    elif case == "wrong-password":
        peer["password"] = "crayon"
    elif case == "no-machine":
        del peer["machine_identity"], peer["machine_cert"], peer["machine_key"]
    elif case == "revoked-machine":
        peer.update(machine_cert(pki_files, "laptop2"))
    else:  # alice has no second factor: her password passes, the example's rule does not
        peer.update(identity="alice", password="wonderland", otp=None)
    done = login(tmp_path, pki_files, CERT_PASSWORD_OTP, **peer)
    assert not done.accepted
    assert done.result.reply is not None and done.result.reply.code == 3  # Access-Reject
    assert (done.line["result"], done.line["reason"]) == ("reject", reason)
    user_ok = ("user", "tom", "basic-password", True, ["otp_device", "password"])
    laptop1_ok = ("machine", "host/laptop1", "eap-tls", True, ["machine_certificate"])
    expected = {
        "wrong-code": [("user", "tom", "basic-password", False, [])],
        "wrong-password": [("user", "tom", "basic-password", False, [])],
        # asked for the machine, the peer answered as the user: no machine identity
        "no-machine": [user_ok, ("machine", "", "eap-tls", False, [])],
        "revoked-machine": [user_ok, ("machine", "host/laptop2", "eap-tls", False, [])],
        "no-code": [("user", "alice", "basic-password", True, ["password"]), laptop1_ok],
    }
    assert done.inner() == expected[case]


# -- user certificate + machine certificate --------------------------------------------------


def alice_cert(pki_files: TeapPki, name: str = "alice") -> dict[str, Any]:
    return {
        "method": "teap-tls",
        "identity": "alice",
        "cert": pki_files[f"{name}.pem"],
        "key": pki_files[f"{name}.key"],
    }


def test_user_certificate_and_machine_certificate(tmp_path: Path, pki_files: TeapPki) -> None:
    done = login(tmp_path, pki_files, CERT_CERT, **alice_cert(pki_files), **machine_cert(pki_files))
    assert done.accepted, done.line
    assert done.result.keys_match is True
    assert (done.line["result"], done.line["reason"]) == ("accept", "ok")
    # the user is the certificate's (e-mail alice@corp.example, [tls] identity/realms)
    assert (done.line["user"], done.line["machine"]) == ("alice", MACHINE)
    assert done.inner() == [
        ("user", "alice", "eap-tls", True, ["certificate"]),
        ("machine", "host/laptop1", "eap-tls", True, ["machine_certificate"]),
    ]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-machine", "identity_type_missing"),
        ("revoked-machine", "certificate_revoked"),
        ("one-certificate-twice", "identity_reused"),
    ],
)
def test_user_certificate_and_machine_certificate_refused(
    tmp_path: Path, pki_files: TeapPki, case: str, reason: str
) -> None:
    peer = {**alice_cert(pki_files), **machine_cert(pki_files)}
    if case == "no-machine":
        del peer["machine_identity"], peer["machine_cert"], peer["machine_key"]
    elif case == "revoked-machine":
        peer.update(machine_cert(pki_files, "laptop2"))
    else:  # the machine's certificate as the user's too: one credential is not both
        peer.update(alice_cert(pki_files, "laptop1"))
    done = login(tmp_path, pki_files, CERT_CERT, **peer)
    assert not done.accepted
    assert done.result.reply is not None and done.result.reply.code == 3  # Access-Reject
    assert (done.line["result"], done.line["reason"]) == ("reject", reason)
    machine = {"no-machine": "", "revoked-machine": "host/laptop2"}.get(case, "host/laptop1")
    assert done.inner() == [
        ("user", "alice", "eap-tls", True, ["certificate"]),
        ("machine", machine, "eap-tls", False, []),
    ]
