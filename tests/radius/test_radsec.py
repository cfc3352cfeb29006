"""The RadSec front (RFC 6614) against a running listener on loopback: a NAS written
here with Python's ssl module, PAP and EAP through it, and the connections that must
end closed and logged while the listener keeps serving others."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from eapkit.crl_reload import CrlFiles
from eapkit.directory import LocalDirectory
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.pki import Issued, crl_pem, make_ca, make_client, make_crl, make_server
from eapkit.radius import radius11
from eapkit.radius.access import EapAccess
from eapkit.radius.clients import ClientTable
from eapkit.radius.core import DecisionLog, RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient, authenticate
from eapkit.radius.packet import (
    Attribute,
    Code,
    Packet,
    decode,
    encode_request,
)
from eapkit.radius.pap import PapAccess
from eapkit.radius.radius11 import RADIUS_1_1
from eapkit.radius.radsec import (
    RADSEC_SECRET,
    ClientSource,
    RadsecClient,
    RadsecSettings,
    serve,
)
from eapkit.session import PeerSession
from tests.conftest import IN_CI

NOW = dt.datetime.now(dt.UTC)


@dataclass
class Pki:
    dir: Path
    server_ca: Issued
    nas_ca: Issued
    other_ca: Issued

    def write(self, name: str, issued: Issued) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert.write_bytes(issued.chain_pem)
        key.write_bytes(issued.key_pem)
        return cert, key

    def ca_file(self, name: str, ca: Issued) -> Path:
        path = self.dir / f"{name}-ca.pem"
        path.write_bytes(ca.cert_pem)
        return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(
        tmp_path,
        make_ca("radsec server CA", now=NOW),
        make_ca("NAS CA", now=NOW),
        make_ca("someone else's CA", now=NOW),
    )


@dataclass
class Server:
    addr: tuple[str, int]
    core: RadiusCore
    log: io.StringIO
    pki: Pki
    crl: Path

    def nas_context(
        self,
        issued: Issued,
        name: str,
        tls_max: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
        alpn: Sequence[str] = ("radius/1.0",),
    ) -> ssl.SSLContext:
        cert, key = self.pki.write(name, issued)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = tls_max
        ctx.load_verify_locations(cafile=str(self.pki.ca_file("server", self.pki.server_ca)))
        ctx.load_cert_chain(cert, key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@contextmanager
def running(
    tmp_path: Path,
    pki: Pki,
    *,
    pool_deadline: float = 2.0,
    clients: ClientSource | None = None,
    **settings: Any,
) -> Iterator[Server]:
    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "wonderland", iterations=1000)
    log = io.StringIO()
    decisions = DecisionLog(log)
    decisions.stamp = {"transport": "radsec", "radius_version": "1.0"}
    core = RadiusCore(
        ClientTable([]),
        EapAccess([gtc_authenticator(users.check_password), mschapv2_authenticator(users.nt_hash)]),
        plain=PapAccess(users.check_password),
        decisions=decisions,
        require_message_authenticator=False,
    )
    core_1_1 = RadiusCore(
        ClientTable([]),
        core.eap,
        plain=core.plain,
        decisions=decisions.stamped(radius_version="1.1"),
        require_message_authenticator=False,
    )
    cert, key = pki.write("server", make_server(pki.server_ca, ["radius.test"], now=NOW))
    crl = tmp_path / "nas.crl"
    crl.write_bytes(crl_pem(make_crl(pki.nas_ca, now=NOW)))
    config = RadsecSettings(
        listen=[("127.0.0.1", 0)],
        cert=cert,
        key=key,
        crl=[crl],
        clients=[
            RadsecClient("gw1", pki.ca_file("nas", pki.nas_ca), san="gw1.vpn.test"),
            RadsecClient("gw-any", pki.ca_file("nas", pki.nas_ca), subject="gw-*"),
        ],
        **settings,
    )
    crls = CrlFiles([crl], interval=0.0)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    bound: list[tuple[str, int]] = []
    ready = threading.Event()

    def ready_cb(addrs: list[tuple[str, int]]) -> None:
        bound.extend(addrs)
        ready.set()

    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(
            serve(
                core,
                config,
                crls=crls,
                core_1_1=core_1_1,
                ready=ready_cb,
                stop=stop,
                threads=2,
                pool_deadline=pool_deadline,
                clients=clients,
            ),
        ),
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    try:
        yield Server(bound[0], core, log, pki, crl)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


class TlsNas:
    """A RadSec NAS: many requests in flight on one connection, replies matched by
    Identifier, or by Token on RADIUS/1.1 (what :func:`eapkit.radius.nas.authenticate`
    needs of a client)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        ssl_object = writer.get_extra_info("ssl_object")
        self.v11 = ssl_object.selected_alpn_protocol() == "radius/1.1"
        self.radius11 = self.v11  # the name eapkit.radius.nas.RadiusClient gives it
        self.secret = RADIUS_1_1 if self.v11 else RADSEC_SECRET
        self.pending: dict[int, asyncio.Future[Packet]] = {}
        self.next_id = 0
        self.sent: list[bytes] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, addr: tuple[str, int], ctx: ssl.SSLContext) -> TlsNas:
        reader, writer = await asyncio.open_connection(
            addr[0], addr[1], ssl=ctx, server_hostname="radius.test"
        )
        return cls(reader, writer)

    async def _read(self) -> None:
        while True:
            head = await self.reader.readexactly(4)
            body = await self.reader.readexactly(int.from_bytes(head[2:4], "big") - 4)
            reply = radius11.decode(head + body) if self.v11 else decode(head + body)
            key = int.from_bytes(reply.raw[4:8]) if self.v11 else reply.identifier
            future = self.pending.pop(key, None)
            if future is not None and not future.done():
                future.set_result(reply)

    def _send(self, code: int, attributes: Sequence[Attribute], auth: bytes | None) -> bytes:
        """Send one request; returns its Request Authenticator (1.1: Token + zeros)."""
        key = self.next_id
        self.next_id = (self.next_id + 1) % (1 << 32 if self.v11 else 256)
        if self.v11:  # RFC 9765 §4: a Token per packet, the Identifier zero
            data = radius11.encode(code, key.to_bytes(4), attributes)
        else:
            data = encode_request(
                code,
                key,
                attributes,
                self.secret,
                authenticator=auth,
                message_authenticator=None if auth is None else False,
            )
        self.pending[key] = asyncio.get_running_loop().create_future()
        self.sent.append(data)
        self.writer.write(data)
        return data[4:20]

    async def request(
        self, attributes: Sequence[Attribute], code: int = Code.ACCESS_REQUEST
    ) -> tuple[Packet, bytes]:
        key = self.next_id
        authenticator = self._send(code, attributes, None)
        return await asyncio.wait_for(self.pending[key], 10), authenticator

    async def pap(self, user: str, password: str) -> Packet:
        auth = bytes(range(16))
        attrs: list[Attribute] = [
            (Attr.USER_NAME, user.encode()),
            (Attr.USER_PASSWORD, hide_password(password.encode(), self.secret, auth)),
        ]
        key = self.next_id
        self._send(Code.ACCESS_REQUEST, attrs, auth)
        return await asyncio.wait_for(self.pending[key], 10)

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        with _quiet():
            await self.writer.wait_closed()


