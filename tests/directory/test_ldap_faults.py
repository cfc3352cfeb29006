"""Attacks on the LDAP directory's connections (issue 18): a directory that stops
answering (SIGSTOP) and comes back (SIGCONT), a server that accepts TCP and never
speaks, certificates that do not verify (wrong CA, wrong name, expired), each failing
closed with ``directory_unavailable`` and its cause in the server's log."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit.directory.groups import LdapSettings
from eapkit.directory.ldap import LdapDirectory
from tests.interop.ldap_server import (
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    running_slapd,
    write_pki,
)

pytestmark = pytest.mark.interop

HANG_GUARD = 60.0  # a check that has not ended by then hangs (not a performance bound)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    # its own slapd: these tests stop it
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-faults"))) as server:
        yield server


def directory(slapd: Slapd, servers: tuple[str, ...] | None = None, **kw: Any) -> LdapDirectory:
    base: dict[str, Any] = {
        "servers": servers or (slapd.ldaps_url,),
        "base": PEOPLE,
        "bind_dn": READER,
        "bind_password": READER_PASSWORD,
        "ca": slapd.ca,
        "timeout": 1.0,
        "cache_ttl": 0.0,  # every check asks the directory
    }
    base.update(kw)
    return LdapDirectory(LdapSettings(**base))


def ended(call: Callable[[], str]) -> str:
    """``call()``'s answer; fails if it has not ended within HANG_GUARD."""
    out: list[str] = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert out, "the check hung"
    return out[0]


class Silent:
    """A TCP listener that accepts connections and never says a word; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self.sock:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                self.accepted.append(conn)

    @property
    def url(self) -> str:
        return f"ldaps://localhost:{self.port}"

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_stopped_directory_fails_closed_then_answers_at_once(slapd: Slapd) -> None:
    # ldap3 marked an address that failed once "unavailable" for ~6 s and did not even
    # try it: after SIGCONT every login still failed with directory_unavailable.
    d = directory(slapd)
    assert d.check_password("carl", "carl-pw", 0.0).ok  # pooled connections made
    os.kill(slapd.daemon.pid, signal.SIGSTOP)
    try:
        assert ended(lambda: d.check_password("carl", "carl-pw", 0.0).reason) == (
            "directory_unavailable"
        )
    finally:
        os.kill(slapd.daemon.pid, signal.SIGCONT)
    assert d.check_password("carl", "carl-pw", 0.0).ok  # at once, without a restart
    assert d.check_password("carl", "wrong", 0.0).reason == "bad_password"
    d.close()


def test_all_down_then_one_back(slapd: Slapd) -> None:
    silent = Silent()
    d = directory(slapd, servers=(silent.url, slapd.ldaps_url))
    os.kill(slapd.daemon.pid, signal.SIGSTOP)
    try:
        assert ended(lambda: d.check_password("dave", "dave-pw", 0.0).reason) == (
            "directory_unavailable"
        )
    finally:
        os.kill(slapd.daemon.pid, signal.SIGCONT)
    assert d.check_password("dave", "dave-pw", 0.0).ok
    d.close()
    silent.close()


def test_server_that_never_speaks_is_passed_over(slapd: Slapd) -> None:
    silent = Silent()
    alone = directory(slapd, servers=(silent.url,))
    assert ended(lambda: alone.check_password("dave", "dave-pw", 0.0).reason) == (
        "directory_unavailable"
    )
    d = directory(slapd, servers=(silent.url, slapd.ldaps_url))
    assert ended(lambda: d.check_password("dave", "dave-pw", 0.0).reason) == "ok"
    tried = len(silent.accepted)
    # the server that answered is asked first from now on: no more waits on the silent one
    for _ in range(3):
        assert d.check_password("dave", "dave-pw", 0.0).ok
    assert len(silent.accepted) == tried
    alone.close()
    d.close()
    silent.close()


@pytest.mark.parametrize("case", ["wrong_ca", "wrong_name"])
def test_certificate_failure_logged(
    slapd: Slapd, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    if case == "wrong_ca":
        write_pki(tmp_path)  # another CA: slapd's certificate does not verify against it
        d = directory(slapd, ca=tmp_path / "ca.pem")
    else:  # the certificate names localhost
        d = directory(slapd, servers=(f"ldaps://127.0.0.1:{slapd.ldaps_port}",))
    with caplog.at_level(logging.WARNING, logger="eapkit.directory.ldap"):
        assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"
    text = caplog.text
    if case == "wrong_ca":
        assert "CERTIFICATE_VERIFY_FAILED" in text, text
    else:
        assert "doesn't match" in text and "127.0.0.1" in text, text
    assert "dave-pw" not in text and READER_PASSWORD not in text


def test_expired_certificate_fails_closed_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running_slapd(tmp_path / "expired", expired=True) as old:
        d = directory(old)
        with caplog.at_level(logging.WARNING, logger="eapkit.directory.ldap"):
            assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"
        assert "expired" in caplog.text, caplog.text
        # and never a fallback to cleartext: the StartTLS port refuses too
        plain = directory(old, servers=(old.ldap_url,), start_tls=True)
        assert plain.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"
