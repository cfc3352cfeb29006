"""A user's login bound to the device that proved itself in an earlier round of the
same IKE SA (issue 20; RFC 4739 multiple authentication).

The pattern: a strongSwan gateway with two ``eap-radius`` rounds, ``remote-1`` the
device's EAP-TLS (its certificate, verified by eapkit against the CA and CRL) and
``remote-2`` the user (password and code).  eapkit sees both conversations, so it can
tie them where the gateway alone cannot: strongSwan's eap-radius never sends the IKE
identity a certificate round proved (``eap_radius.c`` adds User-Name, NAS-Port,
NAS-Port-Id, NAS-Identifier, Called/Calling-Station-Id, nothing else), and the hook
that sees both identities, the ext-auth plugin, is not in Debian 12's packages.

- A round whose certificate is a registered, active device
  (:meth:`eapkit.authz.Authorizer.authorize` names the device) leaves the device's
  fingerprint in the store for the gateway connection (NAS, NAS-Port = IKE SA unique
  id, Calling-Station-Id: :func:`eapkit.radius.rounds.gateway_connection`) for
  ``window`` seconds.
- Any other successful round from a bound client needs that record, and the device
  it names must still be active and list the round's user among its owners; else the
  round is refused: ``device_required``, ``device_revoked``, ``device_not_allowed``.
  The record is read, not taken, so a later round of the same IKE SA (a code round
  after a password round) is bound to the same device.
- An accepted round bound to a device names it on its decision-log line (``device``,
  ``device_fingerprint``): what ``eapkit audit`` reads to list a user's new devices.

A store failure refuses (``store_unavailable``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eapkit.devices import Device, DeviceRegistry, device_event
from eapkit.errors import DecodeError
from eapkit.methods.base import Factor
from eapkit.radius.packet import Packet
from eapkit.radius.rounds import gateway_connection, login_id
from eapkit.session import Result
from eapkit.store.base import StoreUnavailable

__all__ = ["DeviceBinding"]


@dataclass
class DeviceBinding:
    """Binds the logins from the RADIUS clients named in ``clients`` to devices."""

    registry: DeviceRegistry
    clients: frozenset[str]
    window: float = 120.0
    log: Callable[[dict[str, Any]], None] | None = None  # device_refused lines

    def settle(
        self, result: Result, user: str, client: str, request: Packet, now: float
    ) -> tuple[str | None, Device | None]:
        """A reason to refuse the successful ``result`` (authorized as ``user``), or
        None, and the device the round is bound to (None for a device's own round, a
        client not bound, and most refusals); a refusal is also a ``device_refused``
        line on ``log``."""
        refusal, device = self._settle(result, user, client, request, now)
        if refusal is not None and self.log is not None:
            line = device_event(refusal, user, device, now, client)
            line["login_id"] = login_id(request, client)
            self.log(line)
        return refusal, device

    def _settle(
        self, result: Result, user: str, client: str, request: Packet, now: float
    ) -> tuple[str | None, Device | None]:
        if client not in self.clients:
            return None, None
        connection = gateway_connection(request, client)
        outcome = result.outcome
        names = outcome.certificate if outcome is not None else None
        store = self.registry.store
        try:
            if names is not None and names.fingerprint and Factor.CERTIFICATE in result.factors:
                device = self.registry.by_fingerprint(names.fingerprint)
                if device is not None and device.name == user:  # authz named the device
                    if connection is None:
                        return "device_required", device  # nothing to bind the next round to
                    key = self._key(connection)
                    store.delete(key)
                    store.put_once(key, names.fingerprint.encode(), self.window, now)
                    return None, None
            if connection is None:
                return "device_required", None
            raw = store.peek(self._key(connection), now)
            if raw is None:
                return "device_required", None
            bound = self.registry.by_fingerprint(raw.decode("ascii", "replace"))
            if bound is None or bound.state != "active":
                return "device_revoked", bound
            if user not in bound.owners:
                return "device_not_allowed", bound
        except (StoreUnavailable, DecodeError):
            return "store_unavailable", None
        return None, bound

    @staticmethod
    def _key(connection: str) -> str:
        return "device-round:" + hashlib.sha256(connection.encode()).hexdigest()
