"""The web app on a socket (h11 on asyncio streams): well-formed requests, keep-alive,
and malformed or oversized ones answered with an error, never a crash."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.bridge.app import MAX_BODY, BridgeApp
from eapkit.bridge.http import start_http
from tests.bridge.helpers import ORIGIN, make_bridge


async def _exchange(app: BridgeApp, payloads: list[bytes]) -> list[bytes]:
    server = await start_http(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers = []
    try:
        for payload in payloads:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            answers.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return answers


def exchange(*payloads: bytes) -> list[bytes]:
    return asyncio.run(_exchange(BridgeApp(make_bridge()), list(payloads)))


def test_page_and_keep_alive() -> None:
    two = (
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    (answer,) = exchange(two)
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert b"content-security-policy: default-src 'none'" in first.lower()
    assert rest.count(b"HTTP/1.1 200") == 1 and rest.endswith(b'{"ok":true}')


def test_post_through_the_socket() -> None:
    body = b"{}"
    request = (
        b"POST /api/signin/begin HTTP/1.1\r\nHost: localhost\r\n"
        b"Origin: " + ORIGIN.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    (answer,) = exchange(request)
    assert answer.startswith(b"HTTP/1.1 200") and b'"challenge"' in answer


def test_malformed_and_oversized_requests() -> None:
    big = MAX_BODY + 1
    garbage, huge, nul = exchange(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
        b"POST /api/decide HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(big).encode()
        + b"\r\n\r\n"
        + b"a" * big,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n",
    )
    assert garbage.startswith(b"HTTP/1.1 400")
    assert huge.startswith(b"HTTP/1.1 413")
    assert nul.startswith(b"HTTP/1.1 400")


@settings(max_examples=25)
@given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=3))
def test_arbitrary_bytes_never_stop_the_server(chunks: list[bytes]) -> None:
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = exchange(*chunks, ok)
    assert answers[-1].startswith(b"HTTP/1.1 200")  # still serving
    for answer in answers[:-1]:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
