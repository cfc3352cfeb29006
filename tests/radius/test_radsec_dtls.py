"""The RADIUS/DTLS front (RFC 7360) against a running listener on loopback: a NAS
written here with pyOpenSSL's DTLS over a UDP socket; the cookie exchange, PAP and
Status-Server through it, and the sessions that must not be made."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from eapkit.crl_reload import CrlFiles
from eapkit.directory import LocalDirectory
from eapkit.pki import Issued, crl_pem, make_client, make_crl, make_server
from eapkit.radius.clients import ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.dtls import DTLS_SECRET, DtlsListener, serve
from eapkit.radius.front import Front
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient, RadsecError
from eapkit.radius.nas import RadsecSettings as NasSettings
from eapkit.radius.packet import Attribute, Code, Packet, decode, encode_request
from eapkit.radius.pap import PapAccess
from eapkit.radius.radsec import ClientSource, RadsecClient, RadsecSettings
from tests.radius.test_radsec import NOW, Pki, gw1, pki
from tests.radius.test_radsec_resumption import Entries

__all__ = ["pki"]  # the fixture, imported for its name


@dataclass
class Server:
    addr: tuple[str, int]
    core: RadiusCore
    log: io.StringIO
    pki: Pki
    crl: Path

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@contextmanager
def running(
    tmp_path: Path,
    pki: Pki,
    clients: ClientSource | None = None,
    entries: list[RadsecClient] | None = None,
    **settings: Any,
) -> Iterator[Server]:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "wonderland", iterations=1000)
    log = io.StringIO()
    decisions = DecisionLog(log)
    decisions.stamp = {"transport": "dtls", "radius_version": "1.0"}
    core = RadiusCore(
        ClientTable([]),
        None,
        plain=PapAccess(users.check_password),
        decisions=decisions,
        require_message_authenticator=False,
    )
    cert, key = pki.write("server", make_server(pki.server_ca, ["radius.test"], now=NOW))
    crl = tmp_path / "nas.crl"
    crl.write_bytes(crl_pem(make_crl(pki.nas_ca, now=NOW)))
    config = RadsecSettings(
        dtls_listen=[("127.0.0.1", 0)],
        cert=cert,
        key=key,
        crl=[crl],
        clients=entries or [_entry(pki, "gw1")],
        **settings,
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    bound: list[tuple[str, int]] = []
    ready = threading.Event()

    def ready_cb(addrs: list[tuple[str, int]]) -> None:
        bound.extend(addrs)
        ready.set()

    job = serve(
        core,
        config,
        crls=CrlFiles([crl], interval=0.0),
        clients=clients,
        ready=ready_cb,
        stop=stop,
        threads=2,
        expire_interval=0.2,
    )
    thread = threading.Thread(target=loop.run_until_complete, args=(job,), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Server(bound[0], core, log, pki, crl)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def _entry(pki: Pki, name: str) -> RadsecClient:
    """The ``[[radsec.clients]]`` entry of the NAS certificate with SAN ``<name>.vpn.test``."""
    return RadsecClient(name, pki.ca_file("nas", pki.nas_ca), san=f"{name}.vpn.test")


class DtlsNas:
    """A RADIUS/DTLS client: pyOpenSSL's DTLS on memory BIOs over a UDP socket."""

    def __init__(self, server: Server, issued: Issued, name: str) -> None:
        cert, key = server.pki.write(name, issued)
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        ctx.use_certificate_chain_file(str(cert))
        ctx.use_privatekey_file(str(key))
        ctx.load_verify_locations(str(server.pki.ca_file("server", server.pki.server_ca)))
        ctx.set_verify(SSL.VERIFY_PEER)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_ciphertext_mtu(1400)
        self.conn.set_connect_state()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)
        self.sock.connect(server.addr)
        self.received: list[bytes] = []  # every datagram from the server

    def _flush(self) -> None:
        try:
            out = self.conn.bio_read(65535)
        except SSL.WantReadError:
            return
        self.sock.send(out)

    def _read(self) -> bool:
        try:
            data = self.sock.recv(65535)
        except TimeoutError:
            return False
        self.received.append(data)
        self.conn.bio_write(data)
        return True

    def handshake(self, tries: int = 20) -> None:
        for _ in range(tries):
            try:
                self.conn.do_handshake()
                self._flush()
                return
            except SSL.WantReadError:
                self._flush()
            if not self._read():
                self.conn.DTLSv1_handle_timeout()
        raise TimeoutError("no DTLS handshake")

    def request(self, data: bytes) -> Packet:
        self.conn.send(data)
        self._flush()
        for _ in range(10):
            if self._read():
                try:
                    return decode(self.conn.recv(65535))
                except SSL.WantReadError:
                    continue
        raise TimeoutError("no reply")

    def close_notified(self) -> bool:
        """Whether the next datagram from the server is its close_notify alert."""
        if not self._read():
            return False
        try:
            self.conn.recv(65535)
        except SSL.ZeroReturnError:
            return True
        except SSL.WantReadError:
            pass
        return False

    def shutdown(self) -> None:
        """End the session with a close_notify, as a NAS that shuts down does."""
        with suppress(SSL.Error):
            self.conn.shutdown()
        self._flush()

    def close(self) -> None:
        self.sock.close()


