"""The ``[bridge]`` table of ``eapkit serve``'s configuration.

::

    [bridge]
    listen = "127.0.0.1:8812"         # the approval web app (HTTP; put TLS in front of it)
    url = "http://localhost:8812"     # how users reach it: the WebAuthn origin
    rp_id = "localhost"               # WebAuthn RP ID: the url's host or a suffix of it
    rp_name = "eapkit VPN"
    timeout = 60                      # seconds a login waits for its approval
    user_verification = "preferred"   # or "required" (PIN/biometric) or "discouraged"
    enroll_ttl = 86400                # lifetime of an enrollment link, seconds (at most 7 days)
    session_ttl = 120                 # a sign-in on the approval page lasts this long
    max_pending = 5                   # pending approvals per user at once
    device_crl = "/etc/swanctl/x509crl/devices.crl"  # also serve this CRL (DER) at
                                      # GET /devices.crl: a CRL distribution point

Only this module is imported by :mod:`eapkit.serve` when the table is absent, so the
bridge's own dependencies (h11, python-fido2) stay optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from eapkit.errors import ConfigError
from eapkit.radius.address import parse_hostport

__all__ = ["DEFAULT_PORT", "MAX_ENROLL_TTL", "BridgeConfig"]

DEFAULT_PORT = 8812
# An enrollment link enrolls a factor for whoever holds it: a day or so, not a standing
# key.  The cap of ``enroll_ttl`` and of ``eapkit approve --link-ttl``.
MAX_ENROLL_TTL = 7 * 86400.0
_UV = ("required", "preferred", "discouraged")


@dataclass
class BridgeConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    url: str | None = None
    rp_id: str | None = None
    rp_name: str = "eapkit"
    timeout: float = 60.0
    user_verification: str = "preferred"
    enroll_ttl: float = 86400.0
    session_ttl: float = 120.0
    max_pending: int = 5
    device_crl: str | None = None  # the device CRL file published at /devices.crl

    @property
    def base_url(self) -> str:
        """The page's address without a trailing slash (default ``http://localhost:PORT``:
        ``localhost`` is a secure context for WebAuthn without TLS)."""
        return (self.url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def origin(self) -> str:
        """The WebAuthn origin (scheme://host[:port]) of :attr:`base_url`."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def effective_rp_id(self) -> str:
        return self.rp_id or (urlsplit(self.base_url).hostname or "localhost")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BridgeConfig:
        cfg = cls()
        try:
            if "listen" in data:
                cfg.host, cfg.port = parse_hostport(str(data["listen"]), DEFAULT_PORT)
            if "url" in data:
                cfg.url = str(data["url"])
            if "rp_id" in data:
                cfg.rp_id = str(data["rp_id"])
            cfg.rp_name = str(data.get("rp_name", cfg.rp_name))
            cfg.timeout = float(data.get("timeout", cfg.timeout))
            cfg.user_verification = str(data.get("user_verification", cfg.user_verification))
            cfg.enroll_ttl = float(data.get("enroll_ttl", cfg.enroll_ttl))
            cfg.session_ttl = float(data.get("session_ttl", cfg.session_ttl))
            cfg.max_pending = int(data.get("max_pending", cfg.max_pending))
            if "device_crl" in data:
                cfg.device_crl = str(data["device_crl"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad [bridge] value: {exc}") from None
        cfg.check()
        return cfg

    def check(self) -> None:
        if self.user_verification not in _UV:
            raise ConfigError(f"[bridge] user_verification is one of {', '.join(_UV)}")
        if not (self.timeout > 0 and self.enroll_ttl > 0 and self.session_ttl > 0):
            raise ConfigError("[bridge] timeout, enroll_ttl and session_ttl must be positive")
        if self.enroll_ttl > MAX_ENROLL_TTL:
            raise ConfigError(
                f"[bridge] enroll_ttl is at most {MAX_ENROLL_TTL:g} seconds (7 days):"
                f" {self.enroll_ttl:g} would keep an enrollment link alive too long"
            )
        if self.max_pending < 1:
            raise ConfigError("[bridge] max_pending must be at least 1")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"[bridge] url must be http(s)://host[:port]: {self.base_url!r}")
        host = parts.hostname
        rp = self.effective_rp_id
        # WebAuthn §5.1.4.1 / §13.4.9: the RP ID is the origin's host or a suffix of it,
        # and plain http is a secure context only on localhost.
        if host != rp and not host.endswith("." + rp):
            raise ConfigError(f"[bridge] rp_id {rp!r} does not match the url's host {host!r}")
        if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
            raise ConfigError("[bridge] url must be https unless the host is localhost")
