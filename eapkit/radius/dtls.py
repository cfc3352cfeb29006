"""The RADIUS/DTLS front (RFC 7360): RADIUS datagrams inside DTLS on UDP, on
:class:`~eapkit.radius.front.Front`.

A NAS (or radsecproxy's ``type DTLS`` server) sends DTLS records to UDP port 2083;
one DTLS session per client address and port, each RADIUS packet one DTLS record::

    datagram ── session for this address? ── no: stateless cookie exchange
                │ yes                          (HelloVerifyRequest, RFC 6347 §4.2.1):
                │                              a valid cookie makes a session
                └── bytes into the session's memory BIO ── handshake (mutual, CRL)
                      └── client entry? ── records: front.receive(packet, client=entry)
                                             └── send: one record, one datagram

- clients are known by their certificate, exactly as on the RadSec listener (the same
  ``[[radsec.clients]]`` entries, CAs and CRLs; :class:`~eapkit.radius.radsec.ClientMatcher`);
- the fixed shared secret is ``radius/dtls`` (RFC 7360 §2.3);
- no state is kept for a ClientHello without a valid cookie, so a spoofed source
  address costs one HelloVerifyRequest, never a session (RFC 7360 §5.1, RFC 6347
  §4.2.1); the cookie is an HMAC of the address under a key made at start;
- a session idle for ``idle_timeout`` seconds (or whose handshake has not ended within
  ``handshake_timeout``) is forgotten; ``max_connections`` bounds the sessions (checked
  at a ClientHello with a valid cookie: ``connection_limit``, the ClientHello goes
  unanswered) and ``max_connections_per_client`` a client's sessions (checked once the
  handshake has named the client: ``client_connection_limit``);
- a session ended after its handshake (idle, ``unknown_client``,
  ``client_connection_limit``, ``client_removed``) is ended with a close_notify alert
  (RFC 5246 §7.2.1, kept by RFC 6347 §4.1), so the NAS learns it at once, as it would
  from a closed TCP connection, instead of sending requests into a forgotten session;
- a new ClientHello (epoch 0) from the address of a session starts a new session (a
  NAS that restarted, RFC 7360 §5.1.1);
- duplicates: the NAS retransmits over DTLS as over UDP (RFC 7360 §2.2), so the
  core's duplicate cache (keyed by address and port) works as for UDP, and a request
  the check pool gives up on is dropped for the NAS to resend (not refused, as
  RadSec over TCP must);
- handshake flights are retransmitted on OpenSSL's DTLS timer.

pyOpenSSL does the DTLS (``DTLS_METHOD``, ``DTLSv1_listen``, cookie callbacks, memory
BIOs): the standard library's ``ssl`` has no DTLS.  A flight is sent as one datagram
(the memory BIO keeps no datagram boundaries): fine on loopback and LANs whose MTU or
IP fragmentation carries a certificate chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

from eapkit.pki import load_crl
from eapkit.radius.clients import Client
from eapkit.radius.core import RadiusCore
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front
from eapkit.radius.packet import HEADER_SIZE, MAX_PACKET_SIZE
from eapkit.radius.radsec import ClientMatcher, ClientSource, RadsecClient, RadsecSettings
from eapkit.tlsio.config import CrlSource, PemSource
from eapkit.tlsio.records import HANDSHAKE  # DTLS keeps TLS's ContentType (RFC 6347 §4.1)

__all__ = ["DTLS_SECRET", "DtlsListener", "serve"]

log = logging.getLogger("eapkit.radius.dtls")

DTLS_SECRET = b"radius/dtls"  # RFC 7360 §2.3: the shared secret of RADIUS/DTLS
MAX_DATAGRAM = 65535
DTLS1_2_VERSION = 0xFEFD  # RFC 6347 §4.1 (pyOpenSSL names no DTLS versions)


def dtls_client(entry: RadsecClient) -> Client:
    """The core's view of a ``[[radsec.clients]]`` entry over DTLS."""
    return Client.of(
        "0.0.0.0/0",
        DTLS_SECRET,
        entry.name,
        entry.second_factor,
        bind_rounds=entry.bind_rounds,
    )


