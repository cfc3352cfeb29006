"""The device registry: which certificate is which device, whose it is, and whether it
is still trusted (issue 20).

A VPN gateway that runs "certificate + EAP" (RFC 4739: round 1 proves the device's
certificate in IKE_AUTH, round 2 runs EAP for the user) proves two things that nothing
ties together: a stolen laptop and someone else's password and code still open a
tunnel.  The registry ties them:

- A **device** is one certificate, known by its SHA-256 fingerprint (over the DER) and
  by issuer + serial (RFC 5280 §4.1.2.2: unique per issuer, which is what a CRL names),
  with its subject, the IKE identities it can prove (:func:`ike_identities`), its
  **owners** (the EAP users allowed to log in with it), its state (``active`` or
  ``revoked``) and who added/revoked it, when and why.
- :func:`decide` answers the gateway's question after authentication: may the EAP user
  ``E`` log in with the device that proved IKE identity ``I``?  Only if an *active*
  device proves ``I`` and lists ``E`` among its owners.  strongSwan's ext-auth plugin
  passes ``I`` and ``E`` (:mod:`eapkit.integrations.strongswan_ext_auth`).
- :func:`device_crl` is the CRL (RFC 5280 §5) of every revoked device an issuing CA
  signed, with a CRL number that only grows (§5.2.3), for the gateway to load: the
  identity check cannot tell a revoked certificate from its renewed successor with the
  same name, the CRL can.  :class:`PublishedCrl` is that CRL file as an HTTP CRL
  distribution point serves it (``[bridge] device_crl``), for a gateway that fetches it.

Records live in the server's :class:`~eapkit.store.base.Store` as JSON under
``device:<fingerprint>``; index records (JSON lists of fingerprints) find them by name,
by issuer + serial and by IKE identity in one read each, and one lists them all.  Device
records hold no secret, so they are not sealed.  A store that cannot answer makes
:func:`decide` refuse (``store_unavailable``): fail closed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from eapkit import pki
from eapkit.errors import ConfigError, DecodeError, EapkitError
from eapkit.store.base import Store, StoreUnavailable

__all__ = [
    "Device",
    "DeviceDecision",
    "DeviceError",
    "DeviceRegistry",
    "PublishedCrl",
    "decide",
    "device_crl",
    "device_event",
    "fingerprint",
    "ike_identities",
    "load_ca",
    "load_certificate",
    "normalize_identity",
]

State = Literal["active", "revoked"]
STATES: tuple[State, ...] = ("active", "revoked")
INDEX_KEY = "devices:index"
CRL_NUMBER_KEY = "devices:crl_number"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")

# strongSwan prints a DN in encoded order, "C=CH, O=Org, CN=name" (its dntoa()), with
# these short names; an attribute it does not name is printed by its dotted OID.
_DN_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "G",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}


class DeviceError(EapkitError, ValueError):
    """A registry request that cannot be done: unknown device, duplicate, bad input."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the certificate's DER, lower-case hex (what ``openssl x509
    -fingerprint -sha256`` prints, without the colons)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM or DER file; :class:`DeviceError` if there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeviceError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise DeviceError(f"{path} holds no X.509 certificate (PEM or DER)") from None


def _dn(name: x509.Name) -> str:
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = _DN_NAMES.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def normalize_identity(identity: str) -> str:
    """One spelling of an IKE identity for comparison: case folded, and no blanks
    around a DN's ``,`` and ``=`` (``CN=a,O=b`` and ``CN=a, O=b`` are one DN)."""
    text = identity.strip()
    if "=" in text:
        text = re.sub(r"\s*([,=])\s*", r"\1", text)
    return text.casefold()


def ike_identities(cert: x509.Certificate) -> tuple[str, ...]:
    """The IKE identities (RFC 7296 §3.5) this certificate can prove to strongSwan: its
    subject DN as strongSwan prints it, and its subjectAltName dNSName, rfc822Name and
    iPAddress entries (strongSwan accepts an IDi that is the subject or one of them)."""
    found = [_dn(cert.subject)] if len(cert.subject) else []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        found += san.get_values_for_type(x509.DNSName)
        found += san.get_values_for_type(x509.RFC822Name)
        found += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(dict.fromkeys(found))


