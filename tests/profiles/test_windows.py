"""The Windows script's EapHostConfig against Microsoft's EAPHost schemas
(vectors/profiles/windows, assembled from Microsoft's published definitions), and the
script around it."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from eapkit.profiles import windows
from eapkit.profiles.common import ProfileError
from tests.profiles.helpers import P12_PASSWORD, pki, request, script_eap_xml
from tests.profiles.helpers import eap_host_config_errors as _errors


@pytest.mark.parametrize("method", windows.METHODS)
def test_eap_host_config_is_valid_against_microsofts_schemas(method: str) -> None:
    root = windows.eap_host_config(request(method))
    assert _errors(root) == []
    method_type = root.find(f"{{{windows.HOST}}}EapMethod/{{{windows.COMMON}}}Type")
    assert method_type is not None and method_type.text == str(windows.EAP_TYPES[method])


@pytest.mark.parametrize(
    ("method", "mutate", "why"),
    [
        ("peap", lambda t: t.replace(">true</", ">yes</", 1), "boolean"),
        ("eap-tls", lambda t: t.replace("SimpleCertSelection", "SimpleCertSelect"), "unexpected"),
        ("eap-mschapv2", lambda t: t.replace("<eapCommon:AuthorId>0</eapCommon:AuthorId>", ""),
         "AuthorId"),
        ("peap", lambda t: re.sub(r"<msPeap:TrustedRootCA>\w+", "<msPeap:TrustedRootCA>zz", t),
         "hexBinary"),
        ("eap-tls", lambda t: t.replace("eapTls:EapType", "eapTls:EapTyp"), "declared by no"),
        ("teap", lambda t: t.replace("DisablePrompt", "DisablePromt"), "unexpected"),
    ],
)  # fmt: skip
def test_the_schemas_refuse_what_windows_would(method: str, mutate: object, why: str) -> None:
    text = ET.tostring(windows.eap_host_config(request(method)), encoding="unicode")
    assert callable(mutate)
    broken = mutate(text)
    assert broken != text
    errors = _errors(ET.fromstring(broken))
    assert errors and any(why.lower() in e.lower() for e in errors), errors


def test_server_validation_pins_the_ca_and_eapkits_name() -> None:
    ca = pki()[0].certificate.public_bytes(Encoding.DER)
    import hashlib

    root = windows.eap_host_config(request("peap"))
    found = {el.tag.split("}")[1]: el.text for el in root.iter()}
    assert found["TrustedRootCA"] == hashlib.sha1(ca).hexdigest()
    assert found["ServerNames"] == "radius.example.org"
    assert found["RequireCryptoBinding"] == "true"
    teap = {el.tag.split("}")[1]: el.text for el in windows.eap_host_config(request("teap")).iter()}
    assert teap["TrustedRootCAHash"] == hashlib.sha256(ca).hexdigest()


def test_the_script_adds_an_ikev2_eap_connection_with_that_xml() -> None:
    script = windows.powershell(request("peap")).decode()
    assert "\r\n" in script
    add = next(line for line in script.splitlines() if line.startswith("Add-VpnConnection"))
    for word in ("-TunnelType Ikev2", "-AuthenticationMethod Eap", "-EapConfigXmlStream $eapXml"):
        assert word in add
    assert "Import-Certificate" in script and "Cert:\\LocalMachine\\Root" in script
    assert _errors(script_eap_xml(script)) == []
    assert "Import-PfxCertificate" not in script


def test_eap_tls_script_imports_the_users_pkcs12() -> None:
    script = windows.powershell(request("eap-tls")).decode()
    assert "Import-PfxCertificate" in script and "Read-Host -AsSecureString" in script
    blob = re.search(r"\$pfxFile, \[Convert\]::FromBase64String\('([A-Za-z0-9+/=]+)'\)", script)
    assert blob is not None
    loaded = pkcs12.load_pkcs12(base64.b64decode(blob.group(1)), P12_PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == pki()[2].certificate
    assert P12_PASSWORD not in script


def test_quotes_in_names_cannot_end_the_powershell_string() -> None:
    script = windows.powershell(request(name="it's'; Remove-Item C:\\ -Recurse; '")).decode()
    line = next(x for x in script.splitlines() if x.startswith("Add-VpnConnection"))
    assert "-Name 'it''s''; Remove-Item C:\\ -Recurse; '''" in line


def test_typographic_quotes_are_doubled_too() -> None:
    """PowerShell also ends a single-quoted string at U+2018..U+201B."""
    script = windows.powershell(request(name="a\u2019; Stop-Computer; \u2019")).decode()
    line = next(x for x in script.splitlines() if x.startswith("Add-VpnConnection"))
    assert "-Name 'a\u2019\u2019; Stop-Computer; \u2019\u2019'" in line


def test_cert_then_eap_is_refused_for_windows() -> None:
    with pytest.raises(ProfileError, match="RFC 4739"):
        windows.powershell(request("cert-eap"))