@contextmanager
def _quiet() -> Iterator[None]:
    with suppress(ConnectionError, ssl.SSLError):
        yield


def gw1(pki: Pki, now: dt.datetime = NOW, **kwargs: Any) -> Issued:
    return make_client(pki.nas_ca, "gateway one", dns_names=["gw1.vpn.test"], now=now, **kwargs)


@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_pap_eap_and_status_server_over_one_connection(
    tmp_path: Path, pki: Pki, tls_max: ssl.TLSVersion
) -> None:
    with running(tmp_path, pki) as server:

        async def run() -> None:
            nas = await TlsNas.connect(server.addr, server.nas_context(gw1(pki), "gw1", tls_max))
            ssl_object = nas.writer.get_extra_info("ssl_object")
            assert ssl_object.version() == ("TLSv1.3" if tls_max.name.endswith("3") else "TLSv1.2")
            assert ssl_object.selected_alpn_protocol() == "radius/1.0"
            # many requests in flight on the one connection
            replies = await asyncio.gather(
                *(nas.pap("alice", "wonderland" if i % 2 else "wrong") for i in range(20))
            )
            codes = [r.code for r in replies]
            assert codes == [Code.ACCESS_REJECT, Code.ACCESS_ACCEPT] * 10
            peer = PeerSession([gtc_peer(lambda _prompt: "wonderland")], "alice")
            result = await authenticate(cast(RadiusClient, nas), peer)
            assert result.accepted
            status, _ = await nas.request([], Code.STATUS_SERVER)
            assert status.code == Code.ACCESS_ACCEPT
            await nas.close()

        asyncio.run(run())
    lines = [d for d in server.decisions() if "result" in d]
    assert len(lines) == 21
    assert all(d["transport"] == "radsec" and d["radius_version"] == "1.0" for d in lines)
    assert {d["client"] for d in lines} == {"gw1"}
    assert server.core.stats["status_server"] == 1


