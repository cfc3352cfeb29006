"""Card contents for the virtual cards of the tests: accounts, keys and certificates."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# RFC 4226 appendix D / RFC 6238 appendix B secrets ("12345678901234567890" and longer)
RFC_SECRET_SHA1 = b"12345678901234567890"
RFC_SECRET_SHA256 = b"12345678901234567890123456789012"
TOTP_B32 = base64.b32encode(RFC_SECRET_SHA1).decode()


def oath_state(password: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "credentials": [
            {"name": "Example:alice@example.org", "type": "totp", "secret": TOTP_B32},
            {
                "name": "sha256-8",
                "type": "totp",
                "algorithm": "sha256",
                "digits": 8,
                "secret": base64.b32encode(RFC_SECRET_SHA256).decode(),
            },
            {"name": "counter", "type": "hotp", "secret": TOTP_B32},
        ]
    }
    if password is not None:
        state["salt"] = "0102030405060708"
        state["password"] = password
    return state


def otp_state(secret: bytes, serial: int = 4711) -> dict[str, Any]:
    return {"serial": serial, "slots": {"2": {"mode": "hmac", "secret": secret.hex()}}}


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


_PIV_KEYS: dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = {}


def piv_keys() -> dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """One key per slot (9A P-256, 9C RSA-2048, 9D P-384, 9E P-256), made once per run."""
    if not _PIV_KEYS:
        _PIV_KEYS.update(
            {
                "9a": ec.generate_private_key(ec.SECP256R1()),
                "9c": rsa.generate_private_key(65537, 2048),
                "9d": ec.generate_private_key(ec.SECP384R1()),
                "9e": ec.generate_private_key(ec.SECP256R1()),
            }
        )
    return _PIV_KEYS


def self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def piv_state(
    pin: str = "123456", slots: tuple[str, ...] = ("9a", "9c", "9d", "9e")
) -> dict[str, Any]:
    keys = piv_keys()
    state: dict[str, Any] = {"pin": pin, "keys": {}, "certificates": {}}
    for slot in slots:
        cert = self_signed(keys[slot], f"eapkit test slot {slot}")
        state["keys"][slot] = _pem(keys[slot])
        state["certificates"][slot] = base64.b64encode(
            cert.public_bytes(serialization.Encoding.DER)
        ).decode()
    return state
