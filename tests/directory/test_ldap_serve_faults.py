"""A directory that stalls, proven through a running ``eapkit serve`` (issue 18): slapd
stopped (SIGSTOP) while PAP logins wait on it must not stop the server answering
Status-Server (the checks run in the fair pool, not on the receiving thread); a TTLS
conversation whose inner password check meets the stalled directory ends in a Reject
``directory_unavailable``; after SIGCONT the next login succeeds, without a restart."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.packet import Code, decode, encode_request, new_request_authenticator
from tests.directory.test_ldap_serve import _serve, pap
from tests.interop.ldap_server import Slapd, running_slapd
from tests.interop.tools import EapkitServe, eapol_test

pytestmark = pytest.mark.interop

SECRET = b"testing123"  # EapkitServe's client secret


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-serve-faults"))) as server:
        yield server


@pytest.fixture(scope="module")
def server(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EapkitServe]:
    with _serve(Path(tmp_path_factory.mktemp("serve-faults")), slapd, [slapd.ldaps_url]) as srv:
        yield srv


def _pap_request(identifier: int, user: bytes, password: bytes) -> bytes:
    authenticator = new_request_authenticator()
    attrs = [
        (Attr.USER_NAME, user),
        (Attr.USER_PASSWORD, hide_password(password, SECRET, authenticator)),
    ]
    return encode_request(
        Code.ACCESS_REQUEST, identifier, attrs, SECRET, authenticator=authenticator
    )


def _drops(server: EapkitServe) -> int:
    """Requests the fair pool dropped (logged: queue_full, queue_timeout so far)."""
    lines = [x for x in (server.workdir / "serve.log").read_text().splitlines() if "so far" in x]
    if not lines:
        return 0
    counts = re.findall(r"(queue_full|queue_timeout) (\d+)", lines[-1])
    return sum(int(n) for _, n in counts)


def test_status_server_answered_while_the_directory_hangs(
    server: EapkitServe, slapd: Slapd
) -> None:
    assert "Received Access-Accept" in pap(server.port, "carl", "carl-pw")
    logins = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    status = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = ("127.0.0.1", server.port)
    dropped_before = _drops(server)
    users = (b"carl", b"dave", b"amy", b"carl")
    requests = {n + 1: _pap_request(n + 1, user, user + b"-pw") for n, user in enumerate(users)}
    arrivals: list[tuple[str, int, int]] = []  # (socket, identifier, code)
    os.kill(slapd.daemon.pid, signal.SIGSTOP)
    try:
        for data in requests.values():
            logins.sendto(data, address)
        time.sleep(0.2)  # the logins are waiting on the stopped directory now
        status.sendto(encode_request(Code.STATUS_SERVER, 9, [], SECRET), address)
        # until Status-Server is answered and every login is answered, or nothing has
        # arrived for longer than a check may wait (timeout = 2 in _serve): the pool
        # drops what waited past its deadline, and its log line is rate-limited, so the
        # count of drops is not read from it
        deadline = time.monotonic() + 30.0
        quiet_until = time.monotonic() + 8.0
        while time.monotonic() < min(deadline, quiet_until):
            waiting = [status, logins]
            ready, _, _ = select.select(waiting, [], [], 0.5)
            for sock in ready:
                reply = decode(sock.recv(4096))
                arrivals.append(
                    ("status" if sock is status else "logins", reply.identifier, reply.code)
                )
                quiet_until = time.monotonic() + 8.0
            if any(a[0] == "status" for a in arrivals) and len(arrivals) == 5:
                break
        # the order, not a duration: Status-Server came back before any waiting login
        assert arrivals and arrivals[0][0] == "status" and arrivals[0][2] == Code.ACCESS_ACCEPT
        answered = {ident: code for name, ident, code in arrivals if name == "logins"}
        assert answered and set(answered.values()) == {Code.ACCESS_REJECT}, arrivals
        reasons = {d["reason"] for d in server.decisions[-len(answered) :]}
        assert reasons == {"directory_unavailable"}, reasons
        unanswered = sorted(set(requests) - set(answered))
        if unanswered:  # dropped by the pool, which says so in its log
            assert _drops(server) > dropped_before
    finally:
        os.kill(slapd.daemon.pid, signal.SIGCONT)
        status.close()
    try:
        # what was dropped is not lost: the NAS's retransmission is answered now
        for ident in unanswered:
            logins.sendto(requests[ident], address)
        logins.settimeout(10.0)
        late: dict[int, int] = {}
        while len(late) < len(unanswered):
            reply = decode(logins.recv(4096))
            late[reply.identifier] = reply.code
        assert set(late) == set(unanswered), late
    finally:
        logins.close()
    # back without a restart
    assert "Received Access-Accept" in pap(server.port, "carl", "carl-pw")


def test_ttls_meets_a_stopped_directory_then_a_continued_one(
    server: EapkitServe, slapd: Slapd
) -> None:
    block = f"""
key_mgmt=IEEE8021X
eap=TTLS
identity="dave"
anonymous_identity="anonymous"
password="dave-pw"
ca_cert="{server.pki / "ca.pem"}"
phase2="auth=PAP"
"""
    os.kill(slapd.daemon.pid, signal.SIGSTOP)
    try:
        stalled = eapol_test(block, server.port, server.workdir / "eapol-stopped", timeout=30)
    finally:
        os.kill(slapd.daemon.pid, signal.SIGCONT)
    assert not stalled.success, stalled.output[-2000:]
    assert server.decisions[-1]["reason"] == "directory_unavailable"
    back = eapol_test(block, server.port, server.workdir / "eapol-continued")
    assert back.success and back.mppe_ok, back.output[-2000:]
