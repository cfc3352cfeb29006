"""The Apple .mobileconfig: every payload key and type against Apple's device-management
schema (vectors/profiles/apple, verbatim), the PKCS#12 payload, and the signature."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from eapkit.profiles import apple
from eapkit.profiles.common import ProfileError
from tests.conftest import require_tool
from tests.profiles.helpers import P12_PASSWORD, apple_errors, pki, request


def _profile(method: str) -> dict[str, Any]:
    loaded: dict[str, Any] = plistlib.loads(apple.mobileconfig(request(method)))
    return loaded


def _payload(profile: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [p for p in profile["PayloadContent"] if p["PayloadType"] == kind]
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("method", apple.METHODS)
def test_every_key_and_type_is_in_apples_schema(method: str) -> None:
    assert apple_errors(_profile(method)) == []


def test_the_schema_check_catches_wrong_keys_types_and_values() -> None:
    """The checker is not a rubber stamp: each of these is refused."""
    profile = _profile("eap-mschapv2")
    ike = _payload(profile, "com.apple.vpn.managed")["IKEv2"]
    ike["ExtendedAuthEnabled"] = True  # <integer> in Apple's schema, not <boolean>
    ike["EnablePfs"] = 1  # misspelt
    ike["IKESecurityAssociationParameters"]["DiffieHellmanGroup"] = 22  # not offered
    ike["IKESecurityAssociationParameters"]["LifeTimeInMinutes"] = 5  # below 10
    del ike["RemoteIdentifier"]  # required
    errors = "\n".join(apple_errors(profile))
    for what in (
        "ExtendedAuthEnabled: bool",
        "EnablePfs: not a key",
        "DiffieHellmanGroup: 22 not in",
        "LifeTimeInMinutes: 5 outside",
        "RemoteIdentifier: required",
    ):
        assert what in errors


def test_eap_only_login_names_the_user_and_trusts_the_ca() -> None:
    profile = _profile("eap-mschapv2")
    vpn = _payload(profile, "com.apple.vpn.managed")
    ike = vpn["IKEv2"]
    assert vpn["VPNType"] == "IKEv2"
    assert (ike["AuthenticationMethod"], ike["ExtendedAuthEnabled"]) == ("None", 1)
    assert ike["AuthName"] == "alice"
    assert ike["RemoteAddress"] == ike["RemoteIdentifier"] == "vpn.example.org"
    assert ike["ServerCertificateIssuerCommonName"] == "Example VPN CA"
    assert ike["IKESecurityAssociationParameters"]["EncryptionAlgorithm"] == "AES-256-GCM"
    assert ike["EnablePFS"] == 1
    ca = pki()[0].certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    assert _payload(profile, "com.apple.security.root")["PayloadContent"] == ca.public_bytes(
        Encoding.DER
    )
    assert not [p for p in profile["PayloadContent"] if p["PayloadType"].endswith("pkcs12")]


@pytest.mark.parametrize(("method", "ike_auth"), [("eap-tls", "None"), ("cert-eap", "Certificate")])
def test_certificate_methods_carry_a_password_protected_pkcs12(method: str, ike_auth: str) -> None:
    profile = _profile(method)
    ike = _payload(profile, "com.apple.vpn.managed")["IKEv2"]
    p12 = _payload(profile, "com.apple.security.pkcs12")
    assert ike["AuthenticationMethod"] == ike_auth
    assert ike["PayloadCertificateUUID"] == p12["PayloadUUID"]
    assert "Password" not in p12  # the device asks for it
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(p12["PayloadContent"], b"wrong password")
    loaded = pkcs12.load_pkcs12(p12["PayloadContent"], P12_PASSWORD.encode())
    holder = pki()[2] if method == "eap-tls" else pki()[3]
    assert loaded.cert is not None and loaded.cert.certificate == holder.certificate
    assert loaded.key is not None
    assert loaded.key.public_key() == holder.certificate.public_key()


def test_a_profile_made_again_keeps_its_identifiers() -> None:
    """Same user and gateway: same PayloadUUIDs, so a device replaces the old profile."""
    first, second = _profile("eap-tls"), _profile("eap-tls")
    assert [p["PayloadUUID"] for p in first["PayloadContent"]] == [
        p["PayloadUUID"] for p in second["PayloadContent"]
    ]
    other = plistlib.loads(apple.mobileconfig(request("eap-mschapv2", user="bob")))
    assert other["PayloadUUID"] != first["PayloadUUID"]


def test_methods_apple_does_not_take_are_refused() -> None:
    with pytest.raises(ProfileError, match="not peap"):
        apple.mobileconfig(request("peap"))


def test_signed_profile_verifies_with_openssl_and_holds_the_plist(tmp_path: Path) -> None:
    """CMS SignedData (RFC 5652) that OpenSSL verifies against the signer's CA; the
    content is the very plist."""
    tools = require_tool("openssl")
    ca, gateway, _, _ = pki()
    plist = apple.mobileconfig(request("eap-mschapv2"))
    key: Any = gateway.key
    signed = tmp_path / "signed.mobileconfig"
    signed.write_bytes(apple.sign(plist, gateway.certificate, key))
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    out = tmp_path / "out.plist"
    run = subprocess.run(
        [tools["openssl"], "cms", "-verify", "-inform", "DER", "-in", str(signed),
         "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "any", "-out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == plist
    tampered = bytearray(signed.read_bytes())
    at = tampered.find(b"AES-256-GCM")
    tampered[at : at + 3] = b"DES"
    signed.write_bytes(bytes(tampered))
    bad = subprocess.run(
        [tools["openssl"], "cms", "-verify", "-inform", "DER", "-in", str(signed),
         "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "any", "-out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
