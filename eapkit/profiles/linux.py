"""A strongSwan ``swanctl`` configuration for Linux, as a tree laid out like
``/etc/swanctl`` (copy it there, then ``swanctl --load-all``):

- ``conf.d/eapkit-<user>.conf``: the ``connections`` entry (RFC 7296 IKEv2, EAP per
  RFC 7296 §2.16; a device certificate then EAP per RFC 4739 as ``local-1``/``local-2``)
  and a ``secrets`` section;
- ``x509ca/eapkit-ca.pem``: the CA that must have issued the gateway's certificate;
- for the certificate methods, ``x509/<user>.pem`` and ``pkcs12/<user>.p12`` (its
  password is not written: ``swanctl --load-creds`` asks for it).

The EAP password is never written either: the ``secrets`` entry says where it goes.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization

from eapkit.profiles.common import ESP_PROPOSAL, IKE_PROPOSAL, ProfileError, ProfileRequest

__all__ = ["METHODS", "swanctl_tree"]

METHODS = ("eap-mschapv2", "eap-tls", "cert-eap")
CA_FILE = "eapkit-ca.pem"
_NAME = re.compile(r"[^A-Za-z0-9_-]")  # a dot separates settings keys


def _value(text: str) -> str:
    """A swanctl.conf value: quoted, with ``"`` and ``\\`` escaped (strongSwan's
    settings parser)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _section(name: str) -> str:
    return _NAME.sub("_", name)


def swanctl_tree(request: ProfileRequest) -> dict[str, bytes]:
    """Relative path -> file content."""
    if request.method not in METHODS:
        raise ProfileError(f"this swanctl profile takes {', '.join(METHODS)}; not {request.method}")
    user = _section(request.user)
    files: dict[str, bytes] = {
        f"x509ca/{CA_FILE}": request.ca.public_bytes(serialization.Encoding.PEM)
    }
    aaa = request.eap_server_names[0] if request.eap_server_names else None
    local: list[tuple[str, list[str]]] = []
    if request.method == "eap-mschapv2":
        local.append(("local", ["auth = eap-mschapv2", f"eap_id = {_value(request.user)}"]))
    else:
        device = request.need_device()
        files[f"x509/{user}.pem"] = device.certificate.public_bytes(serialization.Encoding.PEM)
        files[f"pkcs12/{user}.p12"] = request.p12()
        certificate = [f"certs = {user}.pem", f"id = {_value(device.identity)}"]
        if request.method == "eap-tls":
            tls = ["auth = eap-tls", *certificate]
            if aaa:
                tls.append(f"aaa_id = {_value(aaa)}")
            local.append(("local", tls))
        else:
            local.append(("local-1", ["auth = pubkey", *certificate]))
            local.append(("local-2", ["auth = eap", f"eap_id = {_value(request.user)}"]))
    lines = [
        f"# IKEv2 VPN to {request.gateway} for {request.user}: written by eapkit profile linux.",
        "# Copy this tree into /etc/swanctl, then: swanctl --load-all",
        "connections {",
        f"    eapkit-{user} {{",
        "        version = 2",
        f"        remote_addrs = {_value(request.gateway)}",
        "        vips = 0.0.0.0",
        f"        proposals = {IKE_PROPOSAL}",
    ]
    for name, settings in local:
        lines += [f"        {name} {{", *(f"            {s}" for s in settings), "        }"]
    lines += [
        "        remote {",
        "            auth = pubkey",
        f"            id = {_value(request.gateway_id)}",
        f"            cacerts = {CA_FILE}",
        "        }",
        "        children {",
        "            eapkit {",
        "                remote_ts = 0.0.0.0/0",
        f"                esp_proposals = {ESP_PROPOSAL}",
        "            }",
        "        }",
        "    }",
        "}",
        "secrets {",
    ]
    if request.method != "eap-tls":
        lines += [
            "    # the EAP password is not written here; add it, or load it another way:",
            f"    # eap-{user} {{ id = {_value(request.user)}  secret = <password> }}",
        ]
    if request.device is not None:
        lines += [
            f"    # pkcs12/{user}.p12 is password-protected: swanctl --load-creds asks for it",
            f"    pkcs12-{user} {{",
            f"        file = {user}.p12",
            "    }",
        ]
    lines.append("}")
    files[f"conf.d/eapkit-{user}.conf"] = ("\n".join(lines) + "\n").encode()
    return files
