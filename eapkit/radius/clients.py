"""The NASes a RADIUS server answers, each with its shared secret (RFC 2865 §3).

Requests from any other address are dropped: the secret is what authenticates a
request, so a server must know whose secret to use before it reads anything else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Client", "ClientTable"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """A NAS allowed to talk to this server, with its shared secret (RFC 2865 §3)."""

    network: IpNetwork
    secret: bytes = field(repr=False)
    name: str = ""
    # "enforce": a user with a second factor must prove it in this conversation, so a
    # password-only method (MS-CHAPv2, bare or tunnelled) is refused.  "nas": this NAS
    # runs the second factor in a round of its own (strongSwan's remote-2 rounds, RFC
    # 4739), so a password-only round is allowed.
    second_factor: str = "enforce"
    # With gtc = "code": a code-only round must follow a password round of the same
    # user and connection (eapkit.radius.rounds); False takes it alone.
    bind_rounds: bool = True

    @classmethod
    def of(
        cls,
        network: str,
        secret: str | bytes,
        name: str = "",
        second_factor: str = "enforce",
        *,
        bind_rounds: bool = True,
    ) -> Client:
        if second_factor not in ("enforce", "nas"):
            raise ValueError('second_factor is "enforce" or "nas"')
        return cls(
            ipaddress.ip_network(network, strict=False),
            secret.encode() if isinstance(secret, str) else secret,
            name or network,
            second_factor,
            bind_rounds,
        )


class ClientTable:
    """Finds the most specific client entry for a source address."""

    def __init__(self, clients: Sequence[Client]) -> None:
        names = [c.name for c in clients]
        if len(set(names)) != len(names):
            # conversations are bound to their client by name: names must be unique
            raise ValueError("two client entries have the same name")
        self._clients = sorted(clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._cache: dict[str, Client | None] = {}

    def find(self, address: str) -> Client | None:
        if address in self._cache:
            return self._cache[address]
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        found = next((c for c in self._clients if ip in c.network), None)
        if len(self._cache) < 4096:
            self._cache[address] = found
        return found
