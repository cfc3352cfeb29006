"""Credential public keys: COSE_Key (RFC 9052 §7, RFC 9053, RFC 8230; WebAuthn L3 §5.8.5)
parsed once into ``cryptography`` key objects, so a signature check is one OpenSSL call."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from fido2.cose import CoseKey, UnsupportedKey

from eapkit.errors import DecodeError
from eapkit.verify.verdict import MALFORMED, UNSUPPORTED_ALGORITHM
from eapkit.verify.webauthn.cbor import decode_cose_key_map

__all__ = [
    "DEFAULT_ALGORITHMS",
    "CredentialPublicKey",
    "UnsupportedAlgorithm",
    "cached_public_key",
    "key_reason",
    "parse_credential_public_key",
]

_MIN_RSA_BITS: Final = 2048

# COSE algorithm identifiers (IANA "COSE Algorithms")
ES256: Final = -7
ESP256: Final = -9
ES384: Final = -35
ESP384: Final = -51
ES512: Final = -36
ESP512: Final = -52
ES256K: Final = -47
EDDSA: Final = -8
ED25519: Final = -19
ED448: Final = -53
RS256: Final = -257
PS256: Final = -37
RS1: Final = -65535

# What registration accepts by default, in the order offered to the browser
DEFAULT_ALGORITHMS: Final[tuple[int, ...]] = (ES256, EDDSA, ES384, ES512, RS256, PS256, ED448)


_EC: Final[dict[int, tuple[int, ec.EllipticCurve, hashes.HashAlgorithm, int]]] = {
    ES256: (1, ec.SECP256R1(), hashes.SHA256(), 32),
    ESP256: (1, ec.SECP256R1(), hashes.SHA256(), 32),
    ES384: (2, ec.SECP384R1(), hashes.SHA384(), 48),
    ESP384: (2, ec.SECP384R1(), hashes.SHA384(), 48),
    ES512: (3, ec.SECP521R1(), hashes.SHA512(), 66),
    ESP512: (3, ec.SECP521R1(), hashes.SHA512(), 66),
    ES256K: (8, ec.SECP256K1(), hashes.SHA256(), 32),
}
_OKP_CURVES: Final = {6: "Ed25519", 7: "Ed448"}
_FULLY_SPECIFIED_EDDSA: Final = {ED25519: 6, ED448: 7}


class UnsupportedAlgorithm(DecodeError):
    """A well-formed COSE key of an algorithm (or strength) this verifier refuses."""


class CredentialPublicKey:
    """A parsed credential public key: ``verify(signature, data) -> bool``.

    Built once per COSE key (see :func:`cached_public_key`); holds the ``cryptography``
    key object and the padding/hash objects, so a verification is one OpenSSL call.
    """

    __slots__ = ("algorithm", "cose", "verify")

    def __init__(self, algorithm: int, cose: bytes, verify: Callable[[bytes, bytes], bool]):
        self.algorithm = algorithm
        self.cose = cose
        self.verify = verify


def _checked(fn: Callable[[bytes, bytes], object]) -> Callable[[bytes, bytes], bool]:
    def verify(signature: bytes, data: bytes) -> bool:
        try:
            fn(signature, data)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


def _cose_bytes(m: Mapping[Any, Any], label: int, what: str) -> bytes:
    v = m.get(label)
    if not isinstance(v, bytes):
        raise DecodeError(f"COSE key {what} (label {label}) missing or not bytes")
    return v


def parse_credential_public_key(cose: bytes) -> CredentialPublicKey:
    """Parse a COSE_Key (CBOR) into a verifier; DecodeError if malformed or unsupported.

    Every signature algorithm python-fido2 knows is supported except RS1 (SHA-1):
    ECDSA ES256/384/512 and ES256K and their fully-specified twins, EdDSA over Ed25519 and
    Ed448 (``-8`` with ``crv`` 6 or 7, and ``-19``/``-53``), RSASSA-PKCS1-v1_5 and PSS
    with SHA-256 (moduli of 2048 bits or more), and any further algorithm python-fido2
    verifies (ML-DSA with a recent ``cryptography``) through its own key class.
    """
    cose = bytes(cose)
    m = decode_cose_key_map(cose)
    alg, kty = m.get(3), m.get(1)
    if not isinstance(alg, int) or isinstance(alg, bool):
        raise DecodeError("COSE key has no integer alg", expected="alg (label 3)")
    if alg in _EC:
        crv, curve, hash_alg, size = _EC[alg]
        if kty != 2 or m.get(-1) != crv:
            raise DecodeError(f"COSE alg {alg} needs kty 2 (EC2) and crv {crv}")
        x, y = _cose_bytes(m, -2, "x"), _cose_bytes(m, -3, "y")
        if len(x) != size or len(y) != size:
            raise DecodeError(f"EC coordinates must be {size} bytes")
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        except ValueError:
            raise DecodeError("EC point is not on the curve") from None
        ecdsa = ec.ECDSA(hash_alg)
        return CredentialPublicKey(
            alg, cose, _checked(lambda sig, data: key.verify(sig, data, ecdsa))
        )
    if alg == EDDSA or alg in _FULLY_SPECIFIED_EDDSA:
        okp_crv = m.get(-1)
        if (
            kty != 1
            or okp_crv not in _OKP_CURVES
            or _FULLY_SPECIFIED_EDDSA.get(alg, okp_crv) != okp_crv
        ):
            raise DecodeError(f"COSE alg {alg} needs kty 1 (OKP) and an Ed25519/Ed448 crv")
        raw = _cose_bytes(m, -2, "x")
        try:
            okp: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey = (
                ed25519.Ed25519PublicKey.from_public_bytes(raw)
                if okp_crv == 6
                else ed448.Ed448PublicKey.from_public_bytes(raw)
            )
        except ValueError:
            raise DecodeError(f"bad {_OKP_CURVES[okp_crv]} public key") from None
        return CredentialPublicKey(alg, cose, _checked(okp.verify))
    if alg in (RS256, PS256):
        if kty != 3:
            raise DecodeError(f"COSE alg {alg} needs kty 3 (RSA)")
        n = int.from_bytes(_cose_bytes(m, -1, "n"), "big")
        e = int.from_bytes(_cose_bytes(m, -2, "e"), "big")
        if n.bit_length() < _MIN_RSA_BITS:
            raise UnsupportedAlgorithm(f"RSA modulus shorter than {_MIN_RSA_BITS} bits")
        try:
            rsa_key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise DecodeError("bad RSA public key") from None
        sha256 = hashes.SHA256()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == RS256
            else padding.PSS(mgf=padding.MGF1(sha256), salt_length=padding.PSS.AUTO)
        )
        return CredentialPublicKey(
            alg, cose, _checked(lambda sig, data: rsa_key.verify(sig, data, pad, sha256))
        )
    if alg == RS1:
        raise UnsupportedAlgorithm("RS1 (RSA with SHA-1) is refused", expected="a SHA-2 algorithm")
    # Anything else python-fido2 can verify (ML-DSA, ...), through its own key class.
    cls = CoseKey.for_alg(alg)
    if cls is UnsupportedKey:
        raise UnsupportedAlgorithm(f"unsupported COSE algorithm {alg}", expected="a supported alg")
    fido_key = cls(m)

    def other(sig: bytes, data: bytes) -> bool:
        try:
            fido_key.verify(data, sig)
        except Exception:  # python-fido2 key classes raise what cryptography raises
            return False
        return True

    return CredentialPublicKey(alg, cose, other)


def key_reason(exc: DecodeError) -> str:
    return UNSUPPORTED_ALGORITHM if isinstance(exc, UnsupportedAlgorithm) else MALFORMED


@functools.lru_cache(maxsize=4096)
def cached_public_key(cose: bytes) -> CredentialPublicKey:
    """:func:`parse_credential_public_key`, memoised per COSE key (they are immutable)."""
    return parse_credential_public_key(cose)
