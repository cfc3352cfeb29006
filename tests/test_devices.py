"""The device registry (issue 20): records, the binding decision, the device CRL."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from eapkit import pki
from eapkit.devices import (
    Device,
    DeviceError,
    DeviceRegistry,
    PublishedCrl,
    decide,
    device_crl,
    fingerprint,
    ike_identities,
    load_ca,
    normalize_identity,
)
from eapkit.errors import ConfigError, DecodeError
from eapkit.integrations.strongswan_ext_auth import ExtAuthRequest, check
from eapkit.store.base import StoreUnavailable
from eapkit.store.memory import MemoryStore

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@functools.cache
def pkis() -> tuple[pki.Issued, pki.Issued, pki.Issued, pki.Issued]:
    ca = pki.make_ca("devices CA", now=NOW)
    other = pki.make_ca("other CA", now=NOW)
    laptop = pki.make_client(
        ca, "alice-laptop", dns_names=["alice-laptop.example.org"], email="a@example.org", now=NOW
    )
    phone = pki.make_client(ca, "bob-phone", now=NOW)
    return ca, other, laptop, phone


def device(issued: pki.Issued, owners: tuple[str, ...], name: str | None = None) -> Device:
    return Device.from_certificate(
        issued.certificate, name=name, owners=owners, added_by="root", now=NOW.timestamp()
    )


def test_identities_are_what_strongswan_prints() -> None:
    ca, _, laptop, _ = pkis()
    assert ike_identities(laptop.certificate) == (
        "CN=alice-laptop",
        "alice-laptop.example.org",
        "a@example.org",
    )
    # a DN with more than one attribute, in encoded order as charon's dntoa prints it
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eapkit"),
            x509.NameAttribute(NameOID.COMMON_NAME, "gw"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(ca.key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    assert ike_identities(cert) == ("C=CH, O=eapkit, CN=gw",)
    assert normalize_identity("c=ch,O = eapkit,  CN=GW") == normalize_identity(
        "C=CH, O=eapkit, CN=gw"
    )


def test_binding_decisions() -> None:
    _, _, laptop, phone = pkis()
    registry = DeviceRegistry(MemoryStore())
    registry.add(device(laptop, ("alice",)))
    registry.add(device(phone, ("bob", "carol"), name="bobs-phone"))
    assert decide(registry, "CN=alice-laptop", "alice").allowed
    assert decide(registry, "alice-laptop.example.org", "alice").reason == "allowed"
    refused = decide(registry, "CN=alice-laptop", "bob")
    assert (refused.allowed, refused.reason) == (False, "device_not_allowed")
    assert refused.device is not None and refused.device.name == "alice-laptop"
    assert decide(registry, "CN=bob-phone", "carol").allowed
    assert decide(registry, "CN=mallory", "alice").reason == "unknown_device"
    assert decide(registry, "CN=alice-laptop", None).reason == "no_eap_identity"
    registry.revoke("alice-laptop", by="root", reason="stolen", now=NOW.timestamp())
    assert decide(registry, "CN=alice-laptop", "alice").reason == "device_revoked"
    line = decide(registry, "CN=alice-laptop", "alice").record("CN=alice-laptop", "alice")
    assert line["event"] == "device_refused" and line["fingerprint"] == fingerprint(
        laptop.certificate
    )


class DownStore(MemoryStore):
    def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("down")


def test_a_store_that_cannot_answer_refuses() -> None:
    assert decide(DeviceRegistry(DownStore()), "CN=alice-laptop", "alice").reason == (
        "store_unavailable"
    )
    store = MemoryStore()
    registry = DeviceRegistry(store)
    store.put(registry._hashed("identity", "cn=alice-laptop"), b'["abc"]')
    store.put("device:abc", b'{"name": 1}')
    assert decide(registry, "CN=alice-laptop", "alice").reason == "bad_record"
    store.put(registry._hashed("identity", "cn=alice-laptop"), b"{}")
    assert decide(registry, "CN=alice-laptop", "alice").reason == "bad_record"


def test_registry_refuses_duplicates_and_bad_input() -> None:
    _, _, laptop, phone = pkis()
    registry = DeviceRegistry(MemoryStore())
    registry.add(device(laptop, ("alice",)))
    with pytest.raises(DeviceError, match="registered already"):
        registry.add(device(laptop, ("bob",), name="another-name"))
    with pytest.raises(DeviceError, match="named alice-laptop exists"):
        registry.add(device(phone, ("bob",), name="alice-laptop"))
    with pytest.raises(DeviceError, match="at least one owner"):
        device(phone, ())
    with pytest.raises(DeviceError, match="device name"):
        device(phone, ("bob",), name="has space")
    with pytest.raises(DeviceError, match="no device"):
        registry.revoke("nope", by="root", reason="x", now=0)
    with pytest.raises(DeviceError, match="reason"):
        registry.revoke("alice-laptop", by="root", reason=" ", now=0)
    fp = fingerprint(laptop.certificate)
    assert registry.get(fp[:12]) == registry.get("alice-laptop")
    assert registry.get(":".join(fp[i : i + 2] for i in range(0, 64, 2)).upper()) is not None
    assert [d.name for d in registry.list()] == ["alice-laptop"]


devices = st.builds(
    Device,
    name=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    fingerprint=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    serial=st.integers(min_value=1, max_value=2**159),
    issuer=st.text(),
    subject=st.text(),
    identities=st.lists(st.text()).map(tuple),
    owners=st.lists(st.text(min_size=1)).map(tuple),
    not_after=st.floats(min_value=0, max_value=4e9),
    added_by=st.text(),
    added_at=st.floats(min_value=0, max_value=4e9),
    state=st.sampled_from(["active", "revoked"]),
    revoked_by=st.text(),
    revoked_at=st.floats(min_value=0, max_value=4e9),
    reason=st.text(),
)


@given(devices)
def test_record_round_trip(d: Device) -> None:
    assert Device.from_json(d.to_json()) == d


@given(st.binary(max_size=300))
def test_garbage_records_raise_decode_error_only(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):  # anything else fails the test
        Device.from_json(raw)


@given(devices, st.sampled_from(["serial", "owners", "state", "added_at", "name"]))
def test_a_record_with_a_wrong_field_is_a_decode_error(d: Device, key: str) -> None:
    import json

    data = json.loads(d.to_json())
    data[key] = {"serial": "zz", "owners": [1], "state": "lost", "added_at": "x", "name": 3}[key]
    with pytest.raises(DecodeError):
        Device.from_json(json.dumps(data).encode())


def test_device_crl_lists_revoked_devices_of_its_ca_only() -> None:
    ca, other, laptop, phone = pkis()
    foreign = pki.make_client(other, "foreign", now=NOW)
    registry = DeviceRegistry(MemoryStore())
    for issued, owner in ((laptop, "alice"), (phone, "bob"), (foreign, "eve")):
        registry.add(device(issued, (owner,)))
    registry.revoke("alice-laptop", by="root", reason="stolen", now=NOW.timestamp())
    registry.revoke("foreign", by="root", reason="left", now=NOW.timestamp())
    first = device_crl(ca, registry.list(), number=registry.next_crl_number(), now=NOW)
    second = device_crl(ca, registry.list(), number=registry.next_crl_number(), now=NOW)
    assert first.is_signature_valid(ca.key.public_key())
    assert [r.serial_number for r in first] == [laptop.serial]
    revoked = first.get_revoked_certificate_by_serial_number(laptop.serial)
    assert revoked is not None and revoked.revocation_date_utc == NOW
    numbers = [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for c in (first, second)
    ]
    assert numbers[0] < numbers[1]


def test_load_ca_checks_the_key_belongs(tmp_path: Path) -> None:
    ca, other, _, _ = pkis()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(ca.key_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    (tmp_path / "junk.key").write_bytes(b"not a key")
    assert load_ca(tmp_path / "ca.pem", tmp_path / "ca.key").certificate == ca.certificate
    with pytest.raises(ConfigError, match="not the key"):
        load_ca(tmp_path / "ca.pem", tmp_path / "other.key")
    with pytest.raises(ConfigError, match="no unencrypted PEM"):
        load_ca(tmp_path / "ca.pem", tmp_path / "junk.key")
    with pytest.raises(DeviceError, match=r"no X\.509"):
        load_ca(tmp_path / "ca.key", tmp_path / "ca.key")


def test_ext_auth_environment() -> None:
    _, _, laptop, _ = pkis()
    registry = DeviceRegistry(MemoryStore())
    registry.add(device(laptop, ("alice",)))
    env = {
        "IKE_UNIQUE_ID": "3",
        "IKE_NAME": "rw",
        "IKE_REMOTE_HOST": "192.0.2.2",
        "IKE_REMOTE_ID": "CN=alice-laptop",
        "IKE_REMOTE_EAP_ID": "bob",
    }
    request = ExtAuthRequest.from_environ(env)
    assert check(registry, request).reason == "device_not_allowed"
    assert check(registry, request, ["other"]).reason == "connection_not_bound"
    assert check(registry, replace(request, eap_id="alice")).allowed
    with pytest.raises(ConfigError, match="IKE_REMOTE_ID"):
        ExtAuthRequest.from_environ({})


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return super().get(key)


def test_a_check_reads_the_matching_devices_only() -> None:
    """ext-auth runs a check per login: its cost must not grow with the registry."""
    _, _, laptop, _ = pkis()
    store = CountingStore()
    registry = DeviceRegistry(store)
    template = device(laptop, ("alice",))
    for i in range(50):
        fp = f"{i:064x}"
        registry.add(
            replace(template, name=f"d{i}", fingerprint=fp, serial=i + 1, identities=(f"CN=d{i}",))
        )
    store.reads = 0
    assert decide(registry, "CN=d49", "alice").allowed
    assert store.reads == 2  # the identity's index, the one record
    store.reads = 0
    assert registry.get("d7") is not None and store.reads == 2  # the name's key, the record


def test_published_crl_is_der_and_follows_the_file(tmp_path: Path) -> None:
    """What GET /devices.crl serves: the file's CRL as DER (RFC 5280 §4.2.1.13), the new
    one once the file is replaced, nothing while the file is missing or not a CRL."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("devices CA", now=now)
    path = tmp_path / "devices.crl"
    published = PublishedCrl(path)
    assert published.der() is None
    first = pki.make_crl(ca, [7], now=now, number=1)
    path.write_bytes(pki.crl_pem(first))
    assert published.der() == first.public_bytes(serialization.Encoding.DER)
    second = pki.make_crl(ca, [7, 9], now=now, number=2)
    tmp = tmp_path / "devices.crl.tmp"
    tmp.write_bytes(second.public_bytes(serialization.Encoding.DER))  # DER is kept as is
    tmp.replace(path)  # as the writer does: a rename
    der = published.der()
    assert der is not None
    assert {r.serial_number for r in x509.load_der_x509_crl(der)} == {7, 9}
    path.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    assert published.der() is None
    path.unlink()
    assert published.der() is None
