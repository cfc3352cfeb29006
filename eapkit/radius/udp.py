"""The UDP front of the RADIUS server (RFC 2865 §3: one request, one reply, one datagram).

Each socket in ``listen`` feeds :class:`~eapkit.radius.front.Front`; a reply goes back
from the socket the request came in on, to the request's source address and port.
:func:`serve` runs until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from eapkit.radius.core import RadiusCore
from eapkit.radius.front import Front

__all__ = ["serve"]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.DatagramTransport | None = None
        self.local_port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.local_port = int(sockname[1]) if sockname else 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        def send(reply: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(reply, addr)

        self.front.receive(data, (str(addr[0]), int(addr[1])), send, local_port=self.local_port)


async def serve(
    core: RadiusCore,
    listen: Sequence[tuple[str, int]],
    *,
    ready: Callable[[list[tuple[str, int]]], None] | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    reuse_port: bool = False,
    expire_interval: float = 1.0,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; ``ready`` gets the bound
    addresses (useful with port 0).  Every ``expire_interval`` seconds timed-out
    conversations are forgotten and logged."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    front = Front(core, clock)
    for sig in (signal.SIGTERM, signal.SIGINT):
        # off the main thread this fails: the caller stops us through ``stop``
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    transports: list[asyncio.DatagramTransport] = []
    bound: list[tuple[str, int]] = []
    try:
        for host, port in listen:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(front),
                local_addr=(host, port),
                reuse_port=reuse_port or None,
            )
            transports.append(transport)
            sockname = transport.get_extra_info("sockname")
            bound.append((str(sockname[0]), int(sockname[1])))
        expiry = loop.create_task(front.expire_periodically(stop, expire_interval))
        if ready is not None:
            ready(bound)
        await stop.wait()
        await expiry
    finally:
        for transport in transports:
            transport.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
