"""The NAS side of RADIUS: send Access-Requests, carry a peer's EAP conversation over
them, recover the keys the server sends (what ``eapkit probe`` and the load generator
are built on).

:class:`RadiusClient` is one UDP socket with up to 256 outstanding requests (one per
RADIUS Identifier), retransmitting on timeout (RFC 2865 §2.5, RFC 5080 §2.2.1: the
same Identifier and Request Authenticator).  :func:`authenticate` runs a
:class:`~eapkit.session.PeerSession` over it the way a NAS does (RFC 3579 §2.1): the NAS
asks for the identity itself, then relays EAP-Message and State until Accept or Reject.

With ``radsec=`` (:class:`RadsecSettings`) the client speaks RADIUS over TLS instead
(RadSec, RFC 6614): one TCP + TLS connection with a client certificate, packets framed
on their Length field (RFC 6614 §2.5, RFC 6613 §2.6.4, :class:`RadiusStream`), the
fixed shared secret ``radsec`` (RFC 6614 §2.3) and no retransmission, since TCP
already does it (RFC 6613 §2.6.1); ALPN ``radius/1.0`` may be offered (RFC 9765 §3).
When the server agrees to ``radius/1.1`` the packets are RADIUS/1.1 (RFC 9765,
:mod:`eapkit.radius.radius11`): a Token matches replies, no MD5, MPPE keys in clear.
Everything above the transport, :func:`authenticate` included, is the same.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from OpenSSL import SSL

from eapkit.errors import DecodeError, EapkitError
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius import radius11
from eapkit.radius.dictionary import Attr, encode_integer
from eapkit.radius.dtls_client import DtlsLink, client_context, dtls_connect
from eapkit.radius.mppe import MppeKeys, recover_mppe_keys
from eapkit.radius.packet import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    Attribute,
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_request,
    new_request_authenticator,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.session import Discard, PeerSession, Result, Send

__all__ = [
    "RADSEC_SECRET",
    "ProbeResult",
    "RadiusClient",
    "RadiusStream",
    "RadiusTimeout",
    "RadsecError",
    "RadsecSettings",
    "authenticate",
    "radsec_context",
]

RADSEC_SECRET = b"radsec"
"""The shared secret of RADIUS/1.0 over TLS (RFC 6614 §2.3)."""


class RadiusTimeout(EapkitError):
    """No valid reply after every retransmission."""


class RadsecError(EapkitError):
    """The RadSec connection could not be made or was closed (refused certificate,
    ALPN not agreed, a framing error from the server)."""


class RadiusStream:
    """Splits a byte stream into RADIUS packets on their Length field (RFC 6614 §2.5,
    RFC 6613 §2.6.4): sans-I/O, fed whatever the connection read.

    A Length under 20 or over 4096 (RFC 2865 §3) raises :class:`DecodeError`: the
    stream cannot be resynchronised and the connection must be closed (RFC 6613
    §2.6.4)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0  # stream offset of the buffer's first byte, for errors

    @property
    def pending(self) -> int:
        """Bytes of an unfinished packet held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the packets it completed, in order."""
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[2:4], "big")
            if not HEADER_SIZE <= length <= MAX_PACKET_SIZE:
                raise DecodeError(
                    f"RADIUS Length {length} on a stream",
                    offset=self._offset + 2,
                    expected=f"{HEADER_SIZE}..{MAX_PACKET_SIZE}",
                )
            if len(self._buffer) < length:
                break
            packets.append(bytes(self._buffer[:length]))
            del self._buffer[:length]
            self._offset += length
        return packets


@dataclass(frozen=True)
class RadsecSettings:
    """A RadSec client's TLS settings (RFC 6614 §2.3): the client certificate and key
    it presents, the CAs that issue server certificates, the name the server
    certificate must carry (None: any name from those CAs, as radsecproxy's
    ``CertificateNameCheck off``), and the ALPN names to offer (RFC 9765 §3.1)."""

    cert: Path
    key: Path
    ca: Path
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    dtls: bool = False  # RADIUS over DTLS (RFC 7360) instead of TLS over TCP


