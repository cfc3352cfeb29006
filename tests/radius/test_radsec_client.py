"""The NAS side of RadSec (RFC 6614) in :mod:`eapkit.radius.nas`: stream framing on the
Length field, many requests in flight on one TLS connection, no RADIUS retransmission
over TCP, and a refused certificate, a closed connection or a framing error ending in
:class:`RadsecError` at once rather than a timeout.

The server here is a few lines of asyncio + stdlib ``ssl`` answering with the RadSec
secret; the real servers (FreeRADIUS, radsecproxy) are in tests/interop."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit import pki
from eapkit.errors import DecodeError
from eapkit.methods.gtc import gtc_peer
from eapkit.probe import ProbeOptions, radsec_settings
from eapkit.radius import radius11
from eapkit.radius.dictionary import Attr
from eapkit.radius.nas import (
    RADSEC_SECRET,
    RadiusClient,
    RadiusStream,
    RadiusTimeout,
    RadsecError,
    RadsecSettings,
    authenticate,
)
from eapkit.radius.packet import (
    Code,
    Packet,
    decode,
    eap_message_attributes,
    encode_reply,
    encode_request,
)
from eapkit.session import PeerSession

# -- framing (RFC 6614 §2.5) -----------------------------------------------------------


def _packet(ident: int, size: int) -> bytes:
    return encode_request(
        Code.ACCESS_REQUEST, ident, [(Attr.USER_NAME, b"u" * size)], b"s", authenticator=bytes(16)
    )


@given(
    st.lists(st.tuples(st.integers(0, 255), st.integers(1, 253)), min_size=1, max_size=8),
    st.lists(st.integers(1, 600), max_size=20),
)
def test_stream_gives_back_the_packets_whatever_the_reads(
    specs: list[tuple[int, int]], cuts: list[int]
) -> None:
    packets = [_packet(i, n) for i, n in specs]
    wire = b"".join(packets)
    stream, out, at = RadiusStream(), [], 0
    for cut in [*cuts, len(wire)]:
        out += stream.feed(wire[at : at + cut])
        at += cut
    out += stream.feed(wire[at:])
    assert out == packets
    assert stream.pending == 0


@given(st.binary(max_size=64))
def test_stream_garbage_raises_only_decode_error(data: bytes) -> None:
    stream = RadiusStream()
    try:
        for packet in stream.feed(data):
            assert 20 <= len(packet) <= 4096
    except DecodeError:
        pass


@pytest.mark.parametrize("length", [0, 19, 4097, 65535])
def test_stream_refuses_an_impossible_length(length: int) -> None:
    good = _packet(1, 10)
    stream = RadiusStream()
    with pytest.raises(DecodeError) as err:
        stream.feed(good + struct.pack("!BBH", 1, 2, length) + bytes(30))
    assert err.value.offset == len(good) + 2


def test_stream_holds_half_a_packet() -> None:
    good = _packet(9, 40)
    stream = RadiusStream()
    assert stream.feed(good[:3]) == []
    assert stream.feed(good[3:30]) == []
    assert stream.pending == 30
    assert stream.feed(good[30:]) == [good]


# -- a small RadSec server -------------------------------------------------------------


@dataclass
class Pki:
    work: Path

    def path(self, name: str) -> Path:
        return self.work / name


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    work = tmp_path_factory.mktemp("radsec-client-pki")
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("radsec test CA", now=now)
    other = pki.make_ca("another CA", now=now)
    server = pki.make_server(ca, ["radsec.test"], now=now)
    nas = pki.make_client(ca, "gateway-1", now=now)
    rogue = pki.make_client(other, "gateway-1", now=now)
    for name, data in {
        "ca.pem": ca.cert_pem,
        "server.pem": server.chain_pem,
        "server.key": server.key_pem,
        "nas.pem": nas.chain_pem,
        "nas.key": nas.key_pem,
        "rogue.pem": rogue.chain_pem,
        "rogue.key": rogue.key_pem,
    }.items():
        (work / name).write_bytes(data)
    return Pki(work)


Answer = Callable[[Packet, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """Accepts RadSec connections (client certificate required) and hands every
    request it reads to ``answer``."""

    certs: Pki
    answer: Answer
    alpn: list[str] = field(default_factory=list)
    seen: list[Packet] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    port: int = 0

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.path("server.pem"), self.certs.path("server.key"))
        ctx.load_verify_locations(self.certs.path("ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.alpn:
            ctx.set_alpn_protocols(self.alpn)
        return ctx

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = RadiusStream()
        try:
            while data := await reader.read(4096):
                for wire in stream.feed(data):
                    self.raw.append(wire)
                    v11 = writer.get_extra_info("ssl_object").selected_alpn_protocol()
                    packet = radius11.decode(wire) if v11 == "radius/1.1" else decode(wire)
                    self.seen.append(packet)
                    await self.answer(packet, writer)
        except (OSError, DecodeError):
            pass
        finally:
            writer.close()

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context())
        self.port = server.sockets[0].getsockname()[1]
        return server


def _settings(certs: Pki, who: str = "nas", **kw: object) -> RadsecSettings:
    return RadsecSettings(
        cert=certs.path(f"{who}.pem"),
        key=certs.path(f"{who}.key"),
        ca=certs.path("ca.pem"),
        **kw,  # type: ignore[arg-type]
    )


async def _accept(request: Packet, writer: asyncio.StreamWriter) -> None:
    name = request.get(Attr.USER_NAME) or b""
    writer.write(
        encode_reply(Code.ACCESS_ACCEPT, request, [(Attr.REPLY_MESSAGE, name)], RADSEC_SECRET)
    )


def _run(
    certs: Pki,
    answer: Answer,
    body: Callable[[RadiusClient], Awaitable[object]],
    *,
    server_alpn: list[str] | None = None,
    who: str = "nas",
    timeout: float = 2.0,
    retries: int = 0,
    **kw: object,
) -> tuple[object, Server]:
    server = Server(certs, answer, server_alpn or [])

    async def main() -> object:
        listener = await server.start()
        try:
            client = RadiusClient(
                ("127.0.0.1", server.port),
                RADSEC_SECRET,
                timeout=timeout,
                retries=retries,
                radsec=_settings(certs, who, **kw),
            )
            async with client:
                return await body(client)
        finally:
            listener.close()

    return asyncio.run(main()), server


def test_many_requests_in_flight_on_one_connection(certs: Pki) -> None:
    held: list[Packet] = []

    async def reverse(request: Packet, writer: asyncio.StreamWriter) -> None:
        held.append(request)
        if len(held) == 40:  # answer them all, last first, in one write
            writer.write(
                b"".join(
                    encode_reply(
                        Code.ACCESS_ACCEPT,
                        r,
                        [(Attr.REPLY_MESSAGE, r.get(Attr.USER_NAME) or b"")],
                        RADSEC_SECRET,
                    )
                    for r in reversed(held)
                )
            )

    async def body(client: RadiusClient) -> object:
        names = [f"user{i}".encode() for i in range(40)]
        replies = await asyncio.gather(*(client.request([(Attr.USER_NAME, n)]) for n in names))
        return [(n, r.get(Attr.REPLY_MESSAGE)) for n, (r, _) in zip(names, replies, strict=True)]

    pairs, server = _run(certs, reverse, body)
    assert isinstance(pairs, list) and len(pairs) == 40
    assert all(sent == echoed for sent, echoed in pairs)
    assert len({p.identifier for p in server.seen}) == 40


def test_a_reply_under_another_secret_is_not_taken(certs: Pki) -> None:
    async def forged(request: Packet, writer: asyncio.StreamWriter) -> None:
        writer.write(encode_reply(Code.ACCESS_ACCEPT, request, [], b"testing123"))

    async def body(client: RadiusClient) -> object:
        return await client.request([(Attr.USER_NAME, b"x")])

    with pytest.raises(RadiusTimeout):
        _run(certs, forged, body, timeout=0.3)


def test_no_radius_retransmission_over_tls(certs: Pki) -> None:
    async def silent(request: Packet, writer: asyncio.StreamWriter) -> None:
        pass

    async def body(client: RadiusClient) -> object:
        with pytest.raises(RadiusTimeout):
            await client.request([(Attr.USER_NAME, b"x")])
        return client.retransmissions

    retransmissions, server = _run(certs, silent, body, timeout=0.2, retries=2)
    assert retransmissions == 0
    assert len(server.seen) == 1  # RFC 6613 §2.6.1: TCP retransmits, RADIUS does not


def test_closed_connection_fails_the_waiting_requests_at_once(certs: Pki) -> None:
    async def hang_up(request: Packet, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def body(client: RadiusClient) -> object:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RadsecError):
            await client.request([(Attr.USER_NAME, b"x")])
        waited = loop.time() - started
        with pytest.raises(RadsecError):  # and the next request is refused too
            await client.request([(Attr.USER_NAME, b"y")])
        return waited

    waited, _ = _run(certs, hang_up, body, timeout=30.0)
    assert isinstance(waited, float) and waited < 15.0  # not the 30 s timeout


@pytest.mark.parametrize("length", [0, 70000 & 0xFFFF])
def test_a_framing_error_from_the_server_closes_with_a_reason(certs: Pki, length: int) -> None:
    async def bad(request: Packet, writer: asyncio.StreamWriter) -> None:
        writer.write(struct.pack("!BBH", 2, request.identifier, length) + bytes(16))

    async def body(client: RadiusClient) -> object:
        with pytest.raises(RadsecError, match="framing error") as err:
            await client.request([(Attr.USER_NAME, b"x")])
        return str(err.value)

    _run(certs, bad, body, timeout=30.0)


def test_a_client_certificate_from_another_ca_is_refused(certs: Pki) -> None:
    async def body(client: RadiusClient) -> object:
        return await client.request([(Attr.USER_NAME, b"x")])

    # TLS 1.3: the refusal arrives after the client's handshake, on the first read.
    with pytest.raises(RadsecError):
        _run(certs, _accept, body, who="rogue")


def test_a_server_certificate_from_another_ca_is_refused(certs: Pki) -> None:
    settings = RadsecSettings(
        cert=certs.path("nas.pem"), key=certs.path("nas.key"), ca=certs.path("rogue.pem")
    )

    async def main() -> None:
        server = Server(certs, _accept)
        listener = await server.start()
        try:
            client = RadiusClient(("127.0.0.1", server.port), RADSEC_SECRET, radsec=settings)
            with pytest.raises(RadsecError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.open()
        finally:
            listener.close()

    asyncio.run(main())


def test_server_name_checked_when_given(certs: Pki) -> None:
    async def body(client: RadiusClient) -> object:
        return await client.request([(Attr.USER_NAME, b"x")])

    reply, _ = _run(certs, _accept, body, server_name="radsec.test")
    assert isinstance(reply, tuple) and reply[0].code == Code.ACCESS_ACCEPT
    with pytest.raises(RadsecError):
        _run(certs, _accept, body, server_name="other.test")


def test_alpn_agreed_and_not(certs: Pki) -> None:
    async def body(client: RadiusClient) -> object:
        await client.request([(Attr.USER_NAME, b"x")])
        return client.alpn

    alpn, _ = _run(certs, _accept, body, server_alpn=["radius/1.0"])
    assert alpn is None  # offered nothing: nothing selected
    agreed, _ = _run(certs, _accept, body, server_alpn=["radius/1.0"], alpn=("radius/1.0",))
    assert agreed == "radius/1.0"
    # A server without ALPN speaks RADIUS/1.0 (RFC 9765 §3.3): fine if we offered it...
    legacy, _ = _run(certs, _accept, body, server_alpn=[], alpn=("radius/1.0",))
    assert legacy is None
    # ...not when we insist on RADIUS/1.1.
    with pytest.raises(RadsecError, match="ALPN"):
        _run(certs, _accept, body, server_alpn=[], alpn=("radius/1.1",))
    with pytest.raises(RadsecError, match="ALPN"):
        _run(certs, _accept, body, server_alpn=["radius/1.0"], alpn=("radius/1.1",))


def test_probe_options_for_radsec(certs: Pki) -> None:
    base = {"server": ("127.0.0.1", 2083), "secret": b"radsec", "method": "mschapv2"}
    opts = ProbeOptions(identity="a", **base)  # type: ignore[arg-type]
    assert radsec_settings(opts) is None
    with pytest.raises(ValueError, match="need --radsec"):
        radsec_settings(ProbeOptions(identity="a", alpn="radius/1.0", **base))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--radsec-cert"):
        radsec_settings(ProbeOptions(identity="a", radsec=True, **base))  # type: ignore[arg-type]
    full = ProbeOptions(
        identity="a",
        radsec=True,
        radsec_cert=certs.path("nas.pem"),
        radsec_key=certs.path("nas.key"),
        radsec_ca=certs.path("ca.pem"),
        alpn="radius/1.0",
        **base,  # type: ignore[arg-type]
    )
    settings = radsec_settings(full)
    assert settings is not None and settings.alpn == ("radius/1.0",)


# -- RADIUS/1.1 (RFC 9765) --------------------------------------------------------------

SEND_KEY, RECV_KEY = bytes(range(32)), bytes(range(100, 132))


async def _gtc_v11(request: Packet, writer: asyncio.StreamWriter) -> None:
    """EAP-GTC over RADIUS/1.1: a Challenge asking for the password, then an Accept
    with EAP-Success and the MPPE keys in clear (§5.1.4)."""
    token = radius11.token_of(request)
    eap = request.eap_message() or b""
    if eap[4:5] == b"\x01":  # Identity
        gtc = bytes((1, 1, 0, 15, 6)) + b"Password: "
        attrs = [*eap_message_attributes(gtc), (Attr.STATE, b"round-1")]
        writer.write(radius11.encode(Code.ACCESS_CHALLENGE, token, attrs))
        return
    accepted = eap[5:] == b"pencil" and request.get(Attr.STATE) == b"round-1"
    mppe = [
        (26, (311).to_bytes(4, "big") + bytes((16, 34)) + SEND_KEY),
        (26, (311).to_bytes(4, "big") + bytes((17, 34)) + RECV_KEY),
    ]
    code = Code.ACCESS_ACCEPT if accepted else Code.ACCESS_REJECT
    outcome = bytes((3 if accepted else 4, eap[1], 0, 4))
    attrs = [*eap_message_attributes(outcome), *(mppe if accepted else [])]
    writer.write(radius11.encode(code, token, attrs))


def _gtc_over(client: RadiusClient, password: str) -> Awaitable[object]:
    peer = PeerSession([gtc_peer(lambda prompt: password)], "alice")
    return authenticate(client, peer)


def test_radius11_conversation(certs: Pki) -> None:
    async def body(client: RadiusClient) -> object:
        assert client.radius11
        return await _gtc_over(client, "pencil")

    result, server = _run(certs, _gtc_v11, body, server_alpn=["radius/1.1"], alpn=("radius/1.1",))
    assert getattr(result, "accepted", False), result
    mppe = getattr(result, "mppe", None)
    assert mppe is not None and mppe.send == SEND_KEY and mppe.recv == RECV_KEY
    assert len(server.raw) == 2
    tokens = set()
    for wire in server.raw:  # RFC 9765 §4.1, §5.2: no Identifier, no MD5 anywhere
        assert wire[1] == 0 and wire[8:20] == bytes(12)
        assert all(t != Attr.MESSAGE_AUTHENTICATOR for t, _ in radius11.decode(wire).attributes)
        assert b"\x50\x12" not in wire[20:22]
        tokens.add(wire[4:8])
    assert len(tokens) == 2


def test_radius11_wrong_password_rejected(certs: Pki) -> None:
    async def body(client: RadiusClient) -> object:
        return await _gtc_over(client, "guess")

    result, _ = _run(certs, _gtc_v11, body, server_alpn=["radius/1.1"], alpn=("radius/1.1",))
    assert not getattr(result, "accepted", True)


def test_radius11_client_needs_tls13(certs: Pki) -> None:
    settings = _settings(certs, alpn=("radius/1.1",))
    from eapkit.radius.nas import radsec_context

    assert radsec_context(settings).minimum_version == ssl.TLSVersion.TLSv1_3
    assert radsec_context(_settings(certs)).minimum_version == ssl.TLSVersion.TLSv1_2


def test_radius11_a_reply_with_another_token_is_not_taken(certs: Pki) -> None:
    async def wrong_token(request: Packet, writer: asyncio.StreamWriter) -> None:
        token = bytes(b ^ 0xFF for b in radius11.token_of(request))
        writer.write(radius11.encode(Code.ACCESS_ACCEPT, token, []))

    async def body(client: RadiusClient) -> object:
        return await client.request([(Attr.USER_NAME, b"x")])

    with pytest.raises(RadiusTimeout):
        _run(
            certs, wrong_token, body, server_alpn=["radius/1.1"], alpn=("radius/1.1",), timeout=0.3
        )