def _pap(identifier: int, password: bytes) -> bytes:
    auth = bytes([identifier]) * 16
    attrs: list[Attribute] = [
        (Attr.USER_NAME, b"alice"),
        (Attr.USER_PASSWORD, hide_password(password, DTLS_SECRET, auth)),
    ]
    return encode_request(
        Code.ACCESS_REQUEST,
        identifier,
        attrs,
        DTLS_SECRET,
        authenticator=auth,
        message_authenticator=False,
    )


def test_cookie_exchange_then_pap_and_status_server(tmp_path: Path, pki: Pki) -> None:
    with running(tmp_path, pki) as server:
        nas = DtlsNas(server, gw1(pki), "gw1")
        nas.handshake()
        # the first answer to the ClientHello was a HelloVerifyRequest (RFC 6347 §4.2.1)
        assert nas.received[0][0] == 22 and nas.received[0][13] == 3
        assert server.core.stats["dtls_cookie_sent"] == 1
        assert nas.request(_pap(1, b"wonderland")).code == Code.ACCESS_ACCEPT
        assert nas.request(_pap(2, b"wrong")).code == Code.ACCESS_REJECT
        status = encode_request(Code.STATUS_SERVER, 3, [], DTLS_SECRET, message_authenticator=True)
        assert nas.request(status).code == Code.ACCESS_ACCEPT
        nas.close()
    lines = [d for d in server.decisions() if "result" in d]
    assert [(d["result"], d["client"], d["transport"]) for d in lines] == [
        ("accept", "gw1", "dtls"),
        ("reject", "gw1", "dtls"),
    ]


def test_a_spoofed_client_hello_makes_no_session(tmp_path: Path, pki: Pki) -> None:
    """A ClientHello without the cookie gets a HelloVerifyRequest and nothing else."""
    with running(tmp_path, pki) as server:
        nas = DtlsNas(server, gw1(pki), "gw1")
        with suppress(SSL.WantReadError):
            nas.conn.do_handshake()
        hello = nas.conn.bio_read(65535)
        for _ in range(5):  # as if from a spoofed address: the cookie never comes back
            nas.sock.send(hello)
            assert nas.sock.recv(65535)[13] == 3  # HelloVerifyRequest
        nas.close()
        assert server.core.stats["dtls_cookie_sent"] == 5
        assert "dtls_handshake_timeout" not in server.core.stats