def _check_name(what: str, name: str) -> str:
    if not _NAME.match(name):
        raise DeviceError(
            f"{what} {name!r}: use 1-128 letters, digits and . _ @ : - (starting with a "
            "letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Device:
    """One registered device certificate."""

    name: str
    fingerprint: str  # SHA-256 of the DER, hex
    serial: int
    issuer: str  # RFC 4514
    subject: str  # RFC 4514
    identities: tuple[str, ...]  # what ike_identities() found
    owners: tuple[str, ...]  # EAP users allowed to log in with it
    not_after: float
    added_by: str
    added_at: float
    state: State = "active"
    revoked_by: str = ""
    revoked_at: float = 0.0
    reason: str = ""

    @classmethod
    def from_certificate(
        cls,
        cert: x509.Certificate,
        *,
        name: str | None,
        owners: Sequence[str],
        added_by: str,
        now: float,
    ) -> Device:
        if not owners:
            raise DeviceError("a device needs at least one owner (--user)")
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        default = str(cn[0].value) if cn else fingerprint(cert)[:16]
        return cls(
            name=_check_name("device name", name or default),
            fingerprint=fingerprint(cert),
            serial=cert.serial_number,
            issuer=cert.issuer.rfc4514_string(),
            subject=cert.subject.rfc4514_string(),
            identities=ike_identities(cert),
            owners=tuple(dict.fromkeys(_check_name("user", o) for o in owners)),
            not_after=cert.not_valid_after_utc.timestamp(),
            added_by=added_by,
            added_at=now,
        )

    def proves(self, identity: str) -> bool:
        wanted = normalize_identity(identity)
        return any(normalize_identity(i) == wanted for i in self.identities)

    def to_json(self) -> bytes:
        fields = dict(self.__dict__)
        fields["serial"] = format(self.serial, "x")
        fields["identities"] = list(self.identities)
        fields["owners"] = list(self.owners)
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Device:
        """A stored record; :class:`DecodeError` for anything that is not one."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            strings = ("name", "fingerprint", "issuer", "subject", "added_by", "revoked_by")
            kwargs: dict[str, Any] = {k: _typed(data, k, str) for k in (*strings, "reason")}
            kwargs["serial"] = int(_typed(data, "serial", str), 16)
            for key in ("identities", "owners"):
                items = _typed(data, key, list)
                if not all(isinstance(i, str) for i in items):
                    raise TypeError(f"{key} holds a non-string")
                kwargs[key] = tuple(items)
            for key in ("not_after", "added_at", "revoked_at"):
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"{key} is not a number")
                kwargs[key] = float(value)
            state = data["state"]
            if state not in STATES:
                raise ValueError(f"state {state!r}")
            kwargs["state"] = state
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise DecodeError(f"not a device record: {exc}") from None
        return cls(**kwargs)


def _typed(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data[key]
    if not isinstance(value, kind):
        raise TypeError(f"{key} is not a {kind.__name__}")
    return value


class DeviceRegistry:
    """Devices in a :class:`Store` (see the module's docstring for the keys)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _key(fp: str) -> str:
        return f"device:{fp}"

    @staticmethod
    def _hashed(kind: str, text: str) -> str:
        return f"device-{kind}:{hashlib.sha256(text.encode()).hexdigest()}"

    def _strings(self, key: str) -> list[str]:
        """A JSON list of fingerprints under ``key`` ([] when absent)."""
        raw = self.store.get(key)
        if raw is None:
            return []
        try:
            items = json.loads(raw)
        except ValueError:
            raise DecodeError(f"{key} is not JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise DecodeError(f"{key} is not a list of fingerprints")
        return items

    def _append(self, key: str, fp: str) -> None:
        items = self._strings(key)
        if fp not in items:
            self.store.put(key, json.dumps([*items, fp]).encode())

    def _devices(self, fps: Iterable[str]) -> list[Device]:
        found = (self.by_fingerprint(fp) for fp in fps)
        return [d for d in found if d is not None]  # an entry whose record was never written

    def proving(self, identity: str) -> list[Device]:
        """The devices whose certificate proves the IKE ``identity`` (one index read
        and one read per device, whatever the registry's size)."""
        key = self._hashed("identity", normalize_identity(identity))
        return [d for d in self._devices(self._strings(key)) if d.proves(identity)]

    def by_fingerprint(self, fp: str) -> Device | None:
        """The device of this certificate fingerprint (one store read), or None."""
        raw = self.store.get(self._key(fp))
        return Device.from_json(raw) if raw is not None else None

    def get(self, name_or_fingerprint: str) -> Device | None:
        """By name, by full fingerprint (colons and case ignored), or by a unique
        fingerprint prefix of at least 8 hex digits (that one reads every record)."""
        named = self.store.get(self._hashed("name", name_or_fingerprint))
        if named is not None:
            return self.by_fingerprint(named.decode("ascii", "replace"))
        wanted = name_or_fingerprint.replace(":", "").lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", wanted):
            return None
        if len(wanted) == 64:
            return self.by_fingerprint(wanted)
        matches = [d for d in self.list() if d.fingerprint.startswith(wanted)]
        if len(matches) > 1:
            raise DeviceError(f"fingerprint prefix {name_or_fingerprint} is ambiguous")
        return matches[0] if matches else None

    def add(self, device: Device) -> None:
        """Register ``device``; :class:`DeviceError` if its certificate, its name, or
        its issuer and serial are registered already.  The indexes are written before
        the record, so a failure in between leaves entries that lead nowhere (skipped),
        never a record no index finds."""
        old = self.by_fingerprint(device.fingerprint)
        if old is not None:
            raise DeviceError(f"this certificate is registered already as {old.name}")
        name_key = self._hashed("name", device.name)
        named = self.store.get(name_key)
        if named is not None and self.by_fingerprint(named.decode("ascii", "replace")):
            raise DeviceError(f"a device named {device.name} exists ({named.decode()})")
        serial_key = self._hashed("serial", f"{device.issuer}\0{device.serial:x}")
        same = self._devices(self._strings(serial_key))
        if same:
            raise DeviceError(
                f"{same[0].name} has the same issuer and serial number: one of the two "
                "certificates is not what its CA issued"
            )
        self._append(INDEX_KEY, device.fingerprint)
        self.store.put(name_key, device.fingerprint.encode())
        self._append(serial_key, device.fingerprint)
        for identity in device.identities:
            self._append(self._hashed("identity", normalize_identity(identity)), device.fingerprint)
        self.store.put(self._key(device.fingerprint), device.to_json())

    def revoke(self, name: str, *, by: str, reason: str, now: float) -> Device:
        device = self.get(name)
        if device is None:
            raise DeviceError(f"no device {name}")
        if device.state == "revoked":
            raise DeviceError(f"device {device.name} was revoked already")
        if not reason.strip():
            raise DeviceError("a revocation needs a reason (--reason)")
        revoked = replace(device, state="revoked", revoked_by=by, revoked_at=now, reason=reason)
        self.store.put(self._key(device.fingerprint), revoked.to_json())
        return revoked

    def list(self) -> list[Device]:  # last: ``list`` names this method below it
        return self._devices(self._strings(INDEX_KEY))

    def next_crl_number(self) -> int:
        """A CRL number above every earlier one (RFC 5280 §5.2.3), from the store."""
        while True:
            number = (self.store.counter(CRL_NUMBER_KEY) or 0) + 1
            if self.store.advance(CRL_NUMBER_KEY, number):
                return number


@dataclass(frozen=True)
class DeviceDecision:
    """The answer to "may this EAP user log in with this device?"."""

    allowed: bool
    reason: str  # "allowed" or why not
    device: Device | None = None

    def record(self, ike_identity: str, eap_identity: str | None) -> dict[str, Any]:
        """The decision-log line's fields (``event`` device_allowed / device_refused)."""
        line: dict[str, Any] = {
            "event": "device_allowed" if self.allowed else "device_refused",
            "user": eap_identity,
            "ike_identity": ike_identity,
            "reason": self.reason,
        }
        if self.device is not None:
            line["device"] = self.device.name
            line["fingerprint"] = self.device.fingerprint
        return line


def device_event(
    reason: str, user: str | None, device: Device | None, now: float, client: str = ""
) -> dict[str, Any]:
    """A ``device_refused`` decision-log line (the audit report counts them)."""
    line: dict[str, Any] = {"time": round(now, 3), "event": "device_refused", "user": user}
    if device is not None:
        line.update(device=device.name, fingerprint=device.fingerprint)
    line.update(reason=reason, client=client)
    return line


def decide(registry: DeviceRegistry, ike_identity: str, eap_identity: str | None) -> DeviceDecision:
    """May ``eap_identity`` log in with the device that proved ``ike_identity``?

    Reasons: ``no_eap_identity`` (no EAP round), ``unknown_device`` (no registered
    device proves the identity), ``device_revoked`` (only revoked ones do),
    ``device_not_allowed`` (active, but the user is not an owner),
    ``store_unavailable`` / ``bad_record`` (fail closed)."""
    if not eap_identity:
        return DeviceDecision(False, "no_eap_identity")
    try:
        matching = registry.proving(ike_identity)
    except StoreUnavailable:
        return DeviceDecision(False, "store_unavailable")
    except DecodeError:
        return DeviceDecision(False, "bad_record")
    active = [d for d in matching if d.state == "active"]
    if not matching:
        return DeviceDecision(False, "unknown_device")
    if not active:
        return DeviceDecision(False, "device_revoked", matching[0])
    for device in active:
        if eap_identity in device.owners:
            return DeviceDecision(True, "allowed", device)
    return DeviceDecision(False, "device_not_allowed", active[0])


def load_ca(cert_path: Path, key_path: Path) -> pki.Issued:
    """The issuing CA's certificate and private key (PEM), checked to belong together
    and to be allowed to sign CRLs (RFC 5280 §4.2.1.3 cRLSign)."""
    cert = load_certificate(cert_path)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read {key_path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise ConfigError(f"{key_path} holds no unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{key_path}: only EC and RSA CA keys are supported")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ConfigError(f"{key_path} is not the key of {cert_path}")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            raise ConfigError(f"{cert_path} may not sign CRLs (no cRLSign key usage)")
    except x509.ExtensionNotFound:
        pass
    return pki.Issued(cert, key, (cert,))


def device_crl(
    ca: pki.Issued, devices: Iterable[Device], *, number: int, now: dt.datetime, days: float = 7
) -> x509.CertificateRevocationList:
    """The CRL of every revoked device that ``ca`` issued, each with its revocation
    time (RFC 5280 §5.3): devices of other issuers are not this CA's to list."""
    issuer = ca.certificate.subject.rfc4514_string()
    revoked = {
        d.serial: dt.datetime.fromtimestamp(d.revoked_at, dt.UTC)
        for d in devices
        if d.state == "revoked" and d.issuer == issuer
    }
    return pki.make_crl(ca, revoked, now=now, days=days, number=number, revoked_at=revoked)


class PublishedCrl:
    """The device CRL file (what ``eapkit device revoke --crl`` / ``device crl --out``
    write, PEM or DER) as an HTTP CRL distribution point serves it: one DER-encoded
    CRL (RFC 5280 §4.2.1.13, RFC 2585 §3), read again when the file's mtime, size or
    inode changed.

    :meth:`der` is ``None`` while the file is missing or holds no CRL (the writer
    renames a complete file into place, so that is a setup error, not a race)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._der: bytes | None = None

    def der(self) -> bytes | None:
        try:
            st = os.stat(self.path)
        except OSError:
            self._seen, self._der = None, None
            return None
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen != self._seen:
            self._seen, self._der = seen, self._load()
        return self._der

    def _load(self) -> bytes | None:
        try:
            raw = self.path.read_bytes()
        except OSError:
            return None
        try:
            crl = pki.load_crl(raw)
        except ValueError:
            return None
        return crl.public_bytes(serialization.Encoding.DER)
