"""An Apple configuration profile (``.mobileconfig``) for the IKEv2 gateway.

The profile is a property list (written with :mod:`plistlib`) whose ``PayloadContent``
holds, in Apple's device-management schema (github.com/apple/device-management,
``mdm/profiles/``):

- ``com.apple.vpn.managed`` with ``VPNType`` ``IKEv2`` and the ``IKEv2`` dictionary:
  the gateway (``RemoteAddress``, ``RemoteIdentifier``), the client's ``LocalIdentifier``,
  ``AuthenticationMethod`` ``None`` with ``ExtendedAuthEnabled`` 1 for EAP only (EAP-
  MSCHAPv2 with ``AuthName``, or EAP-TLS with ``PayloadCertificateUUID``), or
  ``Certificate`` with ``ExtendedAuthEnabled`` 1 for a device certificate then EAP
  (RFC 4739); the CA that must have issued the gateway's certificate
  (``ServerCertificateIssuerCommonName``); and the proposals of
  :mod:`eapkit.profiles.common` with PFS;
- ``com.apple.security.root``: that CA, DER;
- ``com.apple.security.pkcs12``, where the method uses one: the user's certificate and
  key, password-protected.  The password is not in the profile: the device asks for it
  when the profile is installed.

Optionally the plist is signed: a CMS SignedData (RFC 5652 §5) with the plist inside,
which macOS and iOS show as "Verified" when they trust the signer.
"""

from __future__ import annotations

import plistlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from eapkit.profiles.common import DH_GROUP, ProfileError, ProfileRequest

__all__ = ["METHODS", "mobileconfig", "payloads", "sign"]

METHODS = ("eap-mschapv2", "eap-tls", "cert-eap")
PREFIX = "org.eapkit.vpn"

# One proposal each (Apple takes one dictionary per SA): what the lab's strongSwan accepts.
SECURITY_ASSOCIATION = {
    "EncryptionAlgorithm": "AES-256-GCM",
    "IntegrityAlgorithm": "SHA2-256",  # with an AEAD cipher: the PRF
    "DiffieHellmanGroup": DH_GROUP,
    "LifeTimeInMinutes": 1440,
}


def _common(request: ProfileRequest, kind: str, part: str, name: str) -> dict[str, Any]:
    return {
        "PayloadType": kind,
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{PREFIX}.{request.gateway}.{request.user}.{part}",
        "PayloadUUID": request.uuid(part),
        "PayloadDisplayName": name,
    }


def _ikev2(request: ProfileRequest, certificate_uuid: str | None) -> dict[str, Any]:
    ike: dict[str, Any] = {
        "RemoteAddress": request.gateway,
        "RemoteIdentifier": request.gateway_id,
        "LocalIdentifier": request.user,
        "ServerCertificateIssuerCommonName": request.ca_common_name,
        "ServerCertificateCommonName": request.gateway_id,
        "ExtendedAuthEnabled": 1,
        "EnablePFS": 1,
        "DisableMOBIKE": 0,
        "IKESecurityAssociationParameters": dict(SECURITY_ASSOCIATION),
        "ChildSecurityAssociationParameters": dict(SECURITY_ASSOCIATION),
    }
    if request.method == "eap-mschapv2":
        ike |= {"AuthenticationMethod": "None", "AuthName": request.user}
    elif request.method == "eap-tls":
        device = request.need_device()
        ike |= {
            "AuthenticationMethod": "None",
            "LocalIdentifier": device.identity,
            "PayloadCertificateUUID": certificate_uuid,
        }
    else:  # cert-eap: the device certificate in IKE_AUTH, then the user by EAP
        device = request.need_device()
        ike |= {
            "AuthenticationMethod": "Certificate",
            "CertificateType": device.key_kind,
            "LocalIdentifier": device.identity,
            "PayloadCertificateUUID": certificate_uuid,
            "AuthName": request.user,
        }
    return ike


def payloads(request: ProfileRequest) -> dict[str, Any]:
    """The profile as a dictionary (the top level of the plist)."""
    if request.method not in METHODS:
        raise ProfileError(f"Apple's IKEv2 client takes {', '.join(METHODS)}; not {request.method}")
    ca_der = request.ca.public_bytes(serialization.Encoding.DER)
    root = _common(request, "com.apple.security.root", "ca", request.ca_common_name) | {
        "PayloadContent": ca_der,
        "PayloadCertificateFileName": "ca.cer",
    }
    content: list[dict[str, Any]] = [root]
    certificate_uuid = None
    if request.device is not None:
        pkcs12 = _common(request, "com.apple.security.pkcs12", "device", request.user) | {
            "PayloadContent": request.p12(),
            "PayloadCertificateFileName": f"{request.user}.p12",
        }
        certificate_uuid = pkcs12["PayloadUUID"]
        content.append(pkcs12)
    vpn = _common(request, "com.apple.vpn.managed", "vpn", request.display_name) | {
        "UserDefinedName": request.display_name,
        "VPNType": "IKEv2",
        "IKEv2": _ikev2(request, certificate_uuid),
    }
    content.insert(0, vpn)
    return {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{PREFIX}.{request.gateway}.{request.user}",
        "PayloadUUID": request.uuid("profile"),
        "PayloadDisplayName": request.display_name,
        "PayloadDescription": f"IKEv2 VPN to {request.gateway} for {request.user}",
        "PayloadOrganization": "eapkit",
        "PayloadContent": content,
    }


def mobileconfig(request: ProfileRequest) -> bytes:
    """The unsigned ``.mobileconfig`` (an XML plist)."""
    return plistlib.dumps(payloads(request), fmt=plistlib.FMT_XML, sort_keys=True)


def sign(
    data: bytes,
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    chain: list[x509.Certificate] | None = None,
) -> bytes:
    """``data`` inside a DER CMS SignedData (RFC 5652 §5) signed with SHA-256."""
    builder = (
        pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(certificate, key, hashes.SHA256())
    )
    for extra in chain or []:
        builder = builder.add_certificate(extra)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
