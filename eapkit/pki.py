"""A tiny certificate authority for tests, benchmarks and ``eapkit serve``'s demo CA.

It issues what EAP-TLS needs (RFC 5216 §5.3, RFC 9190 §5.1): a root CA, a server
certificate with ``dNSName`` SANs and the serverAuth EKU, client certificates with the
clientAuth EKU and an e-mail / UPN SAN the server policy can bind to the EAP identity,
and CRLs.  Keys are ECDSA P-256 by default (fast) or RSA (``key_type="rsa"``).

Nothing here reads a clock: every function takes ``now`` (an aware ``datetime``), so a
test can make a certificate that expired yesterday or a CRL that is already stale.
This is a convenience for labs and tests, not a production CA: keys live in memory
and serial numbers come from ``os.urandom`` via ``x509.random_serial_number``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from eapkit.private_files import private_dir, write_private

__all__ = [
    "UPN_OID",
    "Issued",
    "KeyType",
    "load_crl",
    "make_ca",
    "make_client",
    "make_crl",
    "make_intermediate",
    "make_server",
    "write_pki",
]

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Microsoft User Principal Name otherName (used by Windows clients for EAP-TLS users)
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and the chain above it (issuer first, root last)."""

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The certificate followed by its intermediates (never the root): what a TLS
        endpoint sends."""
        parts = [self.certificate, *(c for c in self.chain if not _self_signed(c))]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in parts)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _new_key(key_type: KeyType, rsa_bits: int = 2048) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"unknown key type {key_type!r}")


def _name(common_name: str, org: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    now: dt.datetime,
    days: float,
    not_before: dt.datetime | None,
) -> x509.CertificateBuilder:
    start = not_before if not_before is not None else now - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    common_name: str = "eapkit test CA",
    *,
    now: dt.datetime,
    key_type: KeyType = "ec",
    days: float = 3650,
    org: str | None = "eapkit",
) -> Issued:
    """A self-signed root CA (basicConstraints CA:TRUE, keyCertSign, cRLSign)."""
    key = _new_key(key_type)
    name = _name(common_name, org)
    cert = (
        _builder(name, name, key.public_key(), now, days, None)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key, (cert,))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_usage(key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())


def make_intermediate(
    ca: Issued,
    common_name: str = "eapkit test intermediate CA",
    *,
    now: dt.datetime,
    key_type: KeyType = "ec",
    days: float = 1825,
) -> Issued:
    """A subordinate CA signed by ``ca``."""
    key = _new_key(key_type)
    cert = (
        _builder(
            _name(common_name, "eapkit"),
            ca.certificate.subject,
            key.public_key(),
            now,
            days,
            None,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(_aki(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key, (ca.certificate, *ca.chain[1:]) if ca.chain else ())


def _issue(
    ca: Issued,
    common_name: str,
    sans: Sequence[x509.GeneralName],
    ekus: Iterable[ObjectIdentifier],
    *,
    now: dt.datetime,
    key_type: KeyType,
    days: float,
    not_before: dt.datetime | None,
    crl_urls: Sequence[str] = (),
) -> Issued:
    key = _new_key(key_type)
    builder = (
        _builder(
            _name(common_name, None),
            ca.certificate.subject,
            key.public_key(),
            now,
            days,
            not_before,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(key), critical=True)
        .add_extension(_aki(ca), critical=False)
    )
    eku = list(ekus)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if crl_urls:
        builder = builder.add_extension(_distribution_points(crl_urls), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    chain = (ca.certificate, *(c for c in ca.chain if c != ca.certificate))
    return Issued(cert, key, chain)


def _distribution_points(urls: Sequence[str]) -> x509.CRLDistributionPoints:
    """RFC 5280 §4.2.1.13: one distribution point per URL, a fullName only (the CRL is
    the issuing CA's, for every reason); an http URL must serve one DER-encoded CRL."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            for url in urls
        ]
    )


