"""``eapkit serve`` with the approval bridge: the web app runs beside the RADIUS front in
the same event loop, and stops with it."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from eapkit.bridge.app import BridgeApp
from eapkit.bridge.gate import Bridge
from eapkit.bridge.http import start_http

__all__ = ["serve_with_bridge"]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def serve_with_bridge(
    radius: Awaitable[None], bridge: Bridge, *, ready: Callable[[str], None] = _say
) -> None:
    """Start the web app, then run ``radius`` (``eapkit.radius.udp.serve(...)``) to
    its end; ``ready`` gets a line saying where the page is."""
    config = bridge.config
    server = await start_http(BridgeApp(bridge), config.host, config.port, clock=bridge.clock)
    if config.port == 0:
        config.port = int(server.sockets[0].getsockname()[1])
    ready(
        f"eapkit serve: approval page on {config.base_url}/ "
        f"(listening on {config.host}:{config.port}, RP ID {config.effective_rp_id})"
    )
    try:
        await radius
    finally:
        server.close()
        await server.wait_closed()
