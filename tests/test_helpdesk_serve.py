"""``eapkit bypass``, ``reset`` and ``approve`` end to end against ``eapkit serve`` (a real
process) and ``radclient``: a bypass code is accepted as the second factor after the
password within its scope and refused outside it (expired, used up, wrong NAS, wrong
method); a reset approved by a second administrator removes the factor, and the
one-time link, fetched over HTTP, enrolls a new authenticator app that then logs in.
Bad input is refused with a clear message and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from eapkit.verify.otp import b32_secret, totp
from tests.conftest import free_tcp_port, require_tool
from tests.security.conftest import Served, start_served

SECRET = "testing123"


def eapkit(
    work: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eapkit", *args, "--config", str(work / "eapkit.toml")],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("bypass")
    toml = (
        'methods = ["ttls", "gtc"]\n'
        '[[clients]]\naddress = "192.0.2.1/32"\nsecret = "another-secret-0123"\nname = "vpn-2"\n'
        '[admin]\nadministrators = ["ada", "grace"]\n'
    )
    srv = start_served(work, toml, users=(("tom", "pencil"), ("nina", "paper")), secret=SECRET)
    try:
        out = eapkit(work, "enroll", "totp", "tom", "--no-terminal")
        assert out.returncode == 0, out.stderr
        yield srv
    finally:
        srv.stop()


def pap(port: int, user: str, password: str) -> str:
    exe = require_tool("radclient")["radclient"]
    attrs = f'User-Name = "{user}"\nUser-Password = "{password}"\nMessage-Authenticator = 0x00\n'
    out = subprocess.run(
        [exe, "-x", "-r", "1", "-t", "3", f"127.0.0.1:{port}", "auth", SECRET],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    for kind in ("Access-Accept", "Access-Reject", "Access-Challenge"):
        if f"Received {kind}" in out.stdout:
            return kind
    raise AssertionError(out.stdout + out.stderr)


def bypass(server: Served, *args: str, by: str = "ada") -> str:
    out = eapkit(server.workdir, "bypass", *args, env={"EAPKIT_ADMIN": by})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def decisions(server: Served, event: str) -> list[dict[str, object]]:
    return [d for d in server.decisions() if d.get("event") == event]


def test_within_scope_accepted_once_and_logged(server: Served) -> None:
    code = bypass(server, "tom", "--reason", "lost phone #1", "--client", "test-nas")
    assert pap(server.port, "tom", "pencil") == "Access-Challenge"  # needs the code
    assert pap(server.port, "tom", "wrong" + code) == "Access-Reject"  # not the password
    assert pap(server.port, "tom", "pencil" + code) == "Access-Accept"
    assert pap(server.port, "tom", "pencil" + code) == "Access-Reject"  # used up
    used = decisions(server, "bypass_used")[-1]
    assert (used["user"], used["by"], used["reason"]) == ("tom", "ada", "lost phone #1")
    assert used["method"] == "pap" and used["client"] == "test-nas"
    refused = decisions(server, "bypass_refused")[-1]
    assert refused["refusal"] == "bypass_used_up"
    issued = [
        json.loads(line)
        for line in (server.workdir / "decisions.log").read_text().splitlines()
        if "bypass_issued" in line
    ]
    assert issued and issued[-1]["by"] == "ada" and code not in json.dumps(issued)


def test_out_of_scope_refused(server: Served) -> None:
    wrong_nas = bypass(server, "tom", "--reason", "r", "--client", "vpn-2")
    wrong_method = bypass(server, "tom", "--reason", "r", "--methods", "ttls,gtc")
    short = bypass(server, "tom", "--reason", "r", "--ttl", "1s")
    time.sleep(1.2)
    for code in (wrong_nas, wrong_method, short):
        assert pap(server.port, "tom", "pencil" + code) == "Access-Reject"
    refusals = [d["refusal"] for d in decisions(server, "bypass_refused")[-3:]]
    assert refusals == ["bypass_wrong_client", "bypass_wrong_method", "bypass_expired"]


def test_revoked_and_listed(server: Served) -> None:
    code = bypass(server, "tom", "--reason", "r", "--uses", "2")
    listed = bypass(server, "list", "tom")
    bid = next(line.split()[0] for line in listed.splitlines() if "used 0/2" in line)
    bypass(server, "revoke", bid, "--reason", "done", by="grace")
    assert bid not in bypass(server, "list")
    assert pap(server.port, "tom", "pencil" + code) == "Access-Reject"
    revoked = decisions(server, "bypass_revoked")[-1]
    assert (revoked["id"], revoked["by"], revoked["issued_by"]) == (bid, "grace", "ada")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["ghost", "--reason", "r"], {"EAPKIT_ADMIN": "ada"}, "no user ghost"),
        (["tom"], {"EAPKIT_ADMIN": "ada"}, "needs a reason"),
        (["tom", "--reason", "r"], {"EAPKIT_ADMIN": ""}, "acting administrator"),
        (["tom", "--reason", "r"], {"EAPKIT_ADMIN": "mallory"}, "not one of the configured"),
        (["tom", "--reason", "r", "--client", "nowhere"], {"EAPKIT_ADMIN": "ada"}, "no client"),
        (["tom", "--reason", "r", "--ttl", "soon"], {"EAPKIT_ADMIN": "ada"}, "not a duration"),
    ],
)
def test_bad_input(server: Served, args: list[str], env: dict[str, str], message: str) -> None:
    before = len(decisions(server, "bypass_issued"))
    out = eapkit(server.workdir, "bypass", *args, env=env)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert out.stdout == ""
    assert len(decisions(server, "bypass_issued")) == before


# -- reset + approve, the re-enrollment link over HTTP ---------------------------------


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    work = tmp_path_factory.mktemp("reset")
    tcp = free_tcp_port()
    toml = (
        'methods = ["gtc"]\n'
        f'[bridge]\nlisten = "127.0.0.1:{tcp}"\nurl = "http://localhost:{tcp}"\n'
        '[admin]\nadministrators = ["ada", "grace"]\n'
    )
    srv = start_served(work, toml, users=(("tom", "pencil"),), secret=SECRET)
    try:
        out = eapkit(work, "enroll", "totp", "tom", "--no-terminal")
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{tcp}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and srv.alive(), srv.output()
                time.sleep(0.2)
        yield srv, f"http://127.0.0.1:{tcp}"
    finally:
        srv.stop()


def post(base: str, path: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    port = base.rsplit(":", 1)[1]
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Origin": f"http://localhost:{port}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_reset_approve_and_reenroll_over_http(bridged: tuple[Served, str]) -> None:
    server, base = bridged
    assert pap(server.port, "tom", "pencil") == "Access-Challenge"
    asked = eapkit(
        server.workdir, "reset", "tom", "--factors", "totp", "--reason", "lost phone",
        env={"EAPKIT_ADMIN": "ada"},
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    rid = asked.stdout.strip()
    # the requester cannot approve; nothing happens
    own = eapkit(server.workdir, "approve", rid, env={"EAPKIT_ADMIN": "ada"})
    assert own.returncode != 0 and "different administrator" in own.stderr
    assert "pending" in eapkit(server.workdir, "reset", "list").stdout
    approved = eapkit(server.workdir, "approve", rid, env={"EAPKIT_ADMIN": "grace"})
    assert approved.returncode == 0, approved.stderr
    link = approved.stdout.strip()
    assert link.startswith("http://localhost:") and "/enroll#" in link
    token = link.split("#", 1)[1]
    # the old app's codes are gone: the login is refused until the user enrolls again
    assert pap(server.port, "tom", "pencil123456") == "Access-Reject"
    with urllib.request.urlopen(base + "/enroll", timeout=10) as page:
        assert b"authenticator app" in page.read()
    status, begun = post(base, "/api/enroll/totp/begin", {"token": token})
    assert status == 200 and str(begun["svg"]).startswith("<svg")
    secret = b32_secret(parse_qs(urlparse(str(begun["uri"])).query)["secret"][0])
    status, done = post(
        base, "/api/enroll/totp/finish", {"token": token, "code": totp(secret, time.time())}
    )
    assert status == 200, done
    status, _ = post(base, "/api/enroll/totp/begin", {"token": token})
    assert status == 403  # single use
    next_code = totp(secret, time.time() + 30)  # the confirming step is spent
    assert pap(server.port, "tom", "pencil" + next_code) == "Access-Accept"
    events = [d.get("event") for d in server.decisions()]
    for event in ("reset_requested", "reset_approved", "totp_enrolled"):
        assert event in events


def test_reset_bad_input(bridged: tuple[Served, str]) -> None:
    server, _ = bridged
    ghost = eapkit(server.workdir, "reset", "ghost", "--reason", "r", env={"EAPKIT_ADMIN": "ada"})
    assert ghost.returncode != 0 and "no user ghost" in ghost.stderr
    reasonless = eapkit(server.workdir, "reset", "tom", env={"EAPKIT_ADMIN": "ada"})
    assert reasonless.returncode != 0 and "needs a reason" in reasonless.stderr
    outsider = eapkit(
        server.workdir, "reset", "tom", "--reason", "r", env={"EAPKIT_ADMIN": "mallory"}
    )
    assert outsider.returncode != 0 and "not one of the configured" in outsider.stderr
    short = eapkit(
        server.workdir, "reset", "tom", "--reason", "r", "--ttl", "1s",
        env={"EAPKIT_ADMIN": "ada"},
    )  # fmt: skip
    assert short.returncode == 0, short.stderr
    time.sleep(1.2)
    late = eapkit(server.workdir, "approve", short.stdout.strip(), env={"EAPKIT_ADMIN": "grace"})
    assert late.returncode != 0 and "expired" in late.stderr and late.stdout == ""
    assert "reset_expired" in [d.get("event") for d in server.decisions()]
    unknown = eapkit(server.workdir, "approve", "feedface", env={"EAPKIT_ADMIN": "grace"})
    assert unknown.returncode != 0 and "no reset request" in unknown.stderr