def test_subject_pattern_names_the_client(tmp_path: Path, pki: Pki) -> None:
    with running(tmp_path, pki) as server:

        async def run() -> int:
            other = make_client(pki.nas_ca, "gw-berlin", now=NOW)
            nas = await TlsNas.connect(server.addr, server.nas_context(other, "berlin"))
            reply = await nas.pap("alice", "wonderland")
            await nas.close()
            return reply.code

        assert asyncio.run(run()) == Code.ACCESS_ACCEPT
    assert [d["client"] for d in server.decisions() if "result" in d] == ["gw-any"]


def test_duplicates_are_per_connection(tmp_path: Path, pki: Pki) -> None:
    """RFC 6614 §2.6.4: the same packet on the same connection is a retransmission;
    on a new connection it is a new request."""
    with running(tmp_path, pki) as server:
        ctx = server.nas_context(gw1(pki), "gw1")
        auth = bytes(16)
        attrs: list[Attribute] = [
            (Attr.USER_NAME, b"alice"),
            (Attr.USER_PASSWORD, hide_password(b"wonderland", RADSEC_SECRET, auth)),
        ]
        data = encode_request(Code.ACCESS_REQUEST, 7, attrs, RADSEC_SECRET, authenticator=auth)

        def send_twice() -> list[bytes]:
            with tls_connection(server.addr, ctx) as tls:
                out = []
                for _ in range(2):
                    tls.sendall(data)
                    head = _recv(tls, 4)
                    out.append(head + _recv(tls, int.from_bytes(head[2:4], "big") - 4))
                return out

        first = send_twice()
        second = send_twice()
        assert first[0] == first[1]
        assert decode(second[0]).code == Code.ACCESS_ACCEPT
    assert server.core.stats["duplicate"] == 2
    assert len([d for d in server.decisions() if d.get("result") == "accept"]) == 2


