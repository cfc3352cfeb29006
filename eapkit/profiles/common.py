"""What every client profile for the IKEv2 gateway shares: the request, the device
credential, the cipher proposals, and writing the result without leaving half a file.

A profile is a pure function of a :class:`ProfileRequest`; the four platform modules
(``apple``, ``windows``, ``android``, ``linux``) each turn one into bytes (or, for
Linux, a small tree of files laid out like ``/etc/swanctl``).  Everything that can be
wrong with the input is found here, before any byte is written:

- the method must be one eapkit offers for that platform (``cert-eap`` needs RFC 4739
  multiple authentication, which Windows' IKEv2 client lacks), and the server must
  offer its EAP method (``teap`` for TEAP, RFC 9930, which is not among the defaults);
- ``eap-tls`` and ``cert-eap`` need the user's device certificate and key, the key must
  belong to the certificate, and the certificate must be valid now; for ``eap-tls`` it
  must also name the user by the server's ``[tls] identity`` rule, or eapkit serve would
  refuse every login it makes (RFC 5216 §5.2, :class:`eapkit.authz.CertificateIdentity`).

The proposals are the ones the lab's strongSwan accepts (its defaults include the AEAD
proposal): IKE AES-256-GCM with PRF SHA2-256 and ECDH group 19 or 20 (RFC 5903), ESP
AES-256-GCM with PFS in the same groups (RFC 7296 §3.3).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from eapkit.authz import CertificateIdentity
from eapkit.errors import ConfigError
from eapkit.methods.base import CertificateNames
from eapkit.private_files import private_dir
from eapkit.tlsio.certinfo import PeerCertificate

__all__ = [
    "CERTIFICATE_METHODS",
    "ESP_PROPOSAL",
    "IKE_PROPOSAL",
    "METHODS",
    "DeviceCredential",
    "ProfileError",
    "ProfileRequest",
    "load_ca",
    "load_device",
    "write_atomically",
]

# The client's side of IKEv2 authentication, in the words of the clients' own settings.
METHODS = ("eap-mschapv2", "eap-tls", "cert-eap", "peap", "teap")
CERTIFICATE_METHODS = frozenset({"eap-tls", "cert-eap"})

# strongSwan proposal syntax (swanctl.conf, the Android app's ike-proposal/esp-proposal).
IKE_PROPOSAL = "aes256gcm16-prfsha256-ecp256-ecp384"
ESP_PROPOSAL = "aes256gcm16-ecp256-ecp384"
IKE_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})  # RFC 4754 ECDSA in IKEv2
DH_GROUP = 19  # ecp256 (RFC 5903 §3.1), what one-group clients (Apple) propose


class ProfileError(ConfigError):
    """A profile cannot be made from this input; nothing has been written."""


@dataclass(frozen=True)
class DeviceCredential:
    """The user's device certificate (with the chain given beside it) and its key."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @property
    def identity(self) -> str:
        """The IKE identity the certificate proves (RFC 7296 §3.5): its first
        rfc822Name or dNSName, else the subject's common name."""
        info = PeerCertificate.from_x509(self.certificate)
        for name in info.emails + info.dns_names + info.common_names:
            return name
        return self.certificate.subject.rfc4514_string()

    @property
    def key_kind(self) -> str:
        """``RSA`` or ``ECDSA256``/``ECDSA384``/``ECDSA521`` (Apple's CertificateType)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return "RSA"
        return {256: "ECDSA256", 384: "ECDSA384", 521: "ECDSA521"}.get(self.key.curve.key_size, "")

    def pkcs12(self, password: str, name: str) -> bytes:
        """A PKCS#12 (RFC 7292) holding the key, certificate and chain, encrypted with
        ``password`` under AES-256-CBC and PBKDF2 (what current iOS, macOS, Windows and
        Android import)."""
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(100_000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password.encode())
        )
        return pkcs12.serialize_key_and_certificates(
            name.encode(), self.key, self.certificate, list(self.chain) or None, encryption
        )


@dataclass(frozen=True)
class ProfileRequest:
    """Everything a profile says.  ``gateway`` is the address the client dials,
    ``gateway_id`` the identity the gateway's certificate must prove (its IDr, RFC 7296
    §3.5), ``eap_server_names`` the names eapkit's own certificate carries (the TLS
    methods check them), ``ca`` the CA that issued both."""

    user: str
    gateway: str
    gateway_id: str
    method: str
    ca: x509.Certificate
    eap_server_names: tuple[str, ...] = ()
    device: DeviceCredential | None = None
    p12_password: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for what, value in (
            ("user", self.user),
            ("gateway", self.gateway),
            ("gateway identity", self.gateway_id),
            ("name", self.name or "-"),
            *(("EAP server name", n) for n in self.eap_server_names),
        ):
            if not value or not value.isprintable() or len(value) > 253:
                raise ProfileError(f"the {what} must be 1 to 253 printable characters")
        if self.method not in METHODS:
            raise ProfileError(f"no method {self.method}: one of {', '.join(METHODS)}")

    @property
    def display_name(self) -> str:
        return self.name or f"VPN {self.gateway} ({self.user})"

    @property
    def ca_common_name(self) -> str:
        names = self.ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else self.ca.subject.rfc4514_string()

    def uuid(self, part: str) -> str:
        """A stable UUID per user, gateway and part: a profile made again replaces the
        one a device already has instead of standing beside it."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eapkit:{self.gateway}:{self.user}:{part}"))

    def need_device(self) -> DeviceCredential:
        if self.device is None:
            raise ProfileError(f"{self.method} needs {self.user}'s device certificate")
        return self.device

    def p12(self) -> bytes:
        if self.p12_password is None:
            raise ProfileError("a device certificate in a profile needs a PKCS#12 password")
        return self.need_device().pkcs12(self.p12_password, self.user)


