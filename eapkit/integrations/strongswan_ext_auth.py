"""The hook strongSwan calls after authentication: its ``ext-auth`` plugin.

charon's ext-auth plugin (``src/libcharon/plugins/ext_auth/ext_auth_listener.c``,
strongSwan 5.9.8) hooks the bus's ``authorize`` event: once every authentication round
of an IKE_SA has passed (``final``), it runs ``charon.plugins.ext-auth.script`` through
``/bin/sh`` with ``2>&1``, logs each output line as ``ext-auth: ...``, and refuses the
IKE_SA unless the command exits 0 ("rejecting IKE_SA for ext-auth result: N").  The
command gets an environment of exactly these variables (no ``PATH``: the script line
must name programs by absolute path):

- ``IKE_UNIQUE_ID``: the IKE_SA's unique id (eap-radius sends it as NAS-Port);
- ``IKE_NAME``: the connection (peer config) name;
- ``IKE_LOCAL_HOST`` / ``IKE_REMOTE_HOST``: the IKE addresses;
- ``IKE_LOCAL_ID`` / ``IKE_REMOTE_ID``: the IKE identities; with a certificate round,
  ``IKE_REMOTE_ID`` is the identity the client's certificate proved (RFC 7296 §3.5);
- ``IKE_REMOTE_EAP_ID``: the EAP (or XAuth) identity, only when an EAP or XAuth round
  ran.

The certificate itself is not passed, so the device is found by the identity it
proved (:func:`eapkit.devices.ike_identities`); the CRL the registry writes covers
certificates that share an identity (a renewed laptop certificate).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from eapkit.devices import DeviceDecision, DeviceRegistry, decide
from eapkit.errors import ConfigError

__all__ = ["ENV", "ExtAuthRequest", "check"]

ENV = (
    "IKE_UNIQUE_ID",
    "IKE_NAME",
    "IKE_LOCAL_HOST",
    "IKE_REMOTE_HOST",
    "IKE_LOCAL_ID",
    "IKE_REMOTE_ID",
    "IKE_REMOTE_EAP_ID",
)


@dataclass(frozen=True)
class ExtAuthRequest:
    """What ext-auth tells its script about one IKE_SA."""

    remote_id: str
    eap_id: str | None
    name: str = ""
    unique_id: str = ""
    remote_host: str = ""

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ExtAuthRequest:
        remote_id = env.get("IKE_REMOTE_ID", "")
        if not remote_id:
            raise ConfigError(
                "IKE_REMOTE_ID is not set: 'eapkit device check' is run by strongSwan's "
                "ext-auth plugin (charon.plugins.ext-auth.script), which sets it"
            )
        return cls(
            remote_id=remote_id,
            eap_id=env.get("IKE_REMOTE_EAP_ID") or None,
            name=env.get("IKE_NAME", ""),
            unique_id=env.get("IKE_UNIQUE_ID", ""),
            remote_host=env.get("IKE_REMOTE_HOST", ""),
        )


def check(
    registry: DeviceRegistry, request: ExtAuthRequest, connections: Collection[str] = ()
) -> DeviceDecision:
    """The registry's answer for this IKE_SA.  ``connections``, when given, names the
    connections whose logins are bound to devices; others pass with
    ``connection_not_bound`` (ext-auth runs for every IKE_SA of the gateway)."""
    if connections and request.name not in connections:
        return DeviceDecision(True, "connection_not_bound")
    return decide(registry, request.remote_id, request.eap_id)