@contextmanager
def tls_connection(addr: tuple[str, int], ctx: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    with (
        socket.create_connection(addr) as raw,
        ctx.wrap_socket(raw, server_hostname="radius.test") as tls,
    ):
        yield tls


def _counted(server: Server, what: str, n: int = 1) -> bool:
    """The server thread counted ``what`` ``n`` times (it may close before counting)."""
    deadline = time.monotonic() + 5
    while server.core.stats.get(what, 0) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.core.stats.get(what, 0) == n


def _recv(tls: ssl.SSLSocket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = tls.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _closed_by_server(tls: ssl.SSLSocket, within: float = 10.0) -> bool:
    """True when the server closes the connection (EOF) before ``within`` seconds."""
    tls.settimeout(within)
    try:
        while tls.recv(4096):
            pass
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return True


def _still_serving(server: Server, pki: Pki) -> None:
    async def run() -> int:
        nas = await TlsNas.connect(server.addr, server.nas_context(gw1(pki), "gw1-again"))
        reply = await nas.pap("alice", "wonderland")
        await nas.close()
        return reply.code

    assert asyncio.run(run()) == Code.ACCESS_ACCEPT


def _handshake_refused(server: Server, ctx: ssl.SSLContext) -> bool:
    """True when the server refuses the client's certificate (TLS 1.3 says so after the
    client's Finished: the first read fails or sees EOF)."""
    try:
        with tls_connection(server.addr, ctx) as tls:
            return _closed_by_server(tls)
    except (ConnectionError, ssl.SSLError):
        return True


@pytest.mark.parametrize("which", ["other_ca", "expired", "unmatched_name"])
def test_wrong_client_certificates_are_refused(
    tmp_path: Path, pki: Pki, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "eapkit.radius.radsec")
    if which == "other_ca":
        cert = make_client(pki.other_ca, "gw1", dns_names=["gw1.vpn.test"], now=NOW)
    elif which == "expired":
        cert = gw1(pki, now=NOW - dt.timedelta(days=30), days=1)
    else:
        cert = make_client(pki.nas_ca, "laptop", dns_names=["laptop.test"], now=NOW)
    expected = "unknown_client" if which == "unmatched_name" else "certificate_refused"
    with running(tmp_path, pki) as server:
        assert _handshake_refused(server, server.nas_context(cert, which))
        _still_serving(server, pki)
        assert _counted(server, f"radsec_{expected}")
    assert any(expected in r.getMessage() for r in caplog.records)
    assert not [d for d in server.decisions() if d.get("result") == "accept" and which in d]


def test_revoked_certificate_refused_after_crl_changes(tmp_path: Path, pki: Pki) -> None:
    revoked = gw1(pki)
    with running(tmp_path, pki) as server:
        ctx = server.nas_context(revoked, "soon-revoked")
        _still_serving(server, pki)
        assert not _handshake_refused_quick(server, ctx)
        server.crl.write_bytes(crl_pem(make_crl(pki.nas_ca, [revoked.serial], now=NOW)))
        assert _handshake_refused(server, ctx)
        assert _counted(server, "radsec_certificate_refused")
        _still_serving(server, pki)


def _handshake_refused_quick(server: Server, ctx: ssl.SSLContext) -> bool:
    try:
        with tls_connection(server.addr, ctx) as tls:
            tls.sendall(encode_request(Code.STATUS_SERVER, 1, [], RADSEC_SECRET))
            head = _recv(tls, 4)
            return not head
    except (ConnectionError, ssl.SSLError):
        return True


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_length"),
        ("length_0", b"\x01\x01\x00\x00", "bad_length"),
        ("length_4097", b"\x01\x01\x10\x01" + bytes(100), "bad_length"),
        ("length_65535", b"\x01\x01\xff\xff" + bytes(70_000), "bad_length"),
        ("undecodable", b"\x01\x01\x00\x16" + bytes(16) + b"\x01\x00", "malformed"),
        ("half_packet", b"\x01\x01\x00\x40" + bytes(10), "half_packet"),
        ("silence", b"", "idle_timeout"),
    ],
)
def test_bad_streams_end_in_a_closed_connection(
    tmp_path: Path,
    pki: Pki,
    name: str,
    payload: bytes,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "eapkit.radius.radsec")
    with running(tmp_path, pki, idle_timeout=0.5) as server:
        ctx = server.nas_context(gw1(pki), name)
        with tls_connection(server.addr, ctx) as tls:
            started = time.monotonic()
            if payload:
                with _quiet():
                    tls.sendall(payload)
            assert _closed_by_server(tls)
            assert time.monotonic() - started < 8
        _still_serving(server, pki)
        assert _counted(server, f"radsec_{reason}")
    assert any(reason in r.getMessage() for r in caplog.records)


def test_connection_limits(tmp_path: Path, pki: Pki) -> None:
    with running(tmp_path, pki, max_connections=4, max_connections_per_client=2) as server:
        ctx = server.nas_context(gw1(pki), "gw1")
        held: list[ssl.SSLSocket] = []
        try:
            for _ in range(2):
                raw = socket.create_connection(server.addr)
                held.append(ctx.wrap_socket(raw, server_hostname="radius.test"))
            # a third connection of gw1: over its share
            assert _handshake_refused(server, ctx)
            assert _counted(server, "radsec_client_connection_limit")
            other = server.nas_context(make_client(pki.nas_ca, "gw-x", now=NOW), "gwx")
            for _ in range(2):
                raw = socket.create_connection(server.addr)
                held.append(other.wrap_socket(raw, server_hostname="radius.test"))
            time.sleep(0.2)
            # a fifth: over the listener's limit, closed before any TLS
            with socket.create_connection(server.addr) as raw:
                raw.settimeout(5)
                assert raw.recv(10) == b""
            assert _counted(server, "radsec_connection_limit")
        finally:
            for tls in held:
                tls.close()
        time.sleep(0.3)
        _still_serving(server, pki)


