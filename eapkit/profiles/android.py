"""A strongSwan VPN Client for Android profile (``.sswan``, JSON).

The fields are the ones the app's importer reads (``VpnProfileImportActivity.
parseProfile`` in strongSwan's ``src/frontends/android``): ``uuid``, ``name``, ``type``
(``ikev2-eap`` for EAP-MSCHAPv2, ``ikev2-eap-tls``, ``ikev2-cert-eap`` for a device
certificate then EAP), ``remote.addr``/``id``/``cert`` (the CA, base64 DER),
``local.eap_id`` for the EAP types, ``local.p12`` (base64 PKCS#12, whose password the
app asks for) and ``local.id`` for the certificate types, and ``ike-proposal`` /
``esp-proposal`` in strongSwan's proposal syntax.  An unknown ``type`` would be
imported silently as ``ikev2-eap``, so only those three are ever written.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import serialization

from eapkit.profiles.common import ESP_PROPOSAL, IKE_PROPOSAL, ProfileError, ProfileRequest

__all__ = ["METHODS", "TYPES", "profile", "sswan"]

TYPES = {"eap-mschapv2": "ikev2-eap", "eap-tls": "ikev2-eap-tls", "cert-eap": "ikev2-cert-eap"}
METHODS = tuple(TYPES)


def profile(request: ProfileRequest) -> dict[str, Any]:
    """The ``.sswan`` document as a dictionary."""
    if request.method not in TYPES:
        raise ProfileError(
            f"the strongSwan Android client takes {', '.join(METHODS)}; not {request.method}"
        )
    kind = TYPES[request.method]
    ca = base64.b64encode(request.ca.public_bytes(serialization.Encoding.DER)).decode()
    local: dict[str, Any] = {}
    if kind in ("ikev2-eap", "ikev2-cert-eap"):
        local["eap_id"] = request.user
    if kind in ("ikev2-eap-tls", "ikev2-cert-eap"):
        local["id"] = request.need_device().identity
        local["p12"] = base64.b64encode(request.p12()).decode()
    return {
        "uuid": request.uuid("android"),
        "name": request.display_name,
        "type": kind,
        "remote": {"addr": request.gateway, "id": request.gateway_id, "cert": ca},
        "local": local,
        "ike-proposal": IKE_PROPOSAL,
        "esp-proposal": ESP_PROPOSAL,
    }


def sswan(request: ProfileRequest) -> bytes:
    return (json.dumps(profile(request), indent=2, sort_keys=True) + "\n").encode()
