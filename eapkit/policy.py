"""Per-user authorisation policy: what the gateway is told about an authenticated user.

Kept apart from the RADIUS encoding (:mod:`eapkit.radius.access` turns it into
Session-Timeout, Framed-IP-Address, Framed-Pool and Class) so the user directory below
the RADIUS layer can store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from typing import Any

__all__ = ["UserPolicy"]


@dataclass(frozen=True, slots=True)
class UserPolicy:
    """``session_timeout`` in seconds (RFC 2865 §5.27); ``framed_ip`` the client's
    address (§5.8); ``framed_pool`` a pool name the NAS knows (RFC 2869 §5.18);
    ``klass`` an opaque Class the NAS echoes in accounting (§5.25)."""

    session_timeout: int | None = None
    framed_ip: str | None = None
    framed_pool: str | None = None
    klass: bytes | None = None

    def __post_init__(self) -> None:
        if self.session_timeout is not None and not 0 < self.session_timeout < 2**32:
            raise ValueError("session_timeout must be a positive 32-bit number of seconds")
        if self.framed_ip is not None:
            IPv4Address(self.framed_ip)  # raises ValueError when it is not an address

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if self.klass is not None:
            out["klass"] = self.klass.hex()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserPolicy:
        klass = data.get("klass")
        return cls(
            session_timeout=data.get("session_timeout"),
            framed_ip=data.get("framed_ip"),
            framed_pool=data.get("framed_pool"),
            klass=bytes.fromhex(klass) if klass else None,
        )

    @property
    def empty(self) -> bool:
        return self == UserPolicy()
