"""The RadSec front: RADIUS over TCP and TLS (RFC 6614), on :class:`~eapkit.radius.front.Front`.

A NAS (or radsecproxy beside it) opens one TLS connection and sends many requests on
it; the replies go back on the same connection, in whatever order their checks end::

    accept ── total limit? ── TLS handshake (mutual, 1.2/1.3, CRL) ── client entry?
              │ over: close    │ fails: log, close                  │ none / per-client
              │                                                     │ limit: log, close
              └──────────────────────────── read loop: 4-octet header, Length, body
                                              └── front.receive(packet, client=entry)
                                                    └── send: one record on this stream

- clients are known by their certificate, not their address: a ``[[radsec.clients]]``
  entry names the CA that issued it and a pattern for its subject CN (``subject``) or
  one of its dNSName SANs (``san``); the first entry that matches gives the client's
  name and policy (``second_factor``, ``bind_rounds``);
- RADIUS/1.0 over TLS uses the fixed shared secret ``radsec`` (RFC 6614 §2.3);
  the TLS session protects the hop, so a PAP Access-Request needs no
  Message-Authenticator here (EAP-Message and Status-Server still do, RFC 3579 §3.2,
  RFC 5997 §3);
- framing follows the RADIUS Length field (RFC 6614 §2.5): a Length below 20 or above
  4096 octets, or a packet that does not decode, closes the connection with a log
  line (the stream cannot be trusted past it);
- duplicate detection is keyed by the connection (its peer address and port), as
  RFC 6614 §2.6.4 asks: a request re-sent on a new connection is a new request;
- a connection with nothing outstanding that sends nothing for ``idle_timeout``
  seconds is closed, so is one that stops in the middle of a packet;
- ``max_connections`` bounds the connections (checked before the handshake) and
  ``max_connections_per_client`` those of one client entry;
- CRLs (``crl``) are checked for client certificates and reloaded when their files
  change (a :class:`~eapkit.tlsio.config.CrlSource`, ``eapkit.crl_reload.CrlFiles``
  in serve): the next handshake uses a new ``SSLContext``; one that cannot be built
  leaves the previous one in force;
- Status-Server (RFC 5997) is answered by the core like any other request;
- the ``[[radsec.clients]]`` entries are reloaded without a restart (a
  :class:`ClientSource`, ``eapkit.radsec_config.ClientsFile`` in serve: the TOML file
  looked at, at most once a second, when a connection arrives, and on ``SIGHUP``):
  new connections use the new list, and connections of an entry that was removed or
  changed are closed (``client_removed`` in the log); a list that cannot be read or
  built leaves the previous one in force.

The standard library's ``ssl`` module does the TLS: on a stream socket it is enough
(pyOpenSSL's memory BIOs are for TLS inside EAP, :mod:`eapkit.tlsio`), and
``StreamWriter.start_tls`` lets this module log every refused handshake with its
reason, which asyncio's own TLS server keeps to its debug log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import signal
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from eapkit.pki import load_crl
from eapkit.radius.clients import Client
from eapkit.radius.core import Drop, RadiusCore
from eapkit.radius.fairpool import FairPool
from eapkit.radius.front import Front
from eapkit.radius.packet import HEADER_SIZE, MAX_PACKET_SIZE
from eapkit.radius.radius11 import ALPN_1_0, ALPN_1_1, RADIUS_1_1
from eapkit.tlsio.config import CrlSource, PemSource

__all__ = [
    "RADSEC_SECRET",
    "ClientSource",
    "RadsecClient",
    "RadsecListener",
    "RadsecSettings",
    "serve",
]

log = logging.getLogger("eapkit.radius.radsec")

RADSEC_SECRET = b"radsec"  # RFC 6614 §2.3: the shared secret of RADIUS/1.0 over TLS
RADIUS_VERSIONS = ("1.0", "1.1")
DEFAULT_PORT = 2083  # RFC 6614 §2.1


@dataclass(frozen=True)
class RadsecClient:
    """A ``[[radsec.clients]]`` entry: certificates issued by ``ca`` whose subject CN
    matches ``subject`` or one of whose dNSName SANs matches ``san`` (shell patterns;
    neither given: any certificate of that CA)."""

    name: str
    ca: Path
    subject: str | None = None
    san: str | None = None
    second_factor: str = "enforce"
    bind_rounds: bool = True

    def client(self, version: str = "1.0") -> Client:
        """The core's view of this entry: its name and policy, the fixed secret (or,
        for RADIUS/1.1, none: :data:`~eapkit.radius.radius11.RADIUS_1_1`)."""
        return Client.of(
            "0.0.0.0/0",
            RADIUS_1_1 if version == "1.1" else RADSEC_SECRET,
            self.name,
            self.second_factor,
            bind_rounds=self.bind_rounds,
        )


@dataclass
class RadsecSettings:
    """The ``[radsec]`` table of ``eapkit serve``."""

    listen: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", DEFAULT_PORT)])
    cert: Path | None = None
    key: Path | None = None
    ca: list[Path] = field(default_factory=list)  # more CAs to trust (the entries' are added)
    crl: list[Path] = field(default_factory=list)
    clients: list[RadsecClient] = field(default_factory=list)
    idle_timeout: float = 120.0
    handshake_timeout: float = 10.0
    max_connections: int = 1000
    max_connections_per_client: int = 64
    min_version: str = "1.2"
    radius_1_1: str = "allow"  # RFC 9765 §3: "forbid", "allow" or "require"
    tls13_tickets: bool = False  # TLS 1.3 NewSessionTickets (off: FreeRADIUS 3.2.1)
    dtls_listen: list[tuple[str, int]] = field(default_factory=list)  # RFC 7360: UDP 2083
    session_lifetime: float = 3600.0  # seconds one ticket key / session cache serves


class ClientSource(Protocol):
    """``[[radsec.clients]]`` entries that change while the server runs: ``poll`` looks
    for a change cheaply (at most once per its interval), ``force`` has the next poll
    look in any case (``SIGHUP``); ``generation`` counts the changes, ``clients`` holds
    the current entries."""

    @property
    def generation(self) -> int: ...

    @property
    def clients(self) -> Sequence[RadsecClient]: ...

    def poll(self) -> None: ...

    def force(self) -> None: ...


_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The subject CNs and dNSName SANs of ``cert``."""
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns = []
    return cns, dns