def radsec_context(settings: RadsecSettings) -> ssl.SSLContext:
    """The client's TLS context: mutual authentication is mandatory in RadSec
    (RFC 6614 §2.3), TLS 1.2 at least (RFC 9765 §3 asks 1.3 for RADIUS/1.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = settings.min_version
    if settings.alpn == (radius11.ALPN_1_1,):
        context.minimum_version = ssl.TLSVersion.TLSv1_3  # RFC 9765 §3.2
    context.load_verify_locations(cafile=str(settings.ca))
    context.load_cert_chain(str(settings.cert), str(settings.key))
    context.check_hostname = settings.server_name is not None
    if settings.alpn:
        context.set_alpn_protocols(list(settings.alpn))
    return context


class _StreamLink:
    """One RadSec connection: writes packets, reads and deframes replies."""

    def __init__(
        self, owner: RadiusClient, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.owner = owner
        self.writer = writer
        self.alpn: str | None = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        self.closed: str | None = None
        self.task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        stream = RadiusStream()
        why = "closed by the server"
        try:
            while data := await reader.read(65536):
                for packet in stream.feed(data):
                    self.owner._received(packet)
        except DecodeError as exc:
            why = f"framing error from the server: {exc}"
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            why = f"closed: {getattr(exc, 'reason', None) or type(exc).__name__}"
        self.closed = why
        self.owner._link_lost(why)
        self.writer.close()

    def sendto(self, wire: bytes) -> None:
        if self.closed is None:
            self.writer.write(wire)

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: RadiusClient) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.owner._received(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: the request times out and retries


class RadiusClient:
    """A RADIUS client on one UDP socket (use it from one event loop)."""

    def __init__(
        self,
        server: tuple[str, int],
        secret: bytes,
        *,
        timeout: float = 3.0,
        retries: int = 3,
        random: RandomSource = SYSTEM_RANDOM,
        fresh_socket: bool = False,
        radsec: RadsecSettings | None = None,
    ) -> None:
        self.server = server
        self.secret = secret
        self.radsec = radsec
        self._link: _StreamLink | DtlsLink | None = None
        self.timeout = timeout
        self.retries = retries
        self.random = random
        # A new UDP socket (so a new source port) per request, as some gateways do;
        # retransmissions of a request keep its socket.
        self.fresh_socket = fresh_socket
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, tuple[bytes, asyncio.Future[Packet]]] = {}
        self._pending11: dict[bytes, asyncio.Future[Packet]] = {}
        self._tokens = radius11.TokenCounter(random)
        self._next_id = random.random_bytes(1)[0]
        self._free = asyncio.Semaphore(256)
        self.retransmissions = 0

    @property
    def radius11(self) -> bool:
        """Whether this connection speaks RADIUS/1.1 (RFC 9765)."""
        return self._link is not None and self._link.alpn == radius11.ALPN_1_1

    @property
    def alpn(self) -> str | None:
        """The ALPN name the RadSec server selected (None: none, or UDP)."""
        return self._link.alpn if self._link is not None else None

    async def open(self) -> RadiusClient:
        if self.radsec is not None:
            await self._connect(self.radsec)
            return self
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ClientProtocol(self), remote_addr=self.server
        )
        self._transport = transport
        return self

    async def _connect(self, settings: RadsecSettings) -> None:
        host, port = self.server
        if settings.dtls:
            self._link = await self._connect_dtls(settings)
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host,
                    port,
                    ssl=radsec_context(settings),
                    server_hostname=settings.server_name or host,
                ),
                self.timeout * (self.retries + 1),
            )
        except TimeoutError:
            raise RadsecError(f"no TLS connection to {host}:{port} in time") from None
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
            reason = reason or type(exc).__name__
            raise RadsecError(f"TLS connection to {host}:{port} failed: {reason}") from None
        link = _StreamLink(self, reader, writer)
        # No ALPN in the reply is a server from before RFC 9765: RADIUS/1.0, which is
        # fine only if we offered it (RFC 9765 §3.3).
        agreed = link.alpn or ("radius/1.0" if settings.alpn else None)
        if settings.alpn and agreed not in settings.alpn:
            link.close()
            offered = ", ".join(settings.alpn)
            raise RadsecError(f"{host}:{port} agreed to none of ALPN {offered}")
        self._link = link

    async def _connect_dtls(self, settings: RadsecSettings) -> DtlsLink:
        host, port = self.server
        try:
            return await dtls_connect(
                self.server,
                client_context(settings.cert, settings.key, settings.ca),
                self._received,
                self._link_lost,
                server_name=settings.server_name,
                timeout=self.timeout * (self.retries + 1),
            )
        except TimeoutError:
            raise RadsecError(f"no DTLS session with {host}:{port} in time") from None
        except (SSL.Error, OSError) as exc:
            raise RadsecError(f"DTLS session with {host}:{port} failed: {exc}") from None

    def _link_lost(self, why: str) -> None:
        futures = [f for _, f in self._pending.values()] + list(self._pending11.values())
        for future in futures:
            if not future.done():
                future.set_exception(RadsecError(why))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._link is not None:
            self._link.close()
            self._link = None

    async def __aenter__(self) -> RadiusClient:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def _received(self, data: bytes) -> None:
        if self.radius11:
            self._received11(data)
            return
        try:
            reply = decode(data)
        except DecodeError:
            return
        pending = self._pending.get(reply.identifier)
        if pending is None:
            return
        authenticator, future = pending
        if future.done():
            return
        if not reply.verify_response_authenticator(self.secret, authenticator):
            return  # not for us, or forged: keep waiting (RFC 2865 §3)
        if reply.message_authenticator is not None and not reply.verify_message_authenticator(
            self.secret, authenticator, Code.ACCESS_REQUEST
        ):
            return
        future.set_result(reply)

    def _received11(self, data: bytes) -> None:
        # RFC 9765 §4.2: the Token alone matches the reply; TLS vouches for it.
        try:
            reply = radius11.decode(data)
        except DecodeError:
            return
        future = self._pending11.get(radius11.token_of(reply))
        if future is not None and not future.done():
            future.set_result(reply)

    def _allocate(self) -> int:
        for _ in range(256):
            ident = self._next_id
            self._next_id = (self._next_id + 1) & 0xFF
            if ident not in self._pending:
                return ident
        raise RuntimeError("256 requests outstanding")  # pragma: no cover - semaphore

    async def request(
        self,
        attributes: Sequence[Attribute],
        code: int = Code.ACCESS_REQUEST,
        *,
        authenticator: bytes | None = None,
    ) -> tuple[Packet, bytes]:
        """Send one request and wait for its reply; returns (reply, Request Authenticator).

        ``authenticator``: the Request Authenticator to use, for a caller that hid a
        User-Password with it (RFC 2865 §5.2); fresh random octets by default."""
        if self.radsec is not None:
            if self._link is None:
                await self.open()
            assert self._link is not None
            if self._link.closed is not None:
                raise RadsecError(self._link.closed)
            if self.radius11:
                return await self._exchange11(self._link, attributes, code)
            return await self._exchange(self._link, attributes, code, authenticator)
        if self._transport is None:
            await self.open()
        assert self._transport is not None
        transport = self._transport
        if self.fresh_socket:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _ClientProtocol(self), remote_addr=self.server
            )
        try:
            return await self._exchange(transport, attributes, code, authenticator)
        finally:
            if transport is not self._transport:
                transport.close()

    async def _exchange11(
        self, link: _StreamLink | DtlsLink, attributes: Sequence[Attribute], code: int
    ) -> tuple[Packet, bytes]:
        """One RADIUS/1.1 request; returns (reply, Token)."""
        async with self._free:
            token = self._tokens.next()
            while token in self._pending11:  # pragma: no cover - 2**32 outstanding
                token = self._tokens.next()
            wire = radius11.encode(code, token, attributes)
            future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
            self._pending11[token] = future
            try:
                link.sendto(wire)
                wait = self.timeout * (self.retries + 1)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait), token
                except TimeoutError:
                    host, port = self.server
                    raise RadiusTimeout(f"no reply from {host}:{port} in {wait:g} s") from None
            finally:
                del self._pending11[token]
                if not future.done():
                    future.cancel()

    async def _exchange(
        self,
        transport: asyncio.DatagramTransport | _StreamLink | DtlsLink,
        attributes: Sequence[Attribute],
        code: int,
        authenticator: bytes | None = None,
    ) -> tuple[Packet, bytes]:
        async with self._free:
            ident = self._allocate()
            if authenticator is None:
                authenticator = new_request_authenticator(self.random)
            wire = encode_request(
                code, ident, list(attributes), self.secret, authenticator=authenticator
            )
            if code != Code.ACCESS_REQUEST:
                authenticator = wire[4:20]
            future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
            self._pending[ident] = (authenticator, future)
            try:
                stream = isinstance(transport, _StreamLink)
                for attempt in range(self.retries + 1):
                    # Over TCP the transport retransmits, not RADIUS (RFC 6613 §2.6.1).
                    if not attempt or not stream:
                        self.retransmissions += bool(attempt)
                        transport.sendto(wire)
                    try:
                        reply = await asyncio.wait_for(asyncio.shield(future), self.timeout)
                    except TimeoutError:
                        continue
                    return reply, authenticator
                host, port = self.server
                raise RadiusTimeout(f"no reply from {host}:{port} after {attempt + 1} tries")
            finally:
                del self._pending[ident]
                if not future.done():
                    future.cancel()


@dataclass
class ProbeResult:
    """What a NAS learns from one authentication."""

    accepted: bool
    peer: Result | None
    reply: Packet | None = None
    mppe: MppeKeys | None = None
    eap_key_name: bytes | None = None
    rounds: int = 0
    duration: float = 0.0
    reply_attributes: dict[str, str] = field(default_factory=dict)

    @property
    def keys_match(self) -> bool | None:
        """Do the MPPE keys and EAP-Key-Name the server sent equal what the peer
        derived?  None when the method derived no keys."""
        if self.peer is None or self.peer.keys is None:
            return None
        if self.mppe is None:
            return False
        msk = self.peer.keys.msk
        recv, send = self.mppe.recv, self.mppe.send
        if len(recv) == 16 and len(send) == 16:
            # 16-byte MPPE keys (hostapd and FreeRADIUS for MS-CHAPv2, [MS-CHAP]
            # §3.1.5.1): Recv | Send is the first half of the MSK, as eapol_test checks.
            ok = hmac.compare_digest(recv + send, msk[:32])
        else:
            ok = hmac.compare_digest(recv, msk[:32]) and hmac.compare_digest(send, msk[32:64])
        if self.peer.keys.session_id and self.eap_key_name is not None:
            ok = ok and self.eap_key_name == self.peer.keys.session_id
        return ok


async def authenticate(
    client: RadiusClient,
    peer: PeerSession,
    *,
    nas_attributes: Sequence[Attribute] = (),
    max_rounds: int = 100,
) -> ProbeResult:
    """Run ``peer``'s conversation over RADIUS to the end."""
    started = time.perf_counter()
    # The NAS runs the Identity round itself (RFC 3579 §2.1), as eapol_test does.
    first = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    assert isinstance(first, Send)
    eap = first.packet
    user_name = peer.identity[:253]
    state: bytes | None = None
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        attrs: list[Attribute] = [(Attr.USER_NAME, user_name)]
        attrs += [
            (Attr.SERVICE_TYPE, encode_integer(2)),
            (Attr.FRAMED_MTU, encode_integer(1400)),
            *nas_attributes,
        ]
        attrs += eap_message_attributes(eap)
        if state is not None:
            attrs.append((Attr.STATE, state))
        reply, authenticator = await client.request(attrs)
        eap_in = reply.eap_message()
        if reply.code == Code.ACCESS_CHALLENGE:
            if eap_in is None:
                break
            state = reply.get(Attr.STATE)
            action = peer.receive(eap_in)
            if isinstance(action, Send):
                eap = action.packet
                continue
            if isinstance(action, Discard):
                break
            return _result(False, peer, reply, authenticator, client, rounds, started)
        if eap_in is not None and not peer.finished:
            peer.receive(eap_in)
        return _result(
            reply.code == Code.ACCESS_ACCEPT, peer, reply, authenticator, client, rounds, started
        )
    return ProbeResult(False, peer.result, None, rounds=rounds)


