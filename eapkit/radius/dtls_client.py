"""The NAS side of RADIUS/DTLS (RFC 7360), for :class:`eapkit.radius.nas.RadiusClient`
(``eapkit probe --radsec --dtls``): one DTLS session on a connected UDP socket, with
pyOpenSSL's DTLS on memory BIOs, the client certificate of the RadSec settings, and
one RADIUS packet per DTLS record (RFC 7360 §2.2).

The handshake answers the server's HelloVerifyRequest (RFC 6347 §4.2.1) and resends
its flights on OpenSSL's DTLS timer; after it, RADIUS retransmits requests as over
UDP (the caller does).  The link offers what the client needs of a transport:
``sendto``, ``closed`` (why it ended, or None), ``alpn`` (always None) and ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from cryptography import x509
from OpenSSL import SSL

__all__ = ["DTLS_SECRET", "DtlsLink", "dtls_connect"]

DTLS_SECRET = b"radius/dtls"  # RFC 7360 §2.3
DTLS1_2_VERSION = 0xFEFD  # RFC 6347 §4.1
MAX_DATAGRAM = 65535


class DtlsLink(asyncio.DatagramProtocol):
    """One DTLS session to a RADIUS/DTLS server."""

    alpn: str | None = None  # RFC 9765 is TLS 1.3 only: RADIUS/1.0 here

    def __init__(
        self, conn: SSL.Connection, received: Callable[[bytes], None], lost: Callable[[str], None]
    ) -> None:
        self.conn = conn
        self.received = received
        self.lost = lost
        self.closed: str | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.established = False
        self._progress = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self.conn.bio_write(data)
        self._progress.set()
        if not self.established:
            return
        while True:
            try:
                packet = self.conn.recv(MAX_DATAGRAM)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._end("closed by the server")
                return
            except SSL.Error as exc:
                self._end(f"DTLS error: {exc}")
                return
            self.received(packet)
        self._flush()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable and the like: requests time out and retry

    def _end(self, why: str) -> None:
        if self.closed is None:
            self.closed = why
            self.lost(why)

    def _flush(self) -> None:
        try:
            out = self.conn.bio_read(MAX_DATAGRAM)
        except SSL.WantReadError:
            return
        if out and self.transport is not None:
            self.transport.sendto(out)

    async def handshake(self, timeout: float) -> None:
        """Run the handshake (cookie exchange included) or raise ``SSL.Error`` /
        ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._progress.clear()
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self._flush()
            else:
                self._flush()
                self.established = True
                return
            wait = self.conn.DTLSv1_get_timeout() or 1.0
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no DTLS handshake in time")
            try:
                await asyncio.wait_for(self._progress.wait(), min(wait, left))
            except TimeoutError:
                self.conn.DTLSv1_handle_timeout()  # resend the last flight
                self._flush()

    def sendto(self, wire: bytes) -> None:
        if self.closed is None:
            self.conn.send(wire)
            self._flush()

    def close(self) -> None:
        if self.transport is not None:
            with contextlib.suppress(SSL.Error):
                self.conn.shutdown()
                self._flush()
            self.transport.close()
            self.transport = None


def client_context(cert: Path, key: Path, ca: Path) -> SSL.Context:
    """The client's DTLS context: mutual authentication (RFC 7360 §2.1), DTLS 1.2+."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_QUERY_MTU)
    ctx.use_certificate_chain_file(str(cert))
    ctx.use_privatekey_file(str(key))
    ctx.check_privatekey()
    ctx.load_verify_locations(str(ca))
    ctx.set_verify(SSL.VERIFY_PEER)
    return ctx


async def dtls_connect(
    server: tuple[str, int],
    ctx: SSL.Context,
    received: Callable[[bytes], None],
    lost: Callable[[str], None],
    *,
    server_name: str | None = None,
    timeout: float = 10.0,
) -> DtlsLink:
    """A DTLS session to ``server``; the server certificate must name ``server_name``
    (a dNSName or CN, checked by OpenSSL) when given."""
    conn = SSL.Connection(ctx, None)
    if server_name is not None:
        conn.set_tlsext_host_name(server_name.encode())
    conn.set_ciphertext_mtu(1400)
    conn.set_connect_state()
    link = DtlsLink(conn, received, lost)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: link, remote_addr=server)
    try:
        await link.handshake(timeout)
        if server_name is not None and server_name not in _names(conn):
            raise SSL.Error(f"the server certificate does not name {server_name}")
    except BaseException:
        link.close()
        raise
    return link


def _names(conn: SSL.Connection) -> list[str]:
    """The dNSName SANs of the server's certificate (RFC 6125 §6.4: SANs, not the CN)."""
    cert = conn.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]