def _crl(source: PemSource) -> x509.CertificateRevocationList:
    if isinstance(source, str) and "-----BEGIN" in source:
        data = source.encode()
    elif isinstance(source, str | Path):
        data = Path(source).read_bytes()
    else:
        data = source
    return load_crl(data)


class DtlsContexts:
    """The listener's pyOpenSSL context, rebuilt when the CRLs or client entries change."""

    def __init__(self, settings: RadsecSettings, crls: CrlSource | None) -> None:
        if settings.cert is None or settings.key is None:
            raise ValueError("[radsec] needs cert and key")
        self.settings = settings
        self.crls = crls
        self._cookie_key = secrets.token_bytes(32)
        self._generation = -1
        self._context: SSL.Context | None = None
        self._stale = False

    def invalidate(self) -> None:
        self._stale = True

    def cookie(self, address: tuple[str, int]) -> bytes:
        """RFC 6347 §4.2.1: a cookie only this server makes, bound to the address."""
        text = f"{address[0]}|{address[1]}".encode()
        return hmac.new(self._cookie_key, text, hashlib.sha256).digest()

    def current(self) -> SSL.Context:
        if self.crls is not None:
            self.crls.poll()
        generation = self.crls.generation if self.crls is not None else 0
        if self._context is None:
            self._context = self._build()
        elif generation != self._generation or self._stale:
            self._stale = False
            try:
                self._context = self._build()
            except (OSError, ValueError, SSL.Error, crypto.Error) as exc:
                log.warning("dtls: new CRLs or CAs not in force, the previous stay: %s", exc)
        self._generation = generation
        return self._context

    def _build(self) -> SSL.Context:
        s = self.settings
        assert s.cert is not None and s.key is not None
        ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
        ctx.set_min_proto_version(DTLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET)
        ctx.use_certificate_chain_file(str(s.cert))
        ctx.use_privatekey_file(str(s.key))
        ctx.check_privatekey()
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        for ca in [*s.ca, *(c.ca for c in s.clients)]:
            ctx.load_verify_locations(str(ca))
        if self.crls is not None and self.crls.crls:
            store = ctx.get_cert_store()
            assert store is not None
            for source in self.crls.crls:
                store.add_crl(_crl(source))
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)

        def generate(conn: SSL.Connection) -> bytes:
            return self.cookie(conn.get_app_data())

        def verify(conn: SSL.Connection, cookie: bytes) -> bool:
            return hmac.compare_digest(cookie, self.cookie(conn.get_app_data()))

        ctx.set_cookie_generate_callback(generate)
        ctx.set_cookie_verify_callback(verify)
        return ctx