class ClientMatcher:
    """Finds the ``[[radsec.clients]]`` entry of a verified client certificate."""

    def __init__(self, entries: Sequence[RadsecClient]) -> None:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("two [[radsec.clients]] entries have the same name")
        self.entries = list(entries)
        self._cas = {e.name: x509.load_pem_x509_certificates(e.ca.read_bytes()) for e in entries}
        self._clients = {(e.name, v): e.client(v) for e in entries for v in RADIUS_VERSIONS}

    def find(self, der: bytes, version: str = "1.0") -> Client | None:
        entry = self.entry(der)
        return None if entry is None else self.client(entry, version)

    def client(self, entry: RadsecClient, version: str = "1.0") -> Client:
        """The core's view of ``entry`` (one of this matcher's) for ``version``."""
        return self._clients[entry.name, version]

    def entry(self, der: bytes) -> RadsecClient | None:
        """The first entry whose CA issued the certificate ``der`` and whose patterns
        its names match."""
        cert = x509.load_der_x509_certificate(der)
        cns, dns = _names(cert)
        for entry in self.entries:
            if not any(_issued_by(cert, ca) for ca in self._cas[entry.name]):
                continue
            if entry.subject is not None and not any(
                fnmatch.fnmatchcase(cn, entry.subject) for cn in cns
            ):
                continue
            if entry.san is not None and not any(fnmatch.fnmatchcase(n, entry.san) for n in dns):
                continue
            return entry
        return None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, a key type that cannot sign: not this CA
        return False
    return True


