"""A Windows PowerShell script that adds the IKEv2 VPN connection.

The script imports the CA into the machine's Trusted Root store (``Import-Certificate``),
for EAP-TLS the user's PKCS#12 into the user's store (``Import-PfxCertificate``, which
asks for its password), then runs ``Add-VpnConnection -TunnelType Ikev2
-AuthenticationMethod Eap -EapConfigXmlStream`` with an EapHostConfig document, and
``Set-VpnConnectionIPsecConfiguration`` with the proposals of
:mod:`eapkit.profiles.common` (GCMAES256, SHA256, ECP256, PFS ECP256).

The EapHostConfig document follows Microsoft's EAPHost schemas (learn.microsoft.com,
"EAPHost and Legacy Schema"; [MS-GPWL] §2.2.3.2):

- EAP-MSCHAPv2 (type 26): ``MsChapV2ConnectionPropertiesV1``, without Windows logon
  credentials;
- PEAP (type 25) with inner EAP-MSCHAPv2: ``MsPeapConnectionPropertiesV1``, with server
  validation (the CA's SHA-1 thumbprint, eapkit's server names) and crypto-binding;
- EAP-TLS (type 13): ``EapTlsConnectionPropertiesV1``, the certificate from the user's
  store, the same server validation;
- TEAP (type 55; eapkit serve speaks RFC 9930, or hostap 2.10's reading of RFC 7170
  with ``[teap] compat = "rfc7170"``: docs/teap.md): ``EapTeapConnectionPropertiesV1``
  with inner EAP-MSCHAPv2, nested as Windows itself exports it (an ``EapHostConfig``
  inside ``InnerMethodConfig``).  Only when the server offers TEAP.

Windows' IKEv2 client has no RFC 4739 multiple authentication, so ``cert-eap`` (a
device certificate, then EAP) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

from cryptography.hazmat.primitives import serialization

from eapkit.profiles.common import ProfileError, ProfileRequest

__all__ = ["EAP_TYPES", "METHODS", "eap_host_config", "powershell"]

METHODS = ("eap-mschapv2", "peap", "eap-tls", "teap")
EAP_TYPES = {"eap-tls": 13, "peap": 25, "eap-mschapv2": 26, "teap": 55}

NS = "http://www.microsoft.com/provisioning/"
HOST = NS + "EapHostConfig"
COMMON = NS + "EapCommon"
BASE = NS + "BaseEapConnectionPropertiesV1"
TLS = NS + "EapTlsConnectionPropertiesV1"
PEAP = NS + "MsPeapConnectionPropertiesV1"
MSCHAPV2 = NS + "MsChapV2ConnectionPropertiesV1"
TEAP = NS + "EapTeapConnectionPropertiesV1"
MICROSOFT = 311  # the AuthorId of Windows' own TEAP (its IANA enterprise number)

for _prefix, _uri in {
    "": HOST,
    "eapCommon": COMMON,
    "baseEap": BASE,
    "eapTls": TLS,
    "msPeap": PEAP,
    "msChapV2": MSCHAPV2,
    "eapTeap": TEAP,
}.items():
    ET.register_namespace(_prefix, _uri)


def _el(parent: ET.Element, ns: str, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _host(eap_type: int, author: int = 0) -> tuple[ET.Element, ET.Element]:
    root = ET.Element(f"{{{HOST}}}EapHostConfig")
    method = _el(root, HOST, "EapMethod")
    _el(method, COMMON, "Type", str(eap_type))
    _el(method, COMMON, "VendorId", "0")
    _el(method, COMMON, "VendorType", "0")
    _el(method, COMMON, "AuthorId", str(author))
    return root, _el(root, HOST, "Config")


def _mschapv2(parent: ET.Element) -> None:
    eap = _el(parent, BASE, "Eap")
    _el(eap, BASE, "Type", "26")
    _el(_el(eap, MSCHAPV2, "EapType"), MSCHAPV2, "UseWinLogonCredentials", "false")


def _server_validation(parent: ET.Element, ns: str, request: ProfileRequest) -> None:
    validation = _el(parent, ns, "ServerValidation")
    _el(validation, ns, "DisableUserPromptForServerValidation", "true")
    _el(validation, ns, "ServerNames", ";".join(request.eap_server_names or (request.gateway_id,)))
    _el(validation, ns, "TrustedRootCA", _thumbprint(request))


def _thumbprint(request: ProfileRequest, algorithm: str = "sha1") -> str:
    der = request.ca.public_bytes(serialization.Encoding.DER)
    return hashlib.new(algorithm, der).hexdigest()


def eap_host_config(request: ProfileRequest) -> ET.Element:
    """The EapHostConfig document of ``request.method``."""
    if request.method not in METHODS:
        raise ProfileError(
            f"Windows' IKEv2 client takes {', '.join(METHODS)}; not {request.method} "
            "(it has no multiple authentication, RFC 4739)"
        )
    eap_type = EAP_TYPES[request.method]
    if request.method == "teap":
        root, config = _host(eap_type, MICROSOFT)
        teap = _el(config, TEAP, "EapTeap")
        validation = _el(teap, TEAP, "ServerValidation")
        names = ";".join(request.eap_server_names or (request.gateway_id,))
        _el(validation, TEAP, "ServerNames", names)
        _el(validation, TEAP, "TrustedRootCAHash", _thumbprint(request, "sha256"))
        _el(validation, TEAP, "DownloadTrustedServerRoot", "false")
        _el(validation, TEAP, "DisablePrompt", "true")
        inner = _el(_el(teap, TEAP, "Phase2Authentication"), TEAP, "InnerMethodConfig")
        nested, nested_config = _host(26)
        _mschapv2(nested_config)
        inner.append(nested)
        identity = _el(teap, TEAP, "Phase1Identity")
        _el(identity, TEAP, "IdentityPrivacy", "true")
        _el(identity, TEAP, "AnonymousIdentity", "anonymous")
        return root
    root, config = _host(eap_type)
    if request.method == "eap-mschapv2":
        _mschapv2(config)
        return root
    eap = _el(config, BASE, "Eap")
    _el(eap, BASE, "Type", str(eap_type))
    if request.method == "peap":
        peap = _el(eap, PEAP, "EapType")
        _server_validation(peap, PEAP, request)
        _el(peap, PEAP, "FastReconnect", "true")
        _el(peap, PEAP, "InnerEapOptional", "false")
        _mschapv2(peap)
        _el(peap, PEAP, "EnableQuarantineChecks", "false")
        _el(peap, PEAP, "RequireCryptoBinding", "true")
        return root
    request.need_device()
    tls = _el(eap, TLS, "EapType")
    source = _el(_el(tls, TLS, "CredentialsSource"), TLS, "CertificateStore")
    _el(source, TLS, "SimpleCertSelection", "true")
    _server_validation(tls, TLS, request)
    _el(tls, TLS, "DifferentUsername", "false")
    return root


# PowerShell ends a single-quoted string at any of these, not only at U+0027
# (about_Quoting_Rules; the tokenizer's IsSingleQuote): each is doubled inside.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def _quote(text: str) -> str:
    """A PowerShell single-quoted string literal (every single-quote character doubled)."""
    for quote in _SINGLE_QUOTES:
        text = text.replace(quote, quote * 2)
    return "'" + text + "'"


def powershell(request: ProfileRequest) -> bytes:
    """The script, UTF-8 with CRLF line ends (what Windows PowerShell 5.1 reads)."""
    xml = ET.tostring(eap_host_config(request), encoding="unicode")
    name = _quote(request.display_name)
    ca_file = f"eapkit-ca-{_thumbprint(request)[:16]}.cer"
    prompt = f"Password of the certificate of {request.user}"
    ca_b64 = base64.b64encode(request.ca.public_bytes(serialization.Encoding.DER)).decode()
    lines = [
        f"# IKEv2 VPN to {request.gateway} for {request.user}: written by eapkit profile windows.",
        "# Run in an elevated PowerShell: it imports the CA into the machine's Trusted Root",
        "# store and adds the connection for this user.",
        "#Requires -RunAsAdministrator",
        "$ErrorActionPreference = 'Stop'",
        f"$caFile = Join-Path $env:TEMP {_quote(ca_file)}",
        f"[IO.File]::WriteAllBytes($caFile, [Convert]::FromBase64String({_quote(ca_b64)}))",
        "Import-Certificate -FilePath $caFile -CertStoreLocation Cert:\\LocalMachine\\Root "
        "| Out-Null",
        "Remove-Item $caFile",
    ]
    if request.method == "eap-tls":
        p12 = base64.b64encode(request.p12()).decode()
        lines += [
            "$pfxFile = Join-Path $env:TEMP 'eapkit-device.p12'",
            f"[IO.File]::WriteAllBytes($pfxFile, [Convert]::FromBase64String({_quote(p12)}))",
            f"$pfxPassword = Read-Host -AsSecureString -Prompt {_quote(prompt)}",
            "Import-PfxCertificate -FilePath $pfxFile -CertStoreLocation Cert:\\CurrentUser\\My "
            "-Password $pfxPassword | Out-Null",
            "Remove-Item $pfxFile",
        ]
    lines += [
        f"$eapXml = [xml]{_quote(xml)}",
        f"Add-VpnConnection -Name {name} -ServerAddress {_quote(request.gateway)} "
        "-TunnelType Ikev2 -AuthenticationMethod Eap -EncryptionLevel Required "
        "-EapConfigXmlStream $eapXml -RememberCredential:$false -Force",
        f"Set-VpnConnectionIPsecConfiguration -ConnectionName {name} "
        "-AuthenticationTransformConstants GCMAES256 -CipherTransformConstants GCMAES256 "
        "-EncryptionMethod GCMAES256 -IntegrityCheckMethod SHA256 -DHGroup ECP256 "
        "-PfsGroup ECP256 -Force",
        f"Write-Host {_quote('Added ' + request.display_name)}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