@pytest.mark.parametrize("which", ["other_ca", "unmatched_name", "revoked"])
def test_wrong_client_certificates_are_refused(tmp_path: Path, pki: Pki, which: str) -> None:
    with running(tmp_path, pki) as server:
        if which == "other_ca":
            cert = make_client(pki.other_ca, "gw1", dns_names=["gw1.vpn.test"], now=NOW)
        elif which == "unmatched_name":
            cert = make_client(pki.nas_ca, "laptop", dns_names=["laptop.test"], now=NOW)
        else:
            cert = gw1(pki)
            server.crl.write_bytes(crl_pem(make_crl(pki.nas_ca, [cert.serial], now=NOW)))
        nas = DtlsNas(server, cert, which)
        with pytest.raises((SSL.Error, TimeoutError)):
            nas.handshake(tries=5)
            nas.request(_pap(1, b"wonderland"))
        nas.close()
        expected = "unknown_client" if which == "unmatched_name" else "certificate_refused"
        deadline = time.monotonic() + 5  # the server thread counts it as it closes
        while f"dtls_{expected}" not in server.core.stats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.core.stats.get(f"dtls_{expected}") == 1
        good = DtlsNas(server, gw1(pki), "gw1-again")  # the listener serves on
        if which != "revoked":
            good.handshake()
            assert good.request(_pap(1, b"wonderland")).code == Code.ACCESS_ACCEPT
        good.close()
    accepted = [d["client"] for d in server.decisions() if d.get("result") == "accept"]
    assert accepted == ([] if which == "revoked" else ["gw1"])


class _Transport:
    """A stand-in DatagramTransport that keeps what the listener sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 2083)


_HELLO_HEADER = bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0])  # epoch 0 handshake record


@settings(
    max_examples=int(os.environ.get("EAPKIT_DTLS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    datagrams=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(lambda b: _HELLO_HEADER + b),
            st.binary(max_size=300).map(lambda b: _HELLO_HEADER + b"\x00\x40\x01" + b),
        ),
        max_size=8,
    )
)
def test_arbitrary_datagrams_make_no_session(
    tmp_path: Path, pki: Pki, datagrams: list[bytes]
) -> None:
    """Whatever arrives without a valid cookie: no session, no exception, and nothing
    sent but HelloVerifyRequests (a DTLS handshake record whose message type is 3).
    40 examples by default; EAPKIT_DTLS_EXAMPLES=1000 for a longer run."""
    cert, key = pki.write("server", make_server(pki.server_ca, ["radius.test"], now=NOW))
    config = RadsecSettings(
        cert=cert,
        key=key,
        clients=[RadsecClient("gw1", pki.ca_file("nas", pki.nas_ca), san="gw1.vpn.test")],
    )
    core = RadiusCore(ClientTable([]), None)
    listener = DtlsListener(Front(core, lambda: 0.0), config)
    transport = _Transport()
    listener.connection_made(cast(asyncio.DatagramTransport, transport))
    for data in datagrams:
        listener.datagram_received(data, ("192.0.2.1", 4000))
    assert listener.sessions == {}
    assert "internal_error" not in core.stats
    assert all(out[0] == 22 and out[13] == 3 for out, _ in transport.sent)


def test_the_probe_client_over_dtls(tmp_path: Path, pki: Pki) -> None:
    """``eapkit probe --radsec --dtls``'s client (RadiusClient with ``dtls``): PAP and
    Status-Server with the fixed secret, the server's name checked."""
    with running(tmp_path, pki) as server:
        cert, key = server.pki.write("probe", gw1(pki))
        ca = server.pki.ca_file("server", server.pki.server_ca)

        async def run(name: str) -> list[int]:
            settings = NasSettings(cert=cert, key=key, ca=ca, server_name=name, dtls=True)
            async with RadiusClient(server.addr, DTLS_SECRET, radsec=settings) as client:
                auth = bytes(range(16))
                password = hide_password(b"wonderland", DTLS_SECRET, auth)
                attrs = [(Attr.USER_NAME, b"alice"), (Attr.USER_PASSWORD, password)]
                reply, _ = await client.request(attrs, authenticator=auth)
                status, _ = await client.request([], Code.STATUS_SERVER)
                return [reply.code, status.code]

        assert asyncio.run(run("radius.test")) == [Code.ACCESS_ACCEPT, Code.ACCESS_ACCEPT]
        with pytest.raises(RadsecError, match="does not name"):
            asyncio.run(run("elsewhere.test"))
    assert [d["transport"] for d in server.decisions() if "result" in d] == ["dtls"]


