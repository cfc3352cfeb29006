"""benchmarks/bench_ldap.py compares like with like: FreeRADIUS 3.2 with rlm_ldap and
``eapkit serve``, as the benchmark configures them, accept the same LDAP user's
password (and password+TOTP) against the same slapd and refuse a wrong one."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_ldap import _eapkit, _enroll_totp, _freeradius
from benchmarks.bench_serve import running
from eapkit.verify.otp import totp
from tests.interop.ldap_server import Slapd, add_users, running_slapd
from tests.interop.test_radclient import radclient

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    names = ("localhost", socket.gethostname())
    with running_slapd(Path(tmp_path_factory.mktemp("slapd")), names) as server:
        add_users(server, {"t1": "t1-pw", "t2": "t2-pw"})
        yield server


def pap(port: int, user: str, password: str) -> str:
    attrs = f'User-Name = "{user}"\nUser-Password = "{password}"\nMessage-Authenticator = 0x00\n'
    return radclient(port, attrs).stdout


@pytest.mark.parametrize("server", ["eapkit", "freeradius"])
def test_pap_against_the_same_slapd(slapd: Slapd, tmp_path: Path, server: str) -> None:
    make = (
        _eapkit(tmp_path, slapd) if server == "eapkit" else _freeradius(tmp_path, slapd, "", False)
    )
    with running(make) as found:
        assert found is not None
        _, port, _ = found
        assert "Received Access-Accept" in pap(port, "dave", "dave-pw")
        assert "Received Access-Reject" in pap(port, "dave", "wrong")
        assert "Received Access-Reject" in pap(port, "nobody", "dave-pw")


@pytest.mark.parametrize(("server", "user"), [("eapkit", "t1"), ("freeradius", "t2")])
def test_pap_totp_against_the_same_slapd(
    slapd: Slapd, tmp_path: Path, server: str, user: str
) -> None:
    if server == "eapkit":
        secret = _enroll_totp(tmp_path, slapd, [user])[user]
        make = _eapkit(tmp_path, slapd)
    else:
        secret = os.urandom(20)
        users = f'{user} TOTP-Secret := "{base64.b32encode(secret).decode()}"\n'
        make = _freeradius(tmp_path, slapd, users, True)
    with running(make) as found:
        assert found is not None
        _, port, _ = found
        code = totp(secret, time.time())
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        assert "Received Access-Reject" in pap(port, user, f"{user}-pw{wrong}")
        assert "Received Access-Accept" in pap(port, user, f"{user}-pw{code}")
        assert "Received Access-Reject" in pap(port, user, f"wrong{code}")
