"""Per-user authorisation policy: what the gateway is told about an authenticated user.

Kept apart from the RADIUS encoding (:mod:`eapkit.radius.reply` turns it into
Session-Timeout, Framed-IP-Address, Framed-Pool, Class, Filter-Id and Vendor-Specific
attributes) so the user directory below the RADIUS layer can store it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

__all__ = ["UserPolicy", "VendorAttribute"]

MAX_VALUE = 253  # RFC 2865 §5: an attribute's value is at most 253 octets


@dataclass(frozen=True, slots=True)
class VendorAttribute:
    """One Vendor-Specific sub-attribute (RFC 2865 §5.26, the recommended layout):
    ``vendor`` the SMI Private Enterprise Code (Cisco 9), ``type`` the vendor's
    attribute number (Cisco-AVPair 1), ``value`` its octets."""

    vendor: int
    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 < self.vendor <= 0xFFFFFF:
            raise ValueError(f"vendor {self.vendor} is not a 24-bit enterprise number")
        if not 0 < self.type <= 255:
            raise ValueError(f"vendor attribute type {self.type} is not 1 to 255")
        # Vendor-Id (4) + vendor-type (1) + vendor-length (1) + value fit in 253 octets
        if not 0 < len(self.value) <= MAX_VALUE - 6:
            raise ValueError(f"a vendor attribute's value is 1 to {MAX_VALUE - 6} octets")


@dataclass(frozen=True, slots=True)
class UserPolicy:
    """``session_timeout`` in seconds (RFC 2865 §5.27); ``framed_ip`` the client's
    address (§5.8); ``framed_pool`` a pool name the NAS knows (RFC 2869 §5.18);
    ``klass`` an opaque Class the NAS echoes in accounting (§5.25); ``filter_id`` a
    filter list the NAS knows (§5.11); ``vendor`` Vendor-Specific attributes (§5.26)."""

    session_timeout: int | None = None
    framed_ip: str | None = None
    framed_pool: str | None = None
    klass: bytes | None = None
    filter_id: str | None = None
    vendor: tuple[VendorAttribute, ...] = ()

    def __post_init__(self) -> None:
        if self.session_timeout is not None and not 0 < self.session_timeout < 2**32:
            raise ValueError("session_timeout must be a positive 32-bit number of seconds")
        if self.framed_ip is not None:
            IPv4Address(self.framed_ip)  # raises ValueError when it is not an address
        if self.filter_id is not None and not 0 < len(self.filter_id.encode()) <= MAX_VALUE:
            raise ValueError(f"filter_id is 1 to {MAX_VALUE} octets of UTF-8")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            key: value
            for key in ("session_timeout", "framed_ip", "framed_pool", "filter_id")
            if (value := getattr(self, key)) is not None
        }
        if self.klass is not None:
            out["klass"] = self.klass.hex()
        if self.vendor:
            out["vendor"] = [
                {"vendor": v.vendor, "type": v.type, "value": v.value.hex()} for v in self.vendor
            ]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserPolicy:
        klass = data.get("klass")
        return cls(
            session_timeout=data.get("session_timeout"),
            framed_ip=data.get("framed_ip"),
            framed_pool=data.get("framed_pool"),
            klass=bytes.fromhex(klass) if klass else None,
            filter_id=data.get("filter_id"),
            vendor=tuple(
                VendorAttribute(int(v["vendor"]), int(v["type"]), bytes.fromhex(v["value"]))
                for v in data.get("vendor", ())
            ),
        )

    @property
    def empty(self) -> bool:
        return self == UserPolicy()
