"""The strongSwan Android .sswan against the app's importer rules
(vectors/profiles/android/sswan_rules.json, from VpnProfileImportActivity)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from eapkit.profiles import android
from eapkit.profiles.common import ProfileError
from tests.profiles.helpers import P12_PASSWORD, pki, request, sswan_errors


def _document(method: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(android.sswan(request(method)))
    return loaded


@pytest.mark.parametrize("method", android.METHODS)
def test_the_app_would_import_every_field_as_written(method: str) -> None:
    document = _document(method)
    assert sswan_errors(document) == []
    assert document["type"] == android.TYPES[method]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.update(type="ikev2-eap-mschapv2"), "would be imported as ikev2-eap"),
        (lambda d: d.pop("uuid"), "uuid: required"),
        (lambda d: d.update(uuid="not-a-uuid"), "not a UUID"),
        (lambda d: d["remote"].pop("addr"), "remote.addr: required"),
        (lambda d: d["remote"].update(cert="%%%"), "not base64"),
        (lambda d: d.update({"ike-proposal": "aes256gcm16-prfsha256-ecp999"}), "ecp999"),
        (lambda d: d.update(mtu=9000), "mtu: not an integer in 1280..1500"),
        (lambda d: d["local"].update(p12="AAAA"), "local.p12: ignored for ikev2-eap"),
        (lambda d: d.update(gateway="x"), "gateway: not read by the app"),
    ],
)
def test_the_rules_refuse_what_the_app_would(change: Any, why: str) -> None:
    document = _document("eap-mschapv2")
    change(document)
    assert any(why in e for e in sswan_errors(document)), sswan_errors(document)


def test_remote_cert_is_the_ca_and_p12_the_users_credential() -> None:
    document = _document("cert-eap")
    ca = x509.load_der_x509_certificate(base64.b64decode(document["remote"]["cert"]))
    assert ca == pki()[0].certificate
    loaded = pkcs12.load_pkcs12(base64.b64decode(document["local"]["p12"]), P12_PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == pki()[3].certificate
    assert document["local"] == document["local"] | {"eap_id": "alice", "id": "laptop.example.org"}


def test_methods_the_app_lacks_are_refused() -> None:
    with pytest.raises(ProfileError, match="not teap"):
        android.sswan(request("teap"))