def load_ca(path: Path) -> x509.Certificate:
    """The first certificate of a PEM or DER file, which must be a CA (RFC 5280
    §4.2.1.9)."""
    certs = _certificates(path)
    ca = certs[0]
    try:
        basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise ProfileError(f"{path}: not a CA certificate (no basicConstraints cA)")
    return ca


def load_device(
    user: str,
    method: str,
    cert: Path | None,
    key: Path | None,
    *,
    identity: CertificateIdentity,
    now: dt.datetime,
    key_password: bytes | None = None,
) -> DeviceCredential | None:
    """The device credential ``method`` needs, checked; None when it needs none."""
    if method not in CERTIFICATE_METHODS:
        return None
    if cert is None or key is None:
        raise ProfileError(
            f"{user} has no device certificate for {method}: give --cert and --key "
            "(the user's certificate and private key)"
        )
    certs = _certificates(cert)
    leaf = certs[0]
    try:
        loaded = serialization.load_pem_private_key(key.read_bytes(), key_password)
    except (ValueError, TypeError) as exc:
        raise ProfileError(f"{key}: not a readable PEM private key ({exc})") from None
    if isinstance(loaded, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) or not isinstance(
        loaded, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
    ):
        raise ProfileError(f"{key}: IKEv2 clients take RSA or ECDSA keys only")
    if isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.curve.name not in IKE_CURVES:
        raise ProfileError(
            f"{key}: ECDSA on {loaded.curve.name}; IKEv2 clients take P-256, P-384 or P-521 "
            "(RFC 4754)"
        )
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if loaded.public_key().public_bytes(der, public) != leaf.public_key().public_bytes(der, public):
        raise ProfileError(f"{key} is not the key of {cert}")
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ProfileError(
            f"{cert} is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    if method == "eap-tls":
        info = PeerCertificate.from_x509(leaf)
        names = CertificateNames(info.common_names, info.emails, info.upns, info.dns_names)
        mapped = identity.user(names)
        if mapped != user:
            raise ProfileError(
                f"{cert} names {mapped or 'no user'}, not {user}: eapkit serve maps EAP-TLS "
                f"certificates to users by [tls] identity ({', '.join(identity.sources)})"
            )
    return DeviceCredential(leaf, tuple(certs[1:]), loaded)


def _certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ProfileError(f"{path}: no X.509 certificate in it") from None


def write_atomically(target: Path, files: Mapping[str, bytes], *, private: bool) -> None:
    """Write one file (``files`` = ``{"": data}``) or a directory of files, all or
    nothing: into a temporary sibling first, moved into place at the end (a file by a
    hard link, which fails rather than replace anything that appeared at ``target``;
    a symlink at ``target``, even a dangling one, is refused).  Files that carry key
    material are 0600 (their directories 0700)."""
    if os.path.lexists(target):  # a symlink too, even one pointing nowhere
        raise ProfileError(f"{target} exists: remove it or choose another --out")
    parent = target.parent if str(target.parent) else Path()
    if not parent.is_dir():
        raise ProfileError(f"{parent}: no such directory")
    mode = 0o600 if private else 0o644
    if set(files) == {""}:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(files[""])
            try:  # a hard link never replaces what appeared at target meanwhile
                os.link(tmp, target)
            except FileExistsError:
                raise ProfileError(f"{target} exists: remove it or choose another --out") from None
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    tmp_dir = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}."))
    try:
        for relative, data in files.items():
            path = tmp_dir / relative
            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        if not private:
            tmp_dir.chmod(0o755)
        os.rename(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