def test_a_removed_client_entry_ends_its_session(tmp_path: Path, pki: Pki) -> None:
    """``[[radsec.clients]]`` reloaded: the session of a removed entry is closed
    (``client_removed``) within a second, with a close_notify to the NAS."""
    source = Entries([RadsecClient("gw1", pki.ca_file("nas", pki.nas_ca), san="gw1.vpn.test")])
    with running(tmp_path, pki, clients=source) as server:
        nas = DtlsNas(server, gw1(pki), "gw1")
        nas.handshake()
        assert nas.request(_pap(1, b"wonderland")).code == Code.ACCESS_ACCEPT
        source.remove("gw1")
        assert _counted(server, "dtls_client_removed") == 1
        assert nas.close_notified()
        nas.close()


# -- limits and timeouts ---------------------------------------------------------------------


def _counted(server: Server, name: str, at_least: int = 1, timeout: float = 5.0) -> int:
    """``server.core.stats[name]`` once it reaches ``at_least`` (the listener's thread
    counts it), or what it is at ``timeout``."""
    deadline = time.monotonic() + timeout
    while server.core.stats.get(name, 0) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.core.stats.get(name, 0)


def _logged(
    caplog: pytest.LogCaptureFixture, text: str, at_least: int = 1, timeout: float = 5.0
) -> int:
    """How many of the listener's log lines hold ``text``, once ``at_least`` do (the
    listener's thread counts a refusal, then logs it), or at ``timeout``."""

    def count() -> int:
        records = list(caplog.records)
        return sum(text in r.getMessage() for r in records if r.name == "eapkit.radius.dtls")

    deadline = time.monotonic() + timeout
    while count() < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return count()


def _accepts(nas: DtlsNas, identifier: int) -> bool:
    return nas.request(_pap(identifier, b"wonderland")).code == Code.ACCESS_ACCEPT


