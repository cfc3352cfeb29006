"""What a policy needs to know about a peer's certificate, and name matching.

:class:`PeerCertificate` is a read-only summary of an X.509 certificate (RFC 5280
§4.1.2.6 subject, §4.2.1.6 subjectAltName, §4.2.1.12 extKeyUsage) that a server's
policy hook uses to bind the certificate to the EAP identity (RFC 5216 §5.2) and to
choose the user name.

:func:`matches_domain` implements the server-name check of the peer, with the two
behaviours of wpa_supplicant: ``domain_match`` (a dNSName equals one of the names)
and ``domain_suffix_match`` (a dNSName equals the suffix or ends with ``.suffix``).
As there, the subject CN counts only when the certificate has no dNSName
(RFC 6125 §6.4.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PeerCertificate", "matches_domain"]

_UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def _der_string(value: bytes) -> str | None:
    """Decode a DER UTF8String/IA5String (the UPN otherName) without trusting it."""
    if len(value) < 2 or value[0] not in (0x0C, 0x16):
        return None
    size = value[1]
    offset = 2
    if size & 0x80:
        count = size & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            return None
        size = int.from_bytes(value[2 : 2 + count], "big")
        offset = 2 + count
    if offset + size != len(value):
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A summary of the peer's end-entity certificate."""

    subject: str
    issuer: str
    serial: int
    common_names: tuple[str, ...]
    dns_names: tuple[str, ...]
    emails: tuple[str, ...]
    upns: tuple[str, ...]
    extended_key_usage: tuple[str, ...] | None
    certificate: x509.Certificate

    @property
    def has_client_auth(self) -> bool:
        """True when the certificate may authenticate a TLS client (no EKU means any)."""
        eku = self.extended_key_usage
        return eku is None or ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string in eku

    @property
    def names(self) -> tuple[str, ...]:
        """Every name an identity may be bound to: CN, e-mail, UPN, dNSName."""
        return self.common_names + self.emails + self.upns + self.dns_names

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> PeerCertificate:
        cns = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
        dns: list[str] = []
        emails: list[str] = []
        upns: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (x509.ExtensionNotFound, ValueError):
            san = None
        if san is not None:
            dns = list(san.get_values_for_type(x509.DNSName))
            emails = list(san.get_values_for_type(x509.RFC822Name))
            for other in san.get_values_for_type(x509.OtherName):
                if other.type_id == _UPN and (text := _der_string(other.value)) is not None:
                    upns.append(text)
        eku: tuple[str, ...] | None
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            eku = tuple(oid.dotted_string for oid in usage)
        except (x509.ExtensionNotFound, ValueError):
            eku = None
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial=cert.serial_number,
            common_names=cns,
            dns_names=tuple(dns),
            emails=tuple(emails),
            upns=tuple(upns),
            extended_key_usage=eku,
            certificate=cert,
        )


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def matches_domain(
    cert: PeerCertificate, exact: Sequence[str] = (), suffixes: Sequence[str] = ()
) -> bool:
    """wpa_supplicant's ``domain_match`` (any of ``exact``) and
    ``domain_suffix_match`` (any of ``suffixes``); both lists empty matches anything."""
    if not exact and not suffixes:
        return True
    candidates = [_norm(n) for n in (cert.dns_names or cert.common_names)]
    wanted = {_norm(n) for n in exact}
    if any(c in wanted for c in candidates):
        return True
    for suffix in (_norm(s) for s in suffixes):
        if not suffix:
            continue
        for c in candidates:
            if c == suffix or c.endswith("." + suffix):
                return True
    return False
