"""Shared by the RADIUS tests: one datagram through the core, the reply bytes out."""

from __future__ import annotations

from eapkit.radius.core import RadiusCore, Reply


def datagram(core: RadiusCore, data: bytes, source: tuple[str, int], now: float) -> bytes | None:
    """The reply :meth:`RadiusCore.receive` sends at once, or None (dropped or held)."""
    handled = core.receive(data, source, now)
    return handled.data if isinstance(handled, Reply) else None