def test_an_idle_session_is_dropped_and_a_new_handshake_works(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """``idle_timeout``: requests keep a session alive past it; silence for longer ends
    it (a close_notify to the NAS, ``closed: idle_timeout`` logged, ``dtls_idle_timeout``
    counted), and the same NAS's next handshake makes a new session."""
    caplog.set_level(logging.WARNING, "eapkit.radius.dtls")
    with running(tmp_path, pki, idle_timeout=1.5) as server:
        nas = DtlsNas(server, gw1(pki), "gw1")
        nas.handshake()
        for identifier in range(1, 5):  # 4 x 0.5 s of traffic: longer than idle_timeout
            assert _accepts(nas, identifier)
            time.sleep(0.5)
        assert "dtls_idle_timeout" not in server.core.stats
        assert _counted(server, "dtls_idle_timeout") == 1
        assert nas.close_notified()
        assert _logged(caplog, "closed: idle_timeout gw1") == 1
        again = DtlsNas(server, gw1(pki), "gw1-again")
        again.handshake()
        assert _accepts(again, 5)
        assert server.core.stats["dtls_cookie_sent"] == 2  # two full handshakes
        nas.close()
        again.close()
    accepted = [d["client"] for d in server.decisions() if d.get("result") == "accept"]
    assert accepted == ["gw1"] * 5


def test_a_handshake_that_stops_midway_is_dropped(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """``handshake_timeout``: a NAS that stops after the server's first flight loses
    its half-made session (``dtls_handshake_timeout``, logged); the server stops
    retransmitting its flight, the NAS's late flight finds no session, and a new
    handshake works."""
    caplog.set_level(logging.WARNING, "eapkit.radius.dtls")
    with running(tmp_path, pki, handshake_timeout=0.5) as server:
        nas = DtlsNas(server, gw1(pki), "gw1")
        for _ in range(2):  # ClientHello -> HelloVerifyRequest, ClientHello + cookie ->
            with suppress(SSL.WantReadError):
                nas.conn.do_handshake()
            nas._flush()
            assert nas._read()
        assert nas.received[-1][0] == 22 and nas.received[-1][13] == 2  # ServerHello ...
        with suppress(SSL.WantReadError):  # the NAS's answer, made now and never sent
            nas.conn.do_handshake()
        late = nas.conn.bio_read(65535)  # Certificate ... Finished
        assert _counted(server, "dtls_handshake_timeout") == 1
        assert _logged(caplog, "closed: handshake_timeout") == 1
        nas.sock.setblocking(False)  # what was sent before the session ended
        with suppress(BlockingIOError):
            while True:
                nas.sock.recv(65535)
        nas.sock.settimeout(2.5)  # OpenSSL's DTLS timer would resend at 1 s and 3 s
        with pytest.raises(TimeoutError):
            nas.sock.recv(65535)
        nas.sock.send(late)  # too late: no session takes it
        assert _counted(server, "dtls_no_session") == 1
        nas.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # and gets nothing back
            nas.sock.recv(65535)
        nas.close()
        again = DtlsNas(server, gw1(pki), "gw1-again")
        again.handshake()
        assert _accepts(again, 1)
        again.close()
        assert server.core.stats["dtls_handshake_timeout"] == 1


def test_max_connections_refuses_the_session_over_the_limit(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_connections = 2``: a third NAS's ClientHello (with a valid cookie) goes
    unanswered (``refused: connection_limit``, ``dtls_connection_limit``) while the two
    sessions keep working; once one of them ends, a new session is made."""
    caplog.set_level(logging.WARNING, "eapkit.radius.dtls")
    with running(tmp_path, pki, max_connections=2) as server:
        first, second = DtlsNas(server, gw1(pki), "gw1-a"), DtlsNas(server, gw1(pki), "gw1-b")
        first.handshake()
        second.handshake()
        third = DtlsNas(server, gw1(pki), "gw1-c")
        with pytest.raises(TimeoutError):
            third.handshake(tries=3)
        third.close()
        refused = _counted(server, "dtls_connection_limit")
        assert refused >= 1
        assert _logged(caplog, "refused: connection_limit", refused) == refused
        assert _accepts(first, 1) and _accepts(second, 2)
        first.shutdown()  # a close_notify ends its session
        assert _counted(server, "dtls_closed_by_peer") == 1
        fourth = DtlsNas(server, gw1(pki), "gw1-d")
        fourth.handshake()
        assert _accepts(fourth, 3) and _accepts(second, 4)
        assert server.core.stats["dtls_connection_limit"] == refused
        for nas in (first, second, fourth):
            nas.close()


def test_max_connections_per_client_refuses_that_clients_next_session(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_connections_per_client = 1``: gw1's second session is ended once its
    handshake names gw1 (a close_notify, ``closed: client_connection_limit gw1``,
    ``dtls_client_connection_limit``); gw2's first session and gw1's first keep
    working."""
    caplog.set_level(logging.WARNING, "eapkit.radius.dtls")
    entries = [_entry(pki, "gw1"), _entry(pki, "gw2")]
    with running(tmp_path, pki, entries=entries, max_connections_per_client=1) as server:
        first = DtlsNas(server, gw1(pki), "gw1-a")
        first.handshake()
        assert _accepts(first, 1)
        second = DtlsNas(server, gw1(pki), "gw1-b")
        second.handshake()  # done on the NAS's side before the server knows the client
        assert second.close_notified()
        assert _counted(server, "dtls_client_connection_limit") == 1
        assert _logged(caplog, "closed: client_connection_limit gw1") == 1
        gw2 = make_client(pki.nas_ca, "gateway two", dns_names=["gw2.vpn.test"], now=NOW)
        other = DtlsNas(server, gw2, "gw2")
        other.handshake()
        assert _accepts(other, 2) and _accepts(first, 3)
        for nas in (first, second, other):
            nas.close()
        assert server.core.stats["dtls_client_connection_limit"] == 1
    accepted = [d["client"] for d in server.decisions() if d.get("result") == "accept"]
    assert accepted == ["gw1", "gw2", "gw1"]
