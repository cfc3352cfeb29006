"""Addresses as configurations and command lines write them: ``HOST:PORT``,
``[v6]:PORT`` (RFC 3986 §3.2.2 brackets) or ``HOST`` (the default port: 1812, RFC 2865
§3)."""

from __future__ import annotations

from eapkit.errors import ConfigError

__all__ = ["parse_hostport"]


def parse_hostport(text: str, default_port: int = 1812) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``HOST``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"not HOST:PORT: {text!r}") from None