def make_server(
    ca: Issued,
    dns_names: Sequence[str] = ("radius.example.org",),
    *,
    now: dt.datetime,
    key_type: KeyType = "ec",
    days: float = 825,
    not_before: dt.datetime | None = None,
    common_name: str | None = None,
) -> Issued:
    """A server certificate: CN and dNSName SANs, EKU serverAuth (RFC 5216 §5.3)."""
    cn = common_name or (dns_names[0] if dns_names else "server")
    sans = [x509.DNSName(n) for n in dns_names]
    return _issue(
        ca,
        cn,
        sans,
        [ExtendedKeyUsageOID.SERVER_AUTH],
        now=now,
        key_type=key_type,
        days=days,
        not_before=not_before,
    )


def make_client(
    ca: Issued,
    common_name: str = "alice",
    *,
    now: dt.datetime,
    email: str | None = None,
    upn: str | None = None,
    dns_names: Sequence[str] = (),
    key_type: KeyType = "ec",
    days: float = 365,
    not_before: dt.datetime | None = None,
    client_auth: bool = True,
    crl_urls: Sequence[str] = (),
) -> Issued:
    """A client certificate: CN, optional rfc822Name / UPN / dNSName SANs, EKU
    clientAuth (``client_auth=False`` leaves it out, to test a policy that wants it).
    ``crl_urls`` become its CRL distribution points (RFC 5280 §4.2.1.13), where a
    gateway such as strongSwan fetches the CRL itself (``[bridge] device_crl``)."""
    sans: list[x509.GeneralName] = []
    if email:
        sans.append(x509.RFC822Name(email))
    if upn:
        sans.append(x509.OtherName(UPN_OID, _der_utf8(upn)))
    sans.extend(x509.DNSName(n) for n in dns_names)
    ekus = (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    )
    return _issue(
        ca,
        common_name,
        sans,
        ekus,
        now=now,
        key_type=key_type,
        days=days,
        not_before=not_before,
        crl_urls=crl_urls,
    )


def _der_utf8(text: str) -> bytes:
    """DER of a UTF8String (the UPN otherName's value)."""
    raw = text.encode()
    if len(raw) < 0x80:
        return bytes([0x0C, len(raw)]) + raw
    size = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + raw


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL (RFC 5280 §5) from its PEM (``-----BEGIN X509 CRL-----``) or DER encoding;
    ValueError when it is neither."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def make_crl(
    ca: Issued,
    revoked_serials: Iterable[int] = (),
    *,
    now: dt.datetime,
    days: float = 7,
    last_update: dt.datetime | None = None,
    number: int = 1,
    revoked_at: Mapping[int, dt.datetime] | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from ``ca`` listing ``revoked_serials`` (RFC 5280 §5).  ``last_update`` and
    a negative ``days`` make a CRL that is already stale.  ``number`` is the cRLNumber
    (§5.2.3, must grow with each CRL); ``revoked_at`` the revocation dates by serial
    (§5.1.2.6; default ``last_update``)."""
    this_update = last_update if last_update is not None else now - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(_aki(ca), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    dates = revoked_at or {}
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dates.get(serial, this_update))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class PkiFiles:
    """Where :func:`write_pki` put the PEM files."""

    directory: Path
    client_name: str

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / f"{self.client_name}.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / f"{self.client_name}.key"


def write_pki(
    directory: Path,
    *,
    now: dt.datetime,
    ca_name: str = "eapkit test CA",
    server_names: Sequence[str] = ("radius.example.org",),
    client_name: str = "alice",
    client_email: str | None = None,
) -> PkiFiles:
    """A CA, a server certificate and a client certificate, written as PEM files
    (``ca.pem``/``ca.key``, ``server.pem``/``server.key``, ``<client>.pem``/``.key``;
    keys mode 0600, the directory 0700 when made here).  The server file holds the chain a
    TLS endpoint sends."""
    private_dir(directory)
    files = PkiFiles(directory, client_name)
    ca = make_ca(ca_name, now=now)
    server = make_server(ca, server_names, now=now)
    client = make_client(ca, client_name, email=client_email, now=now)
    for path, data in (
        (files.ca, ca.cert_pem),
        (files.ca_key, ca.key_pem),
        (files.server_cert, server.chain_pem),
        (files.server_key, server.key_pem),
        (files.client_cert, client.chain_pem),
        (files.client_key, client.key_pem),
    ):
        if path.suffix == ".key":
            write_private(path, data)  # never readable by others, not even for a moment
        else:
            path.write_bytes(data)
    return files
