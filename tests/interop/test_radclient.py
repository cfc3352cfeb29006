"""Plain RADIUS against ``eapkit serve`` with FreeRADIUS's ``radclient`` (Debian
``freeradius-utils``) as the real client."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import require_tool
from tests.interop.tools import EapkitServe

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with EapkitServe(tmp_path_factory.mktemp("serve"), extra=["--methods", "gtc"]) as srv:
        yield srv


def radclient(port: int, attrs: str, kind: str = "auth") -> subprocess.CompletedProcess[str]:
    exe = require_tool("radclient")["radclient"]
    return subprocess.run(
        [exe, "-x", "-r", "1", "-t", "2", f"127.0.0.1:{port}", kind, "testing123"],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_pap_accept(server: EapkitServe) -> None:
    out = radclient(
        server.port,
        'User-Name = "alice"\nUser-Password = "wonderland"\nMessage-Authenticator = 0x00\n',
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Received Access-Accept" in out.stdout
    assert 'User-Name = "alice"' in out.stdout.split("Received", 1)[1]


def test_pap_reject(server: EapkitServe) -> None:
    out = radclient(
        server.port, 'User-Name = "alice"\nUser-Password = "nope"\nMessage-Authenticator = 0x00\n'
    )
    assert "Received Access-Reject" in out.stdout
    assert server.decisions[-1]["reason"] == "bad_password"


def test_request_without_message_authenticator_is_dropped(server: EapkitServe) -> None:
    out = radclient(server.port, 'User-Name = "alice"\nUser-Password = "wonderland"\n')
    assert "No reply from server" in out.stdout + out.stderr
    assert server.decisions[-1]["reason"] == "missing_message_authenticator"


def test_status_server(server: EapkitServe) -> None:
    out = radclient(server.port, "Message-Authenticator = 0x00\n", kind="status")
    assert "Received Access-Accept" in out.stdout, out.stdout + out.stderr


def test_accounting_start_stop(server: EapkitServe) -> None:
    for status in ("Start", "Stop"):
        out = radclient(
            server.port,
            f'Acct-Status-Type = {status}\nAcct-Session-Id = "s-1"\nUser-Name = "alice"\n'
            "Acct-Session-Time = 42\n",
            kind="acct",
        )
        assert "Received Accounting-Response" in out.stdout, out.stdout + out.stderr
    records = [r for r in server.decisions if r.get("event") == "accounting"]
    assert [r["status"] for r in records[-2:]] == ["Start", "Stop"]
    assert records[-1]["session_time"] == 42
