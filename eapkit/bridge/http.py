"""The approval web app on a socket: HTTP/1.1 through h11 on asyncio streams.

Why h11 (the ``bridge`` extra) rather than a web framework or ``http.server``: the app is
a handful of JSON routes, and h11 is the small, well-kept, pure-Python HTTP/1.1 state
machine (sans-I/O, like eapkit's own layers) that does the framing of untrusted bytes
right, so this module is only the socket loop.  ``http.server`` is threaded and blocking;
aiohttp and the ASGI servers are far larger than what a login page needs.

Limits against slow or greedy clients: headers 16 KiB, body :data:`~eapkit.bridge.app.
MAX_BODY`, 20 s to send each request, 100 requests a connection, 256 connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import h11

from eapkit.bridge.app import MAX_BODY, BridgeApp, Request, Response

__all__ = ["start_http"]

log = logging.getLogger("eapkit.bridge")

READ_TIMEOUT = 20.0
MAX_REQUESTS = 100
MAX_CONNECTIONS = 256


class _TooLarge(Exception):
    pass


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request, bytes] | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _TooLarge
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, head: bool
) -> None:
    headers = [(k.encode(), v.encode()) for k, v in response.all_headers()]
    headers.append((b"Content-Length", str(len(response.body)).encode()))
    out = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if response.body and not head:
        out += conn.send(h11.Data(data=response.body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    writer.write(out)
    await writer.drain()


def _request(event: h11.Request, body: bytes, peer: str = "") -> Request:
    target = event.target.decode("ascii", "replace")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("ascii", "replace").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}; {text}" if key == "cookie" and key in headers else text
    method = event.method.decode("ascii", "replace")
    return Request(method, target.split("?", 1)[0], headers, body, peer)


def _handler(
    app: BridgeApp, clock: Callable[[], float], slots: asyncio.Semaphore
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slots.locked():
            writer.close()
            return
        async with slots:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
            peername = writer.get_extra_info("peername")
            peer = str(peername[0]) if isinstance(peername, tuple) else ""
            try:
                for _ in range(MAX_REQUESTS):
                    got = await _read_request(conn, reader)
                    if got is None:
                        break
                    event, body = got
                    response = app.handle(_request(event, body, peer), clock())
                    await _send(conn, writer, response, event.method == b"HEAD")
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
            except _TooLarge:
                await _fail(conn, writer, 413)
            except h11.RemoteProtocolError as exc:
                await _fail(conn, writer, exc.error_status_hint)
            except (TimeoutError, ConnectionError, h11.LocalProtocolError):
                pass
            except Exception:  # one bad request must not stop the app
                log.exception("bridge web app: internal error")
                await _fail(conn, writer, 500)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    return connection


async def _fail(conn: h11.Connection, writer: asyncio.StreamWriter, status: int) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    with contextlib.suppress(Exception):
        body = f'{{"error":"http_{status}"}}'.encode()
        await _send(conn, writer, Response(status, body, headers=[("Connection", "close")]), False)


async def start_http(
    app: BridgeApp, host: str, port: int, *, clock: Callable[[], float] = time.time
) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port; see ``server.sockets``)."""
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    return await asyncio.start_server(_handler(app, clock, slots), host, port)