# -- RADIUS/1.1 (RFC 9765) ------------------------------------------------------------


@pytest.mark.parametrize("offer", [("radius/1.1",), ("radius/1.0", "radius/1.1")])
def test_radius_1_1_round_trip(tmp_path: Path, pki: Pki, offer: tuple[str, ...]) -> None:
    """ALPN picks radius/1.1 whenever the client offers it; then Token instead of
    Identifier + Authenticator, no Message-Authenticator, nothing obfuscated."""
    with running(tmp_path, pki) as server:

        async def run() -> None:
            nas = await TlsNas.connect(server.addr, server.nas_context(gw1(pki), "gw1", alpn=offer))
            assert nas.v11
            replies = await asyncio.gather(
                *(nas.pap("alice", "wonderland" if i % 2 else "wrong") for i in range(6))
            )
            assert [r.code for r in replies] == [Code.ACCESS_REJECT, Code.ACCESS_ACCEPT] * 3
            assert b"wonderland" in nas.sent[1]  # User-Password as text (RFC 9765 §5.1.1)
            for sent, reply in zip(nas.sent, replies, strict=True):
                assert reply.raw[4:8] == sent[4:8]  # the request's Token
                assert reply.raw[8:20] == bytes(12)  # reserved
                assert reply.message_authenticator is None
            peer = PeerSession([mschapv2_peer("wonderland")], "alice")
            result = await authenticate(cast(RadiusClient, nas), peer)
            assert result.accepted
            # MS-MPPE keys travel as plain strings: the peer's own MSK halves
            assert result.keys_match is True
            assert result.mppe is not None and len(result.mppe.recv) == 16
            status, _ = await nas.request([], Code.STATUS_SERVER)
            assert status.code == Code.ACCESS_ACCEPT and status.message_authenticator is None
            await nas.close()

        asyncio.run(run())
    lines = [d for d in server.decisions() if "result" in d]
    assert len(lines) == 7
    assert {d["radius_version"] for d in lines} == {"1.1"}


@pytest.mark.parametrize(
    "signature",
    [bytes((80, 18)) + bytes(16), bytes((80, 4)) + bytes(2) + bytes((80, 18)) + bytes(16)],
    ids=["wrong", "malformed_and_repeated"],
)
def test_radius_1_1_request_with_an_md5_signature_is_not_trusted_for_it(
    tmp_path: Path, pki: Pki, signature: bytes
) -> None:
    """A Message-Authenticator on a 1.1 connection is discarded (RFC 9765 §5.2): a
    packet carrying one, even a wrong, short or repeated one, is processed on its own
    merits (the server and the probe read 1.1 with one decoder)."""
    with running(tmp_path, pki) as server:
        ctx = server.nas_context(gw1(pki), "gw1", alpn=("radius/1.1",))
        body = signature + bytes((1, 7)) + b"alice" + bytes((2, 7)) + b"wrong"
        data = bytes((1, 0)) + (20 + len(body)).to_bytes(2) + b"\x00\x00\x00\x09"
        data += bytes(12) + body
        with tls_connection(server.addr, ctx) as tls:
            tls.sendall(data)
            head = _recv(tls, 4)
            reply = decode(head + _recv(tls, int.from_bytes(head[2:4]) - 4))
    assert reply.code == Code.ACCESS_REJECT and reply.raw[4:8] == b"\x00\x00\x00\x09"
    [line] = [d for d in server.decisions() if "result" in d]
    assert (line["result"], line["radius_version"]) == ("reject", "1.1")


def test_radius_1_1_needs_tls_1_3(tmp_path: Path, pki: Pki) -> None:
    with running(tmp_path, pki) as server:
        ctx = server.nas_context(
            gw1(pki), "gw1", tls_max=ssl.TLSVersion.TLSv1_2, alpn=("radius/1.1",)
        )
        assert _handshake_refused(server, ctx)
        assert _counted(server, "radsec_radius_1_1_needs_tls13")
        _still_serving(server, pki)