class ServerContexts:
    """The listener's ``SSLContext``, rebuilt when a CRL file or the client entries
    change and every ``session_lifetime`` seconds.

    TLS session resumption lives in the context: OpenSSL's server session cache (TLS
    1.2 session IDs, RFC 5246 §7.4.1.2) and its session-ticket key (RFC 5077 tickets
    in TLS 1.2; with ``tls13_tickets``, RFC 8446 §4.6.1 tickets), a random key made
    with the context and never written anywhere.  A new context forgets both, so:

    - the ticket key rotates every ``session_lifetime`` seconds;
    - after a CRL or a ``[[radsec.clients]]`` change no earlier session resumes: the
      next handshake of every NAS is a full one, checked against the new CRLs (a
      resumed handshake checks no certificate, RFC 5077 §3.4);
    - a resumed connection's certificate (kept in the session) still goes through the
      client entries like a fresh one's (:meth:`RadsecListener.handle`).
    """

    def __init__(
        self,
        settings: RadsecSettings,
        crls: CrlSource | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.cert is None or settings.key is None:
            raise ValueError("[radsec] needs cert and key")
        self.settings = settings
        self.crls = crls
        self.clock = clock
        self._generation = -1
        self._context: ssl.SSLContext | None = None
        self._built = 0.0
        self._stale = False

    def invalidate(self) -> None:
        """Build a new context for the next handshake (the client entries' CAs changed)."""
        self._stale = True

    def current(self) -> ssl.SSLContext:
        if self.crls is not None:
            self.crls.poll()
        generation = self.crls.generation if self.crls is not None else 0
        now = self.clock()
        if self._context is None:
            self._context, self._built = self._build(), now
        elif (
            generation != self._generation
            or self._stale
            or now - self._built >= self.settings.session_lifetime
        ):
            self._stale = False
            self._built = now  # a context that cannot be built is not retried at once
            try:
                self._context = self._build()
            except (OSError, ValueError, ssl.SSLError) as exc:
                log.warning("radsec: new CRLs or CAs not in force, the previous stay: %s", exc)
        self._generation = generation
        return self._context

    def _build(self) -> ssl.SSLContext:
        s = self.settings
        assert s.cert is not None and s.key is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # No TLS 1.3 NewSessionTickets (RFC 8446 §4.6.1) unless asked for: FreeRADIUS
        # 3.2.1 proxying to us loses the first reply on a fresh connection when they
        # race it (docs/radsec.md).  TLS 1.2 resumption (session IDs, RFC 5077
        # tickets: in the handshake, nothing to race) stays on, OpenSSL's default.
        ctx.num_tickets = 2 if s.tls13_tickets else 0
        ctx.minimum_version = _VERSIONS[s.min_version]
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(s.cert, s.key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        for ca in [*s.ca, *(c.ca for c in s.clients)]:
            ctx.load_verify_locations(cafile=str(ca))
        # the server's preference wins: radius/1.1 whenever the client offers it (RFC 9765 §3)
        ctx.set_alpn_protocols(
            {"forbid": [ALPN_1_0], "allow": [ALPN_1_1, ALPN_1_0], "require": [ALPN_1_1]}[
                s.radius_1_1
            ]
        )
        if self.crls is not None and self.crls.crls:
            for data in self.crls.crls:
                _load_crl(ctx, data)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx


def _load_crl(ctx: ssl.SSLContext, source: PemSource) -> None:
    """Add one CRL (PEM or DER) to ``ctx``'s store: OpenSSL reads CRLs from PEM files."""
    if isinstance(source, str) and "-----BEGIN" in source:
        data = source.encode()
    elif isinstance(source, str | Path):
        data = Path(source).read_bytes()
    else:
        data = source
    crl = load_crl(data)
    fd, name = tempfile.mkstemp(suffix=".crl.pem")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(crl.public_bytes(serialization.Encoding.PEM))
        ctx.load_verify_locations(cafile=name)
    finally:
        os.unlink(name)


class RadsecListener:
    """Accepts RadSec connections and feeds their packets to ``front``."""

    def __init__(
        self,
        front: Front,
        settings: RadsecSettings,
        *,
        crls: CrlSource | None = None,
        front_1_1: Front | None = None,
        clients: ClientSource | None = None,
    ) -> None:
        self.front = front
        self.front_1_1 = front_1_1 or front  # RADIUS/1.1 connections' (their own log stamp)
        self.settings = settings
        self.contexts = ServerContexts(settings, crls)
        self.matcher = ClientMatcher(settings.clients)
        self.clients = clients
        self._clients_generation = clients.generation if clients is not None else 0
        self._open: dict[asyncio.Task[None], tuple[RadsecClient | None, str]] = {}
        self.connections = 0
        self.per_client: dict[str, int] = {}
        self.closed: dict[str, int] = {}  # why connections ended, for tests and stats
        self._tasks: set[asyncio.Task[None]] = set()

    def reload_clients(self, *, force: bool = False) -> None:
        """Take in a new ``[[radsec.clients]]`` list, if the source has one (``force``:
        look now, ``SIGHUP``), and close the connections of removed or changed entries."""
        if self.clients is None:
            return
        if force:
            self.clients.force()
        self.clients.poll()
        if self.clients.generation == self._clients_generation:
            return
        self._clients_generation = self.clients.generation
        entries = list(self.clients.clients)
        try:
            matcher = ClientMatcher(entries)
        except (OSError, ValueError) as exc:
            log.warning("radsec: new [[radsec.clients]] not in force, the previous stay: %s", exc)
            return
        self.matcher = matcher
        self.settings.clients = entries
        self.contexts.invalidate()
        kept = set(entries)
        for task, (entry, peer) in list(self._open.items()):
            if entry is not None and entry not in kept:
                self._closed("client_removed", peer, entry.name)
                task.cancel()
        log.warning("radsec: [[radsec.clients]] reloaded: %s", ", ".join(e.name for e in entries))

    def _version(self, ssl_object: ssl.SSLObject, peer: str) -> str | None:
        """The RADIUS version ALPN chose (RFC 9765 §3): radius/1.1 only over TLS 1.3;
        no ALPN is radius/1.0, unless this server requires 1.1.  None: refused."""
        alpn = ssl_object.selected_alpn_protocol()
        if alpn == ALPN_1_1:
            if ssl_object.version() != "TLSv1.3":
                self._closed("radius_1_1_needs_tls13", peer, str(ssl_object.version()))
                return None
            return "1.1"
        if self.settings.radius_1_1 == "require":
            self._closed("radius_1_1_required", peer, f"ALPN {alpn}")
            return None
        return "1.0"

    async def close(self) -> None:
        """End every open connection (shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _closed(self, reason: str, peer: str, detail: str = "") -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
        self.front.core.count(f"radsec_{reason}")
        log.warning("radsec connection from %s closed: %s %s", peer, reason, detail)

    def accepted(self, transport: asyncio.Transport) -> None:
        """A TCP connection is up: nothing is read until TLS takes it over (bytes read
        before ``start_tls`` would be lost to the handshake)."""
        transport.pause_reading()
        self.reload_clients()
        task = asyncio.get_running_loop().create_task(self.handle(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._open.pop(t, None))

    async def handle(self, transport: asyncio.Transport) -> None:
        """One connection, from accept to close."""
        peername = transport.get_extra_info("peername") or ("", 0)
        source = (str(peername[0]), int(peername[1]))
        peer = f"{source[0]}:{source[1]}"
        if self.connections >= self.settings.max_connections:
            self._closed("connection_limit", peer)
            transport.abort()
            return
        self.connections += 1
        client: Client | None = None
        writer: asyncio.StreamWriter | None = None
        loop = asyncio.get_running_loop()
        try:
            reader = asyncio.StreamReader()
            protocol = _TlsStreamProtocol(reader)
            try:
                tls = await loop.start_tls(
                    transport,
                    protocol,
                    self.contexts.current(),
                    server_side=True,
                    ssl_handshake_timeout=self.settings.handshake_timeout,
                )
            except ssl.SSLCertVerificationError as exc:
                self._closed("certificate_refused", peer, exc.verify_message or str(exc))
                return
            except (ssl.SSLError, OSError, TimeoutError) as exc:
                self._closed("handshake_failed", peer, f"{type(exc).__name__} {exc}")
                return
            assert tls is not None
            writer = asyncio.StreamWriter(tls, protocol, reader, loop)
            ssl_object = writer.get_extra_info("ssl_object")
            version = self._version(ssl_object, peer)
            if version is None:
                return
            if ssl_object.session_reused:  # the certificate is the session's: match it
                self.front.core.count("radsec_resumed")
            der = ssl_object.getpeercert(binary_form=True)
            matcher = self.matcher
            entry = matcher.entry(der) if der else None
            client = matcher.client(entry, version) if entry is not None else None
            if client is None:
                self._closed("unknown_client", peer, "no [[radsec.clients]] entry matches")
                return
            if self.per_client.get(client.name, 0) >= self.settings.max_connections_per_client:
                self._closed("client_connection_limit", peer, client.name)
                client = None
                return
            self.per_client[client.name] = self.per_client.get(client.name, 0) + 1
            task = asyncio.current_task()
            if task is not None:
                self._open[task] = (entry, peer)
            front = self.front_1_1 if version == "1.1" else self.front
            await self._read_packets(reader, writer, client, source, peer, front)
        except Exception:  # one connection must never stop the listener
            log.exception("radsec connection from %s failed", peer)
            self.front.core.count("internal_error")
        finally:
            self.connections -= 1
            if client is not None:
                self.per_client[client.name] -= 1
            if writer is None:
                transport.close()
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read_packets(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: Client,
        source: tuple[str, int],
        peer: str,
        front: Front,
    ) -> None:
        """Packets until the peer closes, misframes, or idles (RFC 6614 §2.5).  Idle:
        nothing read and no reply sent for ``idle_timeout`` seconds."""
        local_port = int((writer.get_extra_info("sockname") or ("", 0))[1])
        loop = asyncio.get_running_loop()
        last = loop.time()

        def send(reply: bytes) -> None:
            nonlocal last
            last = loop.time()
            if not writer.is_closing():
                writer.write(reply)

        idle = self.settings.idle_timeout
        burst = 0  # records handled since this connection last let the loop go round
        while True:
            try:
                # asyncio.timeout, not wait_for: no task per read (a third of the
                # per-request CPU with many requests in flight, benchmarks/bench_radsec)
                async with asyncio.timeout(idle):
                    head = await reader.readexactly(4)
            except TimeoutError:
                if loop.time() - last < idle:
                    continue  # a reply went out meanwhile: not idle
                self._closed("idle_timeout", peer, client.name)
                return
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self._closed("truncated", peer, client.name)
                return  # the peer closed the connection
            except (ConnectionError, ssl.SSLError):
                return
            length = int.from_bytes(head[2:4], "big")
            if length < HEADER_SIZE or length > MAX_PACKET_SIZE:
                self._closed("bad_length", peer, f"{client.name}: Length {length}")
                return
            try:
                async with asyncio.timeout(idle):
                    body = await reader.readexactly(length - 4)
            except TimeoutError:
                self._closed("half_packet", peer, client.name)
                return
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                self._closed("truncated", peer, client.name)
                return
            last = loop.time()
            handled = front.receive(head + body, source, send, local_port=local_port, client=client)
            if isinstance(handled, Drop) and handled.reason == "malformed":
                self._closed("malformed", peer, client.name)
                return
            await writer.drain()
            burst += 1
            if burst >= front.inline_per_tick:
                # A read can hold many records: after a client's inline share of one
                # loop iteration, let the other connections and datagrams run, then go
                # on with a fresh share (inline, not to the pool: issue 21)
                burst = 0
                await asyncio.sleep(0)


class _TlsStreamProtocol(asyncio.StreamReaderProtocol):
    def eof_received(self) -> bool:
        super().eof_received()
        return False  # under TLS the transport closes on EOF anyway


class _Accepting(asyncio.Protocol):
    """The protocol of a fresh TCP connection, until TLS replaces it."""

    def __init__(self, listener: RadsecListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.listener.accepted(transport)


async def serve(
    core: RadiusCore,
    settings: RadsecSettings,
    *,
    crls: CrlSource | None = None,
    core_1_1: RadiusCore | None = None,
    clients: ClientSource | None = None,
    ready: Callable[[list[tuple[str, int]]], None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    threads: int = 4,
    pool_deadline: float = 5.0,
    expire_interval: float = 1.0,
) -> None:
    """Serve RadSec on ``settings.listen`` until ``stop`` is set (or SIGTERM/SIGINT);
    ``ready`` gets the bound addresses (useful with port 0).  ``core_1_1`` answers the
    RADIUS/1.1 connections (``core`` when None): the same checks, another log stamp.
    ``clients`` reloads the ``[[radsec.clients]]`` entries (also on ``SIGHUP``).

    A request the pool gives up on (its client's queue full, or not started within
    ``pool_deadline`` seconds: longer than UDP's 2 s, because a NAS over TCP is still
    waiting for its one copy of the request, where a UDP NAS has resent it by then) is
    answered with an Access-Reject, its reason
    (``queue_full``, ``queue_timeout``) in the decision log.  Over UDP such a request
    is dropped and the NAS retransmits; over TCP it must not (RFC 6613 §2.6.1: no
    retransmission on an open connection, nor on another one while the first is open),
    so a dropped request would hang until the NAS's own timeout.  Closing the
    connection (the other way the RFC leaves the NAS to recover: retransmitting over a
    new one) would throw away every other request in flight on it, from every user
    behind that NAS, and bring them all back at once while the server is overloaded;
    a Reject ends one login, fast and logged."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    pool = FairPool(threads, deadline=pool_deadline) if threads > 0 else None
    front = Front(core, clock, pool, reliable=True)
    front_1_1 = Front(core_1_1, clock, pool, reliable=True) if core_1_1 is not None else None
    listener = RadsecListener(front, settings, crls=crls, front_1_1=front_1_1, clients=clients)
    listener.contexts.current()  # a bad certificate or key fails now, not at the first NAS
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if clients is not None:
        previous = signal.getsignal(signal.SIGHUP)

        def hangup() -> None:  # the handler it replaces (CRL reload) still runs
            if callable(previous):
                previous(signal.SIGHUP, None)
            listener.reload_clients(force=True)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, hangup)
    servers: list[asyncio.Server] = []
    bound: list[tuple[str, int]] = []
    try:
        for host, port in settings.listen:
            server = await loop.create_server(
                lambda: _Accepting(listener),
                host,
                port,
                backlog=min(settings.max_connections, 4096),
            )
            servers.append(server)
            sockname = server.sockets[0].getsockname()
            bound.append((str(sockname[0]), int(sockname[1])))
        expiry = loop.create_task(front.expire_periodically(stop, expire_interval))
        if ready is not None:
            ready(bound)
        await stop.wait()
        await expiry
    finally:
        for server in servers:
            server.close()
        await listener.close()
        front.close()
