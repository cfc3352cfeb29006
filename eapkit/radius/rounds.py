"""Binding the rounds of a multi-round login (RFC 4739) to one IKE SA.

A strongSwan gateway with ``remote-1`` (a password round, EAP-MSCHAPv2) and
``remote-2`` (a code round, EAP-GTC with ``gtc = "code"``) sends eapkit two separate
RADIUS conversations.  Each proves one factor; nothing in RADIUS says they belong
together, so tom's password followed by eve's code would open a tunnel.  This module
ties them: a round that proved a password leaves a record in the store (so any worker
or node sees it); a round that proved only a code is accepted only if it takes such a
record for the same user, from the same NAS, for the same client connection, within
``window`` seconds.  Otherwise the login is refused with ``round_not_bound``.

The gateway names the client connection with the attributes strongSwan's eap-radius
plugin adds to every Access-Request (``eap_radius_build_attributes``):

- NAS-Port (RFC 2865 §5.5): the IKE SA's unique id;
- Calling-Station-Id (RFC 2865 §5.31): the client's address and port;
- NAS-Identifier (RFC 2865 §5.32): the gateway's ``nas_identifier``;

plus the RADIUS client entry the request came from.  The same identifiers, hashed,
are the ``login_id`` on every decision line of the login, so its lines can be
grouped.  A store failure fails closed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from eapkit.methods.base import Factor
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import Packet
from eapkit.session import Result
from eapkit.store.base import Store, StoreUnavailable

__all__ = ["CODE_ONLY", "RoundBinding", "gateway_connection", "login_id"]

# A round that proved one of these and nothing else carried a code alone.
CODE_ONLY = frozenset({Factor.OTP_DEVICE, Factor.SECURITY_KEY})
NOT_BOUND = "round_not_bound"


def gateway_connection(request: Packet, client: str) -> str | None:
    """The gateway's name for the client connection (IKE SA), or None when the
    request carries neither NAS-Port nor Calling-Station-Id."""
    port = request.get(Attr.NAS_PORT)
    calling = request.get(Attr.CALLING_STATION_ID)
    if port is None and calling is None:
        return None
    nas = request.get(Attr.NAS_IDENTIFIER) or b""
    parts = [client.encode(), nas, (port or b"").hex().encode(), calling or b""]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def login_id(request: Packet, client: str) -> str:
    """A short id shared by every round of one login ("" when the NAS names no
    connection)."""
    connection = gateway_connection(request, client)
    return connection[:16] if connection else ""


@dataclass
class RoundBinding:
    """Refuses a code-only round that no password round of the same user, NAS and
    connection preceded.  ``unbound`` names the clients whose code-only rounds are
    taken alone (a gateway whose first round is a certificate it checks itself)."""

    store: Store
    window: float = 120.0
    unbound: frozenset[str] = field(default_factory=frozenset)

    def settle(self, result: Result, client: str, request: Packet, now: float) -> str | None:
        """A reason to refuse the successful ``result``, or None (RFC 4739 §2: each
        round is its own EAP conversation; this ties them)."""
        if client in self.unbound:
            return None
        factors = result.factors
        connection = gateway_connection(request, client)
        try:
            if Factor.PASSWORD in factors:
                if connection is not None:
                    key = self._key(connection, result.user)
                    self.store.delete(key)
                    self.store.put_once(key, b"1", self.window, now)
                return None
            if factors and factors <= CODE_ONLY:
                if connection is None:
                    return NOT_BOUND
                if self.store.take(self._key(connection, result.user), now) is None:
                    return NOT_BOUND
        except StoreUnavailable:
            return "store_unavailable"
        return None

    @staticmethod
    def _key(connection: str, user: str) -> str:
        digest = hashlib.sha256(f"{connection}\0{user}".encode()).hexdigest()
        return f"round1:{digest}"