@pytest.mark.parametrize("offer", [("radius/1.0",), ()])
def test_a_server_that_requires_1_1_refuses_1_0(
    tmp_path: Path, pki: Pki, offer: tuple[str, ...]
) -> None:
    with running(tmp_path, pki, radius_1_1="require") as server:
        assert _handshake_refused(server, server.nas_context(gw1(pki), "gw1", alpn=offer))
        assert _counted(server, "radsec_radius_1_1_required")

        async def run() -> int:
            ctx = server.nas_context(gw1(pki), "gw1-11", alpn=("radius/1.1",))
            nas = await TlsNas.connect(server.addr, ctx)
            reply = await nas.pap("alice", "wonderland")
            await nas.close()
            return reply.code

        assert asyncio.run(run()) == Code.ACCESS_ACCEPT


@contextmanager
def _enough_descriptors(needed: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE to ``needed`` for the test (the client and the server
    ends of every connection live in this process), back after it; skip (fail under CI)
    when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            message = f"{needed} file descriptors needed, the hard limit is {hard}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_idle_connections_up_to_the_limit(tmp_path: Path, pki: Pki) -> None:
    """The issue's 1,000 idle connections, up to ``max_connections``: one more is closed
    before TLS, the idle ones are closed after ``idle_timeout``, and the listener serves
    on.  EAPKIT_RADSEC_IDLE_CONNECTIONS=N for another count (about 15 s for 1,000 on a
    two-core machine: 2.4 s of handshakes, the rest is the idle timeout)."""
    n = int(os.environ.get("EAPKIT_RADSEC_IDLE_CONNECTIONS", "1000"))
    # Every handshake must be done before the first connection idles out: 1,000 took
    # 2.4 s on a loaded two-core machine, n / 80 leaves five times that.
    idle = max(2.0, n / 80)
    settings: dict[str, Any] = {
        "max_connections": n,
        "max_connections_per_client": n,
        "idle_timeout": idle,
    }
    with _enough_descriptors(2 * n + 256), running(tmp_path, pki, **settings) as server:
        ctx = server.nas_context(gw1(pki), "gw1")
        held: list[ssl.SSLSocket] = []
        try:
            for _ in range(n):
                raw = socket.create_connection(server.addr)
                held.append(ctx.wrap_socket(raw, server_hostname="radius.test"))
            deadline = time.monotonic() + 10
            while server.core.stats.get("radsec_connection_limit", 0) == 0:
                with socket.create_connection(server.addr) as raw:
                    raw.settimeout(5)
                    assert raw.recv(10) == b""  # closed before any TLS
                assert time.monotonic() < deadline
            assert all(_closed_by_server(tls, within=idle + 10) for tls in held)
        finally:
            for tls in held:
                tls.close()
        assert _counted(server, "radsec_idle_timeout", n)
        _still_serving(server, pki)


def test_no_tls13_session_tickets(tmp_path: Path, pki: Pki) -> None:
    """No NewSessionTicket after a TLS 1.3 handshake (RFC 8446 §4.6.1): FreeRADIUS 3.2.1
    proxying to eapkit loses the first reply when tickets race it (seen in
    tests/interop/test_radsec_serve_interop.py; docs/radsec.md)."""
    with running(tmp_path, pki) as server:
        ctx = server.nas_context(gw1(pki), "gw1", ssl.TLSVersion.TLSv1_3)
        with tls_connection(server.addr, ctx) as tls:
            assert tls.version() == "TLSv1.3"
            auth = bytes(range(16))
            attrs: list[Attribute] = [
                (Attr.USER_NAME, b"alice"),
                (Attr.USER_PASSWORD, hide_password(b"wonderland", RADSEC_SECRET, auth)),
            ]
            tls.sendall(
                encode_request(
                    Code.ACCESS_REQUEST,
                    1,
                    attrs,
                    RADSEC_SECRET,
                    authenticator=auth,
                    message_authenticator=False,
                )
            )
            head = _recv(tls, 4)
            reply = decode(head + _recv(tls, int.from_bytes(head[2:4], "big") - 4))
            assert reply.code == Code.ACCESS_ACCEPT
            # any ticket was sent before the reply, so it has been read by now
            session = tls.session
            assert session is not None and not session.has_ticket