@dataclass
class _Session:
    """One NAS address's DTLS session."""

    conn: SSL.Connection
    address: tuple[str, int]
    started: float
    last: float
    client: Client | None = None
    entry: RadsecClient | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class DtlsListener(asyncio.DatagramProtocol):
    """DTLS sessions on one UDP socket, their RADIUS packets fed to ``front``."""

    def __init__(
        self,
        front: Front,
        settings: RadsecSettings,
        *,
        crls: CrlSource | None = None,
        clients: ClientSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.front = front
        self.settings = settings
        self.contexts = DtlsContexts(settings, crls)
        self.matcher = ClientMatcher(settings.clients)
        self.clients = clients
        self._clients_generation = clients.generation if clients is not None else 0
        self.clock = clock
        self.sessions: dict[tuple[str, int], _Session] = {}
        self.closed: dict[str, int] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local_port = int(transport.get_extra_info("sockname")[1])

    def _count(self, what: str) -> None:
        self.front.core.count(f"dtls_{what}")

    def _end(self, session: _Session, reason: str, detail: str = "") -> None:
        """End a session whose handshake is done: a close_notify (RFC 5246 §7.2.1) to
        the NAS, then forget it."""
        with contextlib.suppress(SSL.Error):
            session.conn.shutdown()
            self._flush(session.conn, session.address)
        self._closed(reason, session.address, detail)

    def _closed(self, reason: str, address: tuple[str, int], detail: str = "") -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
        self._count(reason)
        log.warning("dtls session from %s:%d closed: %s %s", *address, reason, detail)
        session = self.sessions.pop(address, None)
        if session is not None and session.timer is not None:
            session.timer.cancel()

    def _reload_clients(self) -> None:
        if self.clients is None:
            return
        self.clients.poll()
        if self.clients.generation == self._clients_generation:
            return
        self._clients_generation = self.clients.generation
        try:
            self.matcher = ClientMatcher(list(self.clients.clients))
        except (OSError, ValueError) as exc:
            log.warning("dtls: new [[radsec.clients]] not in force, the previous stay: %s", exc)
            return
        self.settings.clients = list(self.clients.clients)
        self.contexts.invalidate()
        kept = set(self.matcher.entries)
        for session in list(self.sessions.values()):
            if session.entry is not None and session.entry not in kept:  # removed or changed
                self._end(session, "client_removed", session.entry.name)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        address = (str(addr[0]), int(addr[1]))
        try:
            self._received(data, address)
        except Exception:  # one datagram must never stop the listener
            log.exception("dtls datagram from %s:%d failed", *address)
            self.front.core.count("internal_error")
            self.sessions.pop(address, None)

    def _received(self, data: bytes, address: tuple[str, int]) -> None:
        session = self.sessions.get(address)
        if session is not None and _is_new_client_hello(data):
            self._closed("restarted", address, "a new ClientHello")  # RFC 7360 §5.1.1
            session = None
        if session is None:
            session = self._listen(data, address)
            if session is None:
                return
        else:
            session.conn.bio_write(data)
        session.last = self.clock()
        self._pump(session)

    def _listen(self, data: bytes, address: tuple[str, int]) -> _Session | None:
        """A datagram from an address without a session: the stateless cookie exchange.
        Only a ClientHello with this server's cookie for that address gets a session."""
        if not _is_new_client_hello(data):
            self._count("no_session")  # stray records: nothing to answer
            return None
        self._reload_clients()
        conn = SSL.Connection(self.contexts.current(), None)
        conn.set_app_data(address)
        conn.set_ciphertext_mtu(1400)
        conn.set_accept_state()
        conn.bio_write(data)
        try:
            conn.DTLSv1_listen()
        except SSL.WantReadError:  # no or a wrong cookie: a HelloVerifyRequest, no state
            self._count("cookie_sent")
            self._flush(conn, address)
            return None
        except SSL.Error as exc:
            self._count("bad_client_hello")
            log.warning("dtls ClientHello from %s:%d refused: %s", *address, exc)
            return None
        if len(self.sessions) >= self.settings.max_connections:
            self._count("connection_limit")
            log.warning("dtls session from %s:%d refused: connection_limit", *address)
            return None
        now = self.clock()
        session = _Session(conn, address, now, now)
        self.sessions[address] = session
        return session

    def _flush(self, conn: SSL.Connection, address: tuple[str, int]) -> None:
        """Send what OpenSSL wrote (one flight or record) as one datagram."""
        try:
            out = conn.bio_read(MAX_DATAGRAM)
        except SSL.WantReadError:
            return
        if out and self.transport is not None:
            self.transport.sendto(out, address)

    def _pump(self, session: _Session) -> None:
        conn, address = session.conn, session.address
        if session.client is None:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                self._flush(conn, address)
                self._arm(session)
                return
            except SSL.Error as exc:
                reason = "certificate_refused" if "certificate" in str(exc) else "handshake_failed"
                self._closed(reason, address, str(exc))
                self._flush(conn, address)  # the alert, once the refusal is counted
                return
            self._flush(conn, address)
            if session.timer is not None:
                session.timer.cancel()
            cert = conn.get_peer_certificate(as_cryptography=True)
            der = cert.public_bytes(serialization.Encoding.DER) if cert is not None else b""
            entry = self.matcher.entry(der) if der else None
            if entry is None:
                self._end(session, "unknown_client", "no [[radsec.clients]] entry matches")
                return
            per_client = sum(
                1 for s in self.sessions.values() if s.client and s.client.name == entry.name
            )
            if per_client >= self.settings.max_connections_per_client:
                self._end(session, "client_connection_limit", entry.name)
                return
            session.client, session.entry = dtls_client(entry), entry
        while True:
            try:
                packet = conn.recv(MAX_DATAGRAM)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._closed("closed_by_peer", address)
                return
            except SSL.Error as exc:
                self._closed("bad_record", address, str(exc))
                return
            self._packet(session, packet)
        self._flush(conn, address)

    def _packet(self, session: _Session, packet: bytes) -> None:
        """One RADIUS packet, one DTLS record (RFC 7360 §2.2): its Length must agree."""
        length = int.from_bytes(packet[2:4], "big") if len(packet) >= 4 else 0
        if length < HEADER_SIZE or length > MAX_PACKET_SIZE or length > len(packet):
            self._count("bad_length")
            log.warning("dtls packet from %s:%d dropped: bad_length", *session.address)
            return
        assert session.client is not None

        def send(reply: bytes) -> None:
            if self.sessions.get(session.address) is not session:
                return  # the session ended meanwhile
            session.last = self.clock()
            session.conn.send(reply)
            self._flush(session.conn, session.address)

        self.front.receive(
            packet[:length],
            session.address,
            send,
            local_port=self.local_port,
            client=session.client,
        )

    def _arm(self, session: _Session) -> None:
        """Retransmit the handshake flight on OpenSSL's DTLS timer (RFC 6347 §4.2.4)."""
        if session.timer is not None:
            session.timer.cancel()
        timeout = session.conn.DTLSv1_get_timeout()
        if timeout is None:
            return

        def fire() -> None:
            session.timer = None
            if self.sessions.get(session.address) is not session or session.client:
                return
            with contextlib.suppress(SSL.Error):
                session.conn.DTLSv1_handle_timeout()
            self._flush(session.conn, session.address)
            self._arm(session)

        session.timer = asyncio.get_running_loop().call_later(max(timeout, 0.05), fire)

    def expire(self) -> None:
        """Forget idle sessions, handshakes that did not end in time, and the sessions of
        client entries removed or changed since (the entries are looked at here too)."""
        self._reload_clients()
        now = self.clock()
        for address, session in list(self.sessions.items()):
            if session.client is None:
                if now - session.started > self.settings.handshake_timeout:
                    self._closed("handshake_timeout", address)
            elif now - session.last > self.settings.idle_timeout:
                self._end(session, "idle_timeout", session.client.name)


def _is_new_client_hello(data: bytes) -> bool:
    """A DTLS handshake record of epoch 0 carrying a ClientHello (RFC 6347 §4.1, §4.2.2)."""
    return len(data) > 13 and data[0] == HANDSHAKE and data[3:5] == b"\x00\x00" and data[13] == 1


async def serve(
    core: RadiusCore,
    settings: RadsecSettings,
    *,
    crls: CrlSource | None = None,
    clients: ClientSource | None = None,
    ready: Callable[[list[tuple[str, int]]], None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    threads: int = 4,
    expire_interval: float = 1.0,
) -> None:
    """Serve RADIUS/DTLS on ``settings.dtls_listen`` until ``stop`` is set (or
    SIGTERM/SIGINT); ``ready`` gets the bound addresses."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    pool = FairPool(threads) if threads > 0 else None
    front = Front(core, clock, pool)  # the NAS retransmits: drops stay drops
    listeners: list[DtlsListener] = []
    transports: list[asyncio.DatagramTransport] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    bound: list[tuple[str, int]] = []
    try:
        for host, port in settings.dtls_listen:
            listener = DtlsListener(front, settings, crls=crls, clients=clients)
            listener.contexts.current()  # a bad certificate or key fails now
            transport, _ = await loop.create_datagram_endpoint(
                lambda listener=listener: listener,  # type: ignore[misc]
                local_addr=(host, port),
            )
            listeners.append(listener)
            transports.append(transport)
            sockname = transport.get_extra_info("sockname")
            bound.append((str(sockname[0]), int(sockname[1])))
        expiry = loop.create_task(front.expire_periodically(stop, expire_interval))
        if ready is not None:
            ready(bound)
        while not stop.is_set():
            for listener in listeners:
                listener.expire()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), expire_interval)
        await expiry
    finally:
        for transport in transports:
            transport.close()
        front.close()