def _result(
    accepted: bool,
    peer: PeerSession,
    reply: Packet,
    authenticator: bytes,
    client: RadiusClient,
    rounds: int,
    started: float,
) -> ProbeResult:
    mppe = None
    if accepted:
        # RFC 9765 §5.1.4: over RADIUS/1.1 the keys travel in clear
        secret = radius11.RADIUS_1_1 if client.radius11 else client.secret
        try:
            mppe = recover_mppe_keys(reply, secret, authenticator)
        except DecodeError:
            mppe = None
    shown: dict[str, str] = {}
    for attr in (Attr.USER_NAME, Attr.REPLY_MESSAGE, Attr.CLASS, Attr.FRAMED_POOL):
        value = reply.get(attr)
        if value is not None:
            shown[Attr(attr).name] = value.decode("utf-8", "backslashreplace")
    for attr in (Attr.SESSION_TIMEOUT,):
        raw = reply.get(attr)
        if raw is not None and len(raw) == 4:
            shown[Attr(attr).name] = str(int.from_bytes(raw, "big"))
    raw_ip = reply.get(Attr.FRAMED_IP_ADDRESS)
    if raw_ip is not None and len(raw_ip) == 4:
        shown["FRAMED_IP_ADDRESS"] = ".".join(str(b) for b in raw_ip)
    return ProbeResult(
        accepted=accepted and bool(peer.result and peer.result.success),
        peer=peer.result,
        reply=reply,
        mppe=mppe,
        eap_key_name=reply.get(Attr.EAP_KEY_NAME),
        rounds=rounds,
        duration=time.perf_counter() - started,
        reply_attributes=shown,
    )
