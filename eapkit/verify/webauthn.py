"""FIDO2 / WebAuthn relying-party verification (W3C Web Authentication Level 3, §7).

The story of one credential
---------------------------
*Registration* (§7.1).  :meth:`WebAuthnVerifier.begin_registration` issues a random
challenge, keeps it in the shared store as a single-use token with an expiry, and returns
the ``PublicKeyCredentialCreationOptionsJSON`` a web page hands to
``navigator.credentials.create()``.  The browser answers with the JSON of the new
``PublicKeyCredential``; :meth:`WebAuthnVerifier.finish_registration` consumes the
challenge (once, atomically, on any node), checks the client data (type, origin), the
authenticator data (RP ID hash, UP, UV, BE/BS) and the attestation statement under the
configured policy, then stores the credential: its COSE public key, AAGUID, transports,
backup flags and signature counter.

*Authentication* (§7.2).  :meth:`WebAuthnVerifier.begin_authentication` issues another
single-use challenge, for a named user (``allowCredentials`` lists their credentials) or
for nobody (a discoverable credential, "usernameless": the authenticator says whose it is
through ``userHandle``).  :meth:`WebAuthnVerifier.finish_authentication` takes the JSON the
browser sends, consumes the challenge, finds the credential, checks origin, RP ID hash,
UP (always) and UV (per policy), verifies the signature over
``authenticatorData || SHA-256(clientDataJSON)`` and finally the signature counter: a
counter that does not increase (when either side is non-zero) is refused as
``counter_regressed`` and flagged as a possible clone (§6.1.1).

The stateless core, :func:`verify_assertion`, does the checks of §7.2 steps 11-21 for one
assertion whose expected challenge and credential public key the caller already holds; the
stateful verifier is built on the same helpers.

Every outcome is a verdict with a reason code, as for the OTP verifiers (DESIGN.md,
"Errors"): bytes from the network never raise.  Parsed public keys are cached (per COSE
key, and per stored credential record), so the hot path, an assertion from browser JSON,
costs little more than its one signature verification.

Data classes and attestation statement checks come from python-fido2 (the ``fido`` extra);
the signature check of an assertion uses ``cryptography`` key objects parsed once.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from fido2 import cbor
from fido2.attestation.base import (
    Attestation,
    AttestationType,
    InvalidData,
    UnsupportedAttestation,
    UnsupportedType,
    verify_x509_chain,
)
from fido2.attestation.base import InvalidSignature as AttestationBadSignature
from fido2.cose import CoseKey, UnsupportedKey
from fido2.webauthn import AttestationObject, AuthenticatorData

from eapkit.credentials import Verdict
from eapkit.errors import ConfigError, DecodeError, need
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable

__all__ = [
    "BAD_ATTESTATION",
    "BAD_ORIGIN",
    "BAD_RP_ID",
    "BAD_SIGNATURE",
    "CHALLENGE_EXPIRED",
    "CHALLENGE_UNKNOWN",
    "COUNTER_REGRESSED",
    "CREDENTIAL_EXISTS",
    "DEFAULT_ALGORITHMS",
    "MALFORMED",
    "OK",
    "REPLAYED",
    "STORE_UNAVAILABLE",
    "UNKNOWN_CREDENTIAL",
    "UNSUPPORTED_ALGORITHM",
    "UNSUPPORTED_ATTESTATION",
    "UNTRUSTED_ATTESTATION",
    "USER_NOT_PRESENT",
    "UV_REQUIRED",
    "AttestedCredential",
    "ClientData",
    "CredentialPublicKey",
    "RegistrationVerdict",
    "StoredCredential",
    "UnsupportedAlgorithm",
    "WebAuthnVerdict",
    "WebAuthnVerifier",
    "b64url_decode",
    "b64url_encode",
    "cached_public_key",
    "decode_cose_key_map",
    "parse_client_data",
    "parse_credential_public_key",
    "verify_assertion",
    "verify_registration",
]

# -- reason codes -------------------------------------------------------------------------
OK: Final = "ok"
BAD_SIGNATURE: Final = "bad_signature"
BAD_ORIGIN: Final = "bad_origin"  # origin not allowed, or cross-origin use not allowed
BAD_RP_ID: Final = "bad_rp_id"  # rpIdHash is not SHA-256 of our RP ID
CHALLENGE_UNKNOWN: Final = "challenge_unknown"  # not a challenge we issued (or hold)
CHALLENGE_EXPIRED: Final = "challenge_expired"
REPLAYED: Final = "replayed"  # the challenge was already used
USER_NOT_PRESENT: Final = "user_not_present"
UV_REQUIRED: Final = "uv_required"
UNKNOWN_CREDENTIAL: Final = "unknown_credential"
COUNTER_REGRESSED: Final = "counter_regressed"  # possible cloned authenticator
MALFORMED: Final = "malformed"
STORE_UNAVAILABLE: Final = "store_unavailable"
UNSUPPORTED_ALGORITHM: Final = "unsupported_algorithm"
BAD_ATTESTATION: Final = "bad_attestation"  # the statement does not verify
UNTRUSTED_ATTESTATION: Final = "untrusted_attestation"  # verifies, but policy refuses it
UNSUPPORTED_ATTESTATION: Final = "unsupported_attestation"  # a format we cannot verify
CREDENTIAL_EXISTS: Final = "credential_exists"

UserVerification = Literal["required", "preferred", "discouraged"]
AttestationPolicy = Literal["none", "self", "trusted"]
ResidentKey = Literal["required", "preferred", "discouraged"]

# authenticator data flags (§6.1)
_UP: Final = 0x01
_UV: Final = 0x04
_BE: Final = 0x08
_BS: Final = 0x10
_AT: Final = 0x40
_ED: Final = 0x80

_GET: Final = "webauthn.get"
_CREATE: Final = "webauthn.create"
_MAX_CREDENTIAL_ID: Final = 1023  # §5.8.3 / §7.1 step 25
_MAX_CHALLENGE: Final = 64  # we issue 32 bytes; anything longer was never ours
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


# -- verdicts -----------------------------------------------------------------------------
class WebAuthnVerdict(NamedTuple):
    """The outcome of one assertion check.

    ``sign_count`` is the authenticator's signature counter from a well-formed
    authenticator data (also on most refusals, for logging).  ``possible_clone`` is set
    with ``counter_regressed``.  ``detail`` explains a refusal and holds no secret.
    """

    ok: bool
    reason: str
    sign_count: int | None = None
    user: str | None = None
    credential_id: bytes | None = None
    user_verified: bool = False
    backup_eligible: bool = False
    backup_state: bool = False
    possible_clone: bool = False
    detail: str = ""

    def to_verdict(self) -> Verdict:
        """The same answer as the generic :class:`~eapkit.credentials.Verdict`."""
        if self.ok:
            return Verdict.accept(self.user)
        return Verdict(False, self.reason, self.user, self.detail)


class AttestedCredential(NamedTuple):
    """A credential as a verified registration response describes it (§7.1)."""

    credential_id: bytes
    public_key: bytes  # COSE_Key, CBOR, as the authenticator sent it
    algorithm: int
    aaguid: bytes
    sign_count: int
    user_verified: bool
    backup_eligible: bool
    backup_state: bool
    attestation_format: str
    attestation_type: str  # none / self / basic / attca / anonca / unverified


class RegistrationVerdict(NamedTuple):
    """The outcome of a registration ceremony; ``credential`` is set when ``ok``."""

    ok: bool
    reason: str
    user: str | None = None
    credential: AttestedCredential | None = None
    stored: StoredCredential | None = None
    detail: str = ""


def _refuse(reason: str, detail: str = "", **fields: Any) -> WebAuthnVerdict:
    return WebAuthnVerdict(False, reason, detail=detail, **fields)


# -- base64url (RFC 4648 §5, no padding: what PublicKeyCredential.toJSON() emits) --------
_B64_TR: Final = bytes.maketrans(b"-_+/", b"+/!!")
_B64_PAD: Final = (b"", b"===", b"==", b"=")
_a2b_base64: Final = binascii.a2b_base64


def b64url_decode(text: object) -> bytes:
    """Strict base64url: the URL-safe alphabet, padding optional; else DecodeError."""
    if not isinstance(text, str):
        raise DecodeError("base64url value is not a string", expected="string")
    try:
        # "+" and "/" become "!", which strict_mode refuses like any non-alphabet byte
        raw = text.encode("ascii").translate(_B64_TR)
        return _a2b_base64(raw + _B64_PAD[len(raw) & 3], strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise DecodeError("bad base64url value", expected="base64url") from None


def b64url_encode(data: bytes) -> str:
    # bytes.translate with a 256-byte table: str.translate with a dict is ~10x slower
    return binascii.b2a_base64(data, newline=False).translate(_B64_ENC).rstrip(b"=").decode()


_B64_ENC: Final = bytes.maketrans(b"+/", b"-_")


# -- credential public keys (COSE, RFC 9052/9053, RFC 8230, WebAuthn §5.8.5) -------------
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


def _cbor_head(data: bytes, i: int) -> tuple[int, int, int]:
    """(major type, argument, next offset) of the CBOR item head at ``i`` (RFC 8949 §3)."""
    need(data, i, 1, "CBOR item")
    ib = data[i]
    major, info = ib >> 5, ib & 0x1F
    if info < 24:
        return major, info, i + 1
    if info > 27:  # indefinite lengths and reserved values: never in a COSE key
        raise DecodeError("indefinite or reserved CBOR length", offset=i)
    n = 1 << (info - 24)
    need(data, i + 1, n, "CBOR argument")
    return major, int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n


def decode_cose_key_map(data: bytes) -> dict[int, int | bytes | str]:
    """A COSE_Key as a map of integer labels to integers, byte or text strings.

    Strict where python-fido2's decoder is lenient (it accepts a byte string shorter than
    its stated length): definite lengths, no trailing bytes, no repeated label.  WebAuthn
    §5.8.5 allows no parameters other than these kinds in a credential public key.
    """
    major, count, i = _cbor_head(data, 0)
    if major != 5:
        raise DecodeError("COSE key is not a CBOR map", offset=0, expected="map")
    out: dict[int, int | bytes | str] = {}
    for _ in range(count):
        values: list[int | bytes | str] = []
        for _part in range(2):
            at = i
            major, arg, i = _cbor_head(data, i)
            if major == 0:
                values.append(arg)
            elif major == 1:
                values.append(-1 - arg)
            elif major in (2, 3):
                need(data, i, arg, "CBOR string")
                raw = data[i : i + arg]
                i += arg
                if major == 2:
                    values.append(raw)
                else:
                    try:
                        values.append(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise DecodeError("bad UTF-8 in CBOR text", offset=at) from None
            else:
                raise DecodeError("unexpected CBOR item in a COSE key", offset=at)
        label, value = values
        if not isinstance(label, int) or label in out:
            raise DecodeError("COSE key label not an integer or repeated", offset=i)
        out[label] = value
    if i != len(data):
        raise DecodeError("trailing bytes after the COSE key", offset=i)
    return out


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


def _key_reason(exc: DecodeError) -> str:
    return UNSUPPORTED_ALGORITHM if isinstance(exc, UnsupportedAlgorithm) else MALFORMED


@functools.lru_cache(maxsize=4096)
def cached_public_key(cose: bytes) -> CredentialPublicKey:
    """:func:`parse_credential_public_key`, memoised per COSE key (they are immutable)."""
    return parse_credential_public_key(cose)


# -- client data (§5.8.1) and authenticator data (§6.1) ----------------------------------
class ClientData(NamedTuple):
    type: str
    challenge: bytes
    origin: str
    cross_origin: bool
    top_origin: str | None
    challenge_text: str  # as sent (unpadded base64url): the challenge token's store key


# The serialisation browsers emit (WebAuthn L3 §5.8.1.1: type, challenge, origin,
# crossOrigin, in that order, no whitespace), with nothing a JSON parser would have to
# unescape: printable ASCII strings without quote or backslash, a base64url challenge.
# A document that matches parses to exactly these values; anything else (other keys,
# topOrigin, escapes, whitespace, non-ASCII) goes through json.loads.
_JSON_TEXT: Final = r'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
_CLIENT_DATA_FAST: Final = re.compile(
    r'\{"type":'
    + _JSON_TEXT
    + r',"challenge":"([A-Za-z0-9_-]*)","origin":'
    + _JSON_TEXT
    + r'(?:,"crossOrigin":(true|false))?\}'
).fullmatch


def parse_client_data(raw: bytes) -> ClientData:
    """The fields of ``clientDataJSON`` that §7.1/§7.2 check; DecodeError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("clientDataJSON is not UTF-8 JSON", expected="JSON object") from None
    m = _CLIENT_DATA_FAST(text)
    if m is None:
        return _parse_client_data_json(text)
    typ, challenge, origin, cross = m.groups()
    return ClientData(typ, b64url_decode(challenge), origin, cross == "true", None, challenge)


def _parse_client_data_json(text: str) -> ClientData:
    """parse_client_data through a full JSON parser: any valid clientDataJSON."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise DecodeError("clientDataJSON is not UTF-8 JSON", expected="JSON object") from None
    if not isinstance(doc, dict):
        raise DecodeError("clientDataJSON is not a JSON object", expected="JSON object")
    typ, challenge, origin = doc.get("type"), doc.get("challenge"), doc.get("origin")
    cross, top = doc.get("crossOrigin", False), doc.get("topOrigin")
    if not isinstance(typ, str) or not isinstance(origin, str):
        raise DecodeError("clientDataJSON type/origin missing", expected="strings")
    if not isinstance(cross, bool) or not (top is None or isinstance(top, str)):
        raise DecodeError("clientDataJSON crossOrigin/topOrigin malformed")
    raw_challenge = b64url_decode(challenge)
    return ClientData(typ, raw_challenge, origin, cross, top, str(challenge).rstrip("="))


def _validate_authenticator_data(ad: bytes) -> tuple[int, int]:
    """(flags, signCount) of well-formed authenticator data; DecodeError otherwise."""
    if len(ad) < 37:
        raise DecodeError("authenticator data too short", offset=len(ad), expected="37 bytes")
    flags = ad[32]
    if len(ad) != 37 or flags & (_AT | _ED):
        # attested credential data or extensions follow: let python-fido2 check the rest
        try:
            AuthenticatorData(bytes(ad))
        except Exception as exc:  # third-party parser of untrusted bytes
            raise DecodeError("bad attested credential data or extensions", offset=37) from exc
    if flags & _BS and not flags & _BE:
        raise DecodeError("BS flag set without BE (§6.1)", offset=32)
    return flags, int.from_bytes(ad[33:37], "big")


def _check_client_data(
    cd: ClientData,
    origins: Collection[str],
    allow_cross_origin: bool,
    top_origins: Collection[str] | None,
) -> WebAuthnVerdict | None:
    if cd.origin not in origins:
        return _refuse(BAD_ORIGIN, "origin not allowed")
    if cd.cross_origin and not allow_cross_origin:
        return _refuse(BAD_ORIGIN, "cross-origin use not allowed")
    if cd.top_origin is not None:
        if not allow_cross_origin:
            return _refuse(BAD_ORIGIN, "topOrigin present but cross-origin use not allowed")
        if top_origins is not None and cd.top_origin not in top_origins:
            return _refuse(BAD_ORIGIN, "topOrigin not allowed")
    return None


def _check_flags(flags: int, count: int, uv_required: bool) -> WebAuthnVerdict | None:
    if not flags & _UP:
        return _refuse(USER_NOT_PRESENT, "UP flag not set", sign_count=count)
    if uv_required and not flags & _UV:
        return _refuse(UV_REQUIRED, "UV flag not set", sign_count=count)
    return None


def _rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode("utf-8")).digest()


_rp_id_hash_cached = functools.lru_cache(maxsize=64)(_rp_id_hash)


# -- the stateless core -------------------------------------------------------------------
def verify_assertion(
    *,
    credential_public_key: bytes,
    authenticator_data: bytes,
    client_data_json: bytes,
    signature: bytes,
    rp_id: str,
    origin: str,
    challenge: bytes,
    user_verification_required: bool = False,
    allow_cross_origin: bool = False,
    top_origins: Collection[str] | None = None,
) -> WebAuthnVerdict:
    """Verify one assertion (WebAuthn L3 §7.2 steps 11-21) against a known credential.

    The caller holds the expected ``challenge`` (it issued it, once) and the credential's
    COSE public key.  Checks, in the specification's order: client data type
    ``webauthn.get``, challenge, origin, cross-origin use (``topOrigin`` must be in
    ``top_origins`` when that is given), RP ID hash, UP, UV when required, BE/BS
    consistency, then the signature over ``authenticatorData || SHA-256(clientDataJSON)``.
    The signature counter is returned as ``sign_count`` for the caller to compare with the
    stored one (§6.1.1); this function keeps no state.
    """
    try:
        key = cached_public_key(bytes(credential_public_key))
    except DecodeError as exc:
        return _refuse(_key_reason(exc), str(exc))
    try:
        cd = parse_client_data(client_data_json)
    except DecodeError as exc:
        return _refuse(MALFORMED, str(exc))
    if cd.type != _GET:
        return _refuse(MALFORMED, "clientDataJSON type is not webauthn.get")
    if not hmac.compare_digest(cd.challenge, challenge):
        return _refuse(CHALLENGE_UNKNOWN, "challenge does not match the one issued")
    try:
        flags, count = _validate_authenticator_data(authenticator_data)
    except DecodeError as exc:
        return _refuse(MALFORMED, str(exc))
    refused = _check_assertion(
        key,
        cd,
        authenticator_data,
        flags,
        count,
        client_data_json,
        signature,
        _rp_id_hash_cached(rp_id),
        (origin,),
        user_verification_required,
        allow_cross_origin,
        top_origins,
    )
    return refused or _accept(flags, count)


def _accept(
    flags: int, count: int, user: str | None = None, credential_id: bytes | None = None
) -> WebAuthnVerdict:
    # tuple.__new__ skips NamedTuple's Python-level __new__ (every field is given)
    return _new_tuple(
        WebAuthnVerdict,
        (
            True,
            OK,
            count,
            user,
            credential_id,
            bool(flags & _UV),
            bool(flags & _BE),
            bool(flags & _BS),
            False,
            "",
        ),
    )


_new_tuple: Final = tuple.__new__


def _check_assertion(
    key: CredentialPublicKey,
    cd: ClientData,
    authenticator_data: bytes,
    flags: int,
    count: int,
    client_data_json: bytes,
    signature: bytes,
    rp_id_hash: bytes,
    origins: Collection[str],
    uv_required: bool,
    allow_cross_origin: bool,
    top_origins: Collection[str] | None,
) -> WebAuthnVerdict | None:
    """§7.2 steps 13-21 on parsed client data and validated authenticator data:
    a refusal, or None when the assertion is good."""
    refused = _check_client_data(cd, origins, allow_cross_origin, top_origins)
    if refused is not None:
        return refused
    if not hmac.compare_digest(authenticator_data[:32], rp_id_hash):
        return _refuse(BAD_RP_ID, "rpIdHash does not match the RP ID", sign_count=count)
    refused = _check_flags(flags, count, uv_required)
    if refused is not None:
        return refused
    signed = bytes(authenticator_data) + hashlib.sha256(client_data_json).digest()
    if not key.verify(bytes(signature), signed):
        return _refuse(BAD_SIGNATURE, "signature does not verify", sign_count=count)
    return None


# -- registration (§7.1) ------------------------------------------------------------------
_DER: Final = Encoding.DER
_ATTESTATION_TYPE_NAMES: Final = {
    AttestationType.NONE: "none",
    AttestationType.SELF: "self",
    AttestationType.BASIC: "basic",
    AttestationType.ATT_CA: "attca",
    AttestationType.ANON_CA: "anonca",
}


def _load_roots(roots: Iterable[bytes | x509.Certificate]) -> tuple[x509.Certificate, ...]:
    out = []
    for r in roots:
        out.append(r if isinstance(r, x509.Certificate) else x509.load_der_x509_certificate(r))
    return tuple(out)


def _valid_at(certs: Iterable[x509.Certificate], now: float) -> bool:
    when = datetime.fromtimestamp(now, UTC)
    return all(c.not_valid_before_utc <= when <= c.not_valid_after_utc for c in certs)


def _chains_to(trust_path: list[bytes], root: x509.Certificate) -> bool:
    try:
        verify_x509_chain([*trust_path, root.public_bytes(_DER)])
    except Exception:  # InvalidData / InvalidSignature / unsupported key: not this root
        return False
    return True


def _verify_attestation(
    ao: AttestationObject,
    client_data_hash: bytes,
    policy: AttestationPolicy,
    roots: Sequence[x509.Certificate],
    now: float | None,
) -> tuple[str | None, str, str]:
    """(refusal reason or None, attestation type, detail) under ``policy`` (§7.1 19-21)."""
    if policy == "none":
        return None, "unverified", ""
    cls = Attestation.for_type(ao.fmt)
    if issubclass(cls, UnsupportedAttestation):
        return UNSUPPORTED_ATTESTATION, "unverified", f"attestation format {ao.fmt!r}"
    try:
        result = cls().verify(ao.att_stmt, ao.auth_data, client_data_hash)
    except (UnsupportedType, NotImplementedError):
        return UNSUPPORTED_ATTESTATION, "unverified", f"attestation format {ao.fmt!r}"
    except AttestationBadSignature:
        return BAD_ATTESTATION, "unverified", "attestation signature does not verify"
    except InvalidData as exc:
        return BAD_ATTESTATION, "unverified", f"attestation statement: {exc}"[:200]
    except Exception as exc:  # python-fido2 verifiers on hostile statements
        return BAD_ATTESTATION, "unverified", f"attestation statement: {type(exc).__name__}"
    att_type = _ATTESTATION_TYPE_NAMES.get(result.attestation_type, "unverified")
    if att_type == "none":
        return UNTRUSTED_ATTESTATION, att_type, "policy requires an attestation statement"
    if policy == "self":
        return None, att_type, ""
    if not result.trust_path:
        return UNTRUSTED_ATTESTATION, att_type, "no certificate chain (self attestation)"
    try:
        chain = [x509.load_der_x509_certificate(der) for der in result.trust_path]
    except ValueError:
        return BAD_ATTESTATION, att_type, "bad certificate in x5c"
    for root in roots:
        if not _chains_to(result.trust_path, root):
            continue
        if now is not None and not _valid_at([*chain, root], now):
            return UNTRUSTED_ATTESTATION, att_type, "attestation certificate not valid now"
        return None, att_type, ""
    return UNTRUSTED_ATTESTATION, att_type, "no trusted root for the attestation chain"


def verify_registration(
    *,
    attestation_object: bytes,
    client_data_json: bytes,
    rp_id: str,
    origin: str | Collection[str],
    challenge: bytes,
    user_verification_required: bool = False,
    allow_cross_origin: bool = False,
    top_origins: Collection[str] | None = None,
    attestation: AttestationPolicy = "none",
    trusted_roots: Iterable[bytes | x509.Certificate] = (),
    algorithms: Collection[int] | None = None,
    credential_id: bytes | None = None,
    now: float | None = None,
) -> RegistrationVerdict:
    """Verify a registration response (WebAuthn L3 §7.1 steps 5-25) with no state.

    ``attestation`` is the policy: ``none`` ignores the statement; ``self`` requires a
    statement python-fido2 verifies (self attestation or better, format ``none``
    refused); ``trusted`` requires a certificate chain to one of ``trusted_roots``
    (valid at ``now`` when given).  ``credential_id``, when given, is the response's
    ``rawId`` and must match the attested credential data.
    """
    origins = (origin,) if isinstance(origin, str) else origin
    try:
        cd = parse_client_data(client_data_json)
    except DecodeError as exc:
        return RegistrationVerdict(False, MALFORMED, detail=str(exc))
    if cd.type != _CREATE:
        return RegistrationVerdict(False, MALFORMED, detail="clientDataJSON type is not create")
    if not hmac.compare_digest(cd.challenge, challenge):
        return RegistrationVerdict(False, CHALLENGE_UNKNOWN, detail="challenge does not match")
    return _check_registration(
        cd,
        attestation_object,
        client_data_json,
        _rp_id_hash_cached(rp_id),
        origins,
        user_verification_required,
        allow_cross_origin,
        top_origins,
        attestation,
        _load_roots(trusted_roots),
        DEFAULT_ALGORITHMS if algorithms is None else algorithms,
        credential_id,
        now,
    )


def _check_registration(
    cd: ClientData,
    attestation_object: bytes,
    client_data_json: bytes,
    rp_id_hash: bytes,
    origins: Collection[str],
    uv_required: bool,
    allow_cross_origin: bool,
    top_origins: Collection[str] | None,
    policy: AttestationPolicy,
    roots: Sequence[x509.Certificate],
    algorithms: Collection[int],
    credential_id: bytes | None,
    now: float | None,
) -> RegistrationVerdict:
    refused = _check_client_data(cd, origins, allow_cross_origin, top_origins)
    if refused is not None:
        return RegistrationVerdict(False, refused.reason, detail=refused.detail)
    try:
        ao = AttestationObject(bytes(attestation_object))
        ad = ao.auth_data
        fmt, stmt = ao.fmt, ao.att_stmt
        if not isinstance(fmt, str) or not isinstance(stmt, dict):
            raise TypeError("fmt/attStmt")
        flags, count = _validate_authenticator_data(ad)
    except Exception as exc:  # python-fido2's parser of untrusted CBOR raises anything
        return RegistrationVerdict(False, MALFORMED, detail=f"attestation object: {exc}"[:200])
    if not hmac.compare_digest(ad.rp_id_hash, rp_id_hash):
        return RegistrationVerdict(False, BAD_RP_ID, detail="rpIdHash does not match the RP ID")
    refused = _check_flags(flags, count, uv_required)
    if refused is not None:
        return RegistrationVerdict(False, refused.reason, detail=refused.detail)
    acd = ad.credential_data
    if acd is None:
        return RegistrationVerdict(False, MALFORMED, detail="no attested credential data")
    cred_id = bytes(acd.credential_id)
    if not 1 <= len(cred_id) <= _MAX_CREDENTIAL_ID:
        return RegistrationVerdict(False, MALFORMED, detail="credential ID length")
    if credential_id is not None and not hmac.compare_digest(credential_id, cred_id):
        return RegistrationVerdict(False, MALFORMED, detail="rawId is not the attested ID")
    cose = cbor.encode(acd.public_key)
    try:
        key = cached_public_key(cose)
    except DecodeError as exc:
        return RegistrationVerdict(False, _key_reason(exc), detail=str(exc))
    if key.algorithm not in algorithms:
        return RegistrationVerdict(
            False, UNSUPPORTED_ALGORITHM, detail=f"algorithm {key.algorithm} not allowed"
        )
    reason, att_type, detail = _verify_attestation(
        ao, hashlib.sha256(client_data_json).digest(), policy, roots, now
    )
    if reason is not None:
        return RegistrationVerdict(False, reason, detail=detail)
    return RegistrationVerdict(
        True,
        OK,
        credential=AttestedCredential(
            credential_id=cred_id,
            public_key=cose,
            algorithm=key.algorithm,
            aaguid=bytes(acd.aaguid),
            sign_count=count,
            user_verified=bool(flags & _UV),
            backup_eligible=bool(flags & _BE),
            backup_state=bool(flags & _BS),
            attestation_format=fmt,
            attestation_type=att_type,
        ),
    )


# -- stored credentials -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A registered credential as the store keeps it (the signature counter lives in the
    store's counter family; ``sign_count`` is filled in when listing)."""

    credential_id: bytes
    user: str
    user_handle: bytes
    public_key: bytes
    algorithm: int
    aaguid: bytes
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    uv_initialized: bool
    attestation_format: str
    attestation_type: str
    created: float
    sign_count: int = 0

    def to_record(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "id": b64url_encode(self.credential_id),
                "user": self.user,
                "uh": b64url_encode(self.user_handle),
                "pk": b64url_encode(self.public_key),
                "alg": self.algorithm,
                "aaguid": self.aaguid.hex(),
                "tr": list(self.transports),
                "be": self.backup_eligible,
                "bs": self.backup_state,
                "uvi": self.uv_initialized,
                "fmt": self.attestation_format,
                "att": self.attestation_type,
                "at": self.created,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    @classmethod
    def from_record(cls, data: bytes) -> StoredCredential:
        try:
            d = json.loads(data)
            return cls(
                credential_id=b64url_decode(d["id"]),
                user=str(d["user"]),
                user_handle=b64url_decode(d["uh"]),
                public_key=b64url_decode(d["pk"]),
                algorithm=int(d["alg"]),
                aaguid=bytes.fromhex(d["aaguid"]),
                transports=tuple(str(t) for t in d["tr"]),
                backup_eligible=bool(d["be"]),
                backup_state=bool(d["bs"]),
                uv_initialized=bool(d["uvi"]),
                attestation_format=str(d["fmt"]),
                attestation_type=str(d["att"]),
                created=float(d["at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError("corrupt WebAuthn credential record") from exc


# -- browser JSON (PublicKeyCredential.toJSON(), WebAuthn L3 §5.1.8) ---------------------
class _Assertion(NamedTuple):
    raw_id: bytes
    client_data_json: bytes
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None


def _as_mapping(response: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(response, str | bytes | bytearray):
        try:
            response = json.loads(response)
        except (ValueError, RecursionError):
            raise DecodeError("response is not JSON", expected="PublicKeyCredential JSON") from None
    if type(response) is not dict and not isinstance(response, Mapping):
        raise DecodeError("response is not a JSON object", expected="PublicKeyCredential JSON")
    return response


# rawId text -> credential ID, for texts that passed every check below: decoding is a
# pure function of the text, so a known text needs neither decoding nor checking again.
_RAW_IDS: dict[str, bytes] = {}
_RAW_IDS_MAX = 4096


def _credential_id(resp: Mapping[str, Any]) -> bytes:
    if resp.get("type") != "public-key":
        raise DecodeError("credential type is not public-key")
    text = resp.get("rawId")
    raw_id = _RAW_IDS.get(text) if type(text) is str else None
    checked = raw_id is not None
    if raw_id is None:
        raw_id = b64url_decode(text)
    text_id = resp.get("id")
    if text_id is not None and text_id != text and b64url_decode(text_id) != raw_id:
        raise DecodeError("id and rawId differ")
    if not checked:
        if not 1 <= len(raw_id) <= _MAX_CREDENTIAL_ID:
            raise DecodeError("credential ID length", expected="1..1023 bytes")
        if len(_RAW_IDS) >= _RAW_IDS_MAX:
            _RAW_IDS.clear()
        _RAW_IDS[str(text)] = raw_id  # a str: b64url_decode took it
    return raw_id


def _parse_assertion(response: Mapping[str, Any] | str | bytes) -> _Assertion:
    resp = _as_mapping(response)
    raw_id = _credential_id(resp)
    r = resp.get("response")
    if type(r) is not dict and not isinstance(r, Mapping):
        raise DecodeError("no response member", expected="AuthenticatorAssertionResponseJSON")
    uh = r.get("userHandle")
    return _Assertion(
        raw_id,
        b64url_decode(r.get("clientDataJSON")),
        b64url_decode(r.get("authenticatorData")),
        b64url_decode(r.get("signature")),
        None if uh is None or uh == "" else b64url_decode(uh),
    )


# -- the stateful verifier ----------------------------------------------------------------
class _Ceremony(NamedTuple):
    purpose: str  # "get" or "create"
    user: str | None
    uv: str
    expires: float
    user_handle: bytes | None


# A challenge token: purpose, UV policy, expiry, user handle (hex, may be empty), then
# "u" + the user name or "-" for none; unit-separated, the user last (names may hold
# anything).  Read on every login, so it is not JSON.
_SEP: Final = "\x1f"


def _encode_ceremony(c: _Ceremony) -> bytes:
    handle = "" if c.user_handle is None else c.user_handle.hex()
    user = "-" if c.user is None else "u" + c.user
    return _SEP.join((c.purpose, c.uv, repr(c.expires), handle, user)).encode()


def _decode_ceremony(data: bytes) -> _Ceremony:
    try:
        purpose, uv, expires, handle, user = data.decode().split(_SEP, 4)
        return _Ceremony(
            purpose,
            None if user == "-" else user.removeprefix("u"),
            uv,
            float(expires),
            bytes.fromhex(handle) if handle else None,
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("corrupt WebAuthn challenge token") from exc


class _Cached(NamedTuple):
    cred: StoredCredential
    key: CredentialPublicKey


class WebAuthnVerifier:
    """A WebAuthn relying party on a shared :class:`~eapkit.store.base.Store`.

    ``origins`` are the exact origins pages run on (``https://login.example.org``);
    ``rp_id`` is the RP ID (a registrable suffix of their hosts, §5.1.4.1).
    ``user_verification`` is the default UV policy (``required`` refuses assertions
    without UV); ``attestation`` the attestation policy for registrations (``none`` /
    ``self`` / ``trusted`` with ``trusted_roots``).  Challenges live ``timeout`` seconds;
    an expired one is still recognised (``challenge_expired``) for ``grace`` seconds more,
    and a used one (``replayed``) as long.  Store keys start with ``namespace``.

    ``begin_*`` return the options JSON for the browser and may raise
    :class:`~eapkit.store.base.StoreUnavailable`; ``finish_*`` return a verdict and never
    raise for anything in the response.
    """

    def __init__(
        self,
        store: Store,
        *,
        rp_id: str,
        origins: Iterable[str],
        rp_name: str | None = None,
        user_verification: UserVerification = "preferred",
        resident_key: ResidentKey = "preferred",
        attestation: AttestationPolicy = "none",
        trusted_roots: Iterable[bytes | x509.Certificate] = (),
        algorithms: Sequence[int] = DEFAULT_ALGORITHMS,
        timeout: float = 300.0,
        grace: float = 600.0,
        allow_cross_origin: bool = False,
        top_origins: Iterable[str] | None = None,
        namespace: str = "webauthn",
        rand: RandomSource = SYSTEM_RANDOM,
        cache_size: int = 10_000,
    ) -> None:
        if user_verification not in ("required", "preferred", "discouraged"):
            raise ConfigError("user_verification must be required, preferred or discouraged")
        if attestation not in ("none", "self", "trusted"):
            raise ConfigError("attestation policy must be none, self or trusted")
        self.roots = _load_roots(trusted_roots)
        if attestation == "trusted" and not self.roots:
            raise ConfigError("attestation policy 'trusted' needs trusted_roots")
        if timeout <= 0 or grace < 0:
            raise ConfigError("timeout must be positive and grace not negative")
        self.store = store
        self.rp_id = rp_id
        self.rp_name = rp_name or rp_id
        self.origins = frozenset(origins)
        if not self.origins:
            raise ConfigError("at least one origin is needed")
        self.user_verification: UserVerification = user_verification
        self.resident_key: ResidentKey = resident_key
        self.attestation: AttestationPolicy = attestation
        self.algorithms = tuple(algorithms)
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.allow_cross_origin = allow_cross_origin
        self.top_origins = None if top_origins is None else frozenset(top_origins)
        self.ns = namespace
        self.rand = rand
        self._rp_id_hash = _rp_id_hash(rp_id)
        self._cache: dict[bytes, _Cached] = {}
        self._cache_size = cache_size
        # credential ID -> (tag, credential key, counter key): derived, never stale
        self._keys: dict[bytes, tuple[str, str, str]] = {}

    # store keys
    @staticmethod
    def _tag(credential_id: bytes) -> str:
        """Credential IDs are up to 1023 bytes: store keys carry their SHA-256."""
        return b64url_encode(hashlib.sha256(credential_id).digest())

    def _keys_of(self, credential_id: bytes) -> tuple[str, str, str]:
        """(tag, credential key, counter key) of a credential ID, hashed once per ID."""
        keys = self._keys.get(credential_id)
        if keys is None:
            tag = self._tag(credential_id)
            keys = (tag, self._cred_key(credential_id, tag), self._count_key(credential_id, tag))
            if len(self._keys) >= self._cache_size:
                self._keys.clear()
            self._keys[credential_id] = keys
        return keys

    def _cred_key(self, credential_id: bytes, tag: str | None = None) -> str:
        return f"{self.ns}:cred:{tag or self._tag(credential_id)}"

    def _count_key(self, credential_id: bytes, tag: str | None = None) -> str:
        return f"{self.ns}:count:{tag or self._tag(credential_id)}"

    def _user_key(self, user: str) -> str:
        return f"{self.ns}:user:{user}"

    # Challenge tokens are keyed by the challenge's unpadded base64url text, as issued and
    # as browsers echo it; a non-canonical spelling finds nothing (challenge_unknown).
    def _chal_key(self, text: str) -> str:
        return f"{self.ns}:chal:{text}"

    def _used_key(self, text: str) -> str:
        return f"{self.ns}:used:{text}"

    # -- users and credentials ------------------------------------------------------------
    def _user_record(self, user: str) -> tuple[bytes | None, list[bytes]]:
        raw = self.store.get(self._user_key(user))
        if raw is None:
            return None, []
        try:
            d = json.loads(raw)
            return b64url_decode(d["uh"]), [b64url_decode(c) for c in d["creds"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable("corrupt WebAuthn user record") from exc

    def _put_user_record(self, user: str, handle: bytes, creds: list[bytes]) -> None:
        self.store.put(
            self._user_key(user),
            json.dumps(
                {"uh": b64url_encode(handle), "creds": [b64url_encode(c) for c in creds]},
                separators=(",", ":"),
            ).encode(),
        )

    def credentials(self, user: str) -> list[StoredCredential]:
        """The user's registered credentials with their current signature counters."""
        _, ids = self._user_record(user)
        out = []
        for cid in ids:
            raw = self.store.get(self._cred_key(cid))
            if raw is None:
                continue
            cred = StoredCredential.from_record(raw)
            count = self.store.counter(self._count_key(cid)) or 0
            out.append(replace(cred, sign_count=count))
        return out

    def remove_credential(self, user: str, credential_id: bytes) -> bool:
        """Unregister a credential of ``user``; True if it was there."""
        handle, ids = self._user_record(user)
        raw = self.store.get(self._cred_key(credential_id))
        if raw is None or StoredCredential.from_record(raw).user != user:
            return False
        self.store.delete(self._cred_key(credential_id))
        self.store.delete(self._count_key(credential_id))
        if handle is not None:
            self._put_user_record(user, handle, [c for c in ids if c != credential_id])
        return True

    def _lookup(self, credential_id: bytes, cred_key: str) -> _Cached | None:
        raw = self.store.get(cred_key)
        if raw is None:
            return None
        entry = self._cache.get(raw)
        if entry is None:
            cred = StoredCredential.from_record(raw)
            entry = _Cached(cred, cached_public_key(cred.public_key))
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # records are cheap to re-parse; keep the bound simple
            self._cache[raw] = entry
        # keys are SHA-256 of the ID; the record holds the ID itself
        if not hmac.compare_digest(entry.cred.credential_id, credential_id):
            return None
        return entry

    # -- challenges -------------------------------------------------------------------------
    def _issue(self, ceremony: _Ceremony, now: float) -> bytes:
        for _ in range(4):
            challenge = self.rand.random_bytes(32)
            if self.store.put_once(
                self._chal_key(b64url_encode(challenge)),
                _encode_ceremony(ceremony),
                self.timeout + self.grace,
                now,
            ):
                return challenge
        raise StoreUnavailable("could not store a fresh challenge")  # pragma: no cover

    def _consume(
        self, cd: ClientData, purpose: str, now: float
    ) -> tuple[_Ceremony | None, str, str]:
        """Take the challenge token once: (ceremony, reason, detail)."""
        if not 1 <= len(cd.challenge) <= _MAX_CHALLENGE:
            return None, CHALLENGE_UNKNOWN, "challenge length"
        text = cd.challenge_text
        raw = self.store.take(self._chal_key(text), now)
        if raw is None:
            if self.store.peek(self._used_key(text), now) is not None:
                return None, REPLAYED, "challenge already used"
            return None, CHALLENGE_UNKNOWN, "challenge not issued or long expired"
        if self.grace > 0:
            self.store.put_once(self._used_key(text), b"1", self.grace, now)
        ceremony = _decode_ceremony(raw)
        if ceremony.purpose != purpose:
            return None, CHALLENGE_UNKNOWN, "challenge issued for another ceremony"
        if now > ceremony.expires:
            return None, CHALLENGE_EXPIRED, "challenge expired"
        return ceremony, OK, ""

    def _uv(self, uv: UserVerification | None) -> UserVerification:
        uv = uv or self.user_verification
        if uv not in ("required", "preferred", "discouraged"):
            raise ValueError("user_verification must be required, preferred or discouraged")
        return uv

    # -- registration -----------------------------------------------------------------------
    def begin_registration(
        self,
        user: str,
        *,
        now: float,
        display_name: str | None = None,
        user_verification: UserVerification | None = None,
        resident_key: ResidentKey | None = None,
        authenticator_attachment: Literal["platform", "cross-platform"] | None = None,
    ) -> dict[str, Any]:
        """``PublicKeyCredentialCreationOptionsJSON`` for ``user`` (§5.4), challenge issued."""
        uv = self._uv(user_verification)
        handle, existing = self._user_record(user)
        if handle is None:
            handle = self.rand.random_bytes(32)  # §14.6.1: user handles carry no PII
            self._put_user_record(user, handle, [])
        challenge = self._issue(_Ceremony("create", user, uv, now + self.timeout, handle), now)
        rk = resident_key or self.resident_key
        selection: dict[str, Any] = {
            "residentKey": rk,
            "requireResidentKey": rk == "required",
            "userVerification": uv,
        }
        if authenticator_attachment is not None:
            selection["authenticatorAttachment"] = authenticator_attachment
        return {
            "rp": {"id": self.rp_id, "name": self.rp_name},
            "user": {
                "id": b64url_encode(handle),
                "name": user,
                "displayName": display_name or user,
            },
            "challenge": b64url_encode(challenge),
            "pubKeyCredParams": [{"type": "public-key", "alg": a} for a in self.algorithms],
            "timeout": int(self.timeout * 1000),
            "excludeCredentials": [
                {"type": "public-key", "id": b64url_encode(c)} for c in existing
            ],
            "authenticatorSelection": selection,
            "attestation": "none" if self.attestation == "none" else "direct",
            "extensions": {"credProps": True},
        }

    def finish_registration(
        self, response: Mapping[str, Any] | str | bytes, *, now: float
    ) -> RegistrationVerdict:
        """Verify the browser's ``PublicKeyCredential`` JSON and store the credential."""
        try:
            resp = _as_mapping(response)
            raw_id = _credential_id(resp)
            r = resp.get("response")
            if not isinstance(r, Mapping):
                raise DecodeError("no response member")
            cdj = b64url_decode(r.get("clientDataJSON"))
            att_obj = b64url_decode(r.get("attestationObject"))
            transports = r.get("transports", [])
            if (
                not isinstance(transports, list)
                or len(transports) > 16
                or not all(isinstance(t, str) and len(t) <= 32 for t in transports)
            ):
                raise DecodeError("transports is not a list of strings")
            cd = parse_client_data(cdj)
        except DecodeError as exc:
            return RegistrationVerdict(False, MALFORMED, detail=str(exc))
        if cd.type != _CREATE:
            return RegistrationVerdict(False, MALFORMED, detail="clientDataJSON type")
        try:
            ceremony, reason, detail = self._consume(cd, "create", now)
        except (StoreUnavailable, DecodeError) as exc:
            return RegistrationVerdict(False, STORE_UNAVAILABLE, detail=str(exc))
        if ceremony is None or ceremony.user is None or ceremony.user_handle is None:
            return RegistrationVerdict(False, reason, detail=detail)
        verdict = _check_registration(
            cd,
            att_obj,
            cdj,
            self._rp_id_hash,
            self.origins,
            ceremony.uv == "required",
            self.allow_cross_origin,
            self.top_origins,
            self.attestation,
            self.roots,
            self.algorithms,
            raw_id,
            now,
        )
        if not verdict.ok or verdict.credential is None:
            return verdict._replace(user=ceremony.user)
        ac = verdict.credential
        stored = StoredCredential(
            credential_id=ac.credential_id,
            user=ceremony.user,
            user_handle=ceremony.user_handle,
            public_key=ac.public_key,
            algorithm=ac.algorithm,
            aaguid=ac.aaguid,
            transports=tuple(dict.fromkeys(transports)),
            backup_eligible=ac.backup_eligible,
            backup_state=ac.backup_state,
            uv_initialized=ac.user_verified,
            attestation_format=ac.attestation_format,
            attestation_type=ac.attestation_type,
            created=now,
            sign_count=ac.sign_count,
        )
        try:
            if self.store.get(self._cred_key(ac.credential_id)) is not None:
                return RegistrationVerdict(
                    False, CREDENTIAL_EXISTS, ceremony.user, detail="credential ID registered"
                )
            self.store.put(self._cred_key(ac.credential_id), stored.to_record())
            if ac.sign_count > 0:
                self.store.advance(self._count_key(ac.credential_id), ac.sign_count)
            handle, ids = self._user_record(ceremony.user)
            self._put_user_record(
                ceremony.user, handle or ceremony.user_handle, [*ids, ac.credential_id]
            )
        except StoreUnavailable as exc:
            return RegistrationVerdict(False, STORE_UNAVAILABLE, ceremony.user, detail=str(exc))
        return verdict._replace(user=ceremony.user, stored=stored)

    # -- authentication ---------------------------------------------------------------------
    def begin_authentication(
        self,
        user: str | None = None,
        *,
        now: float,
        user_verification: UserVerification | None = None,
    ) -> dict[str, Any]:
        """``PublicKeyCredentialRequestOptionsJSON`` (§5.5), challenge issued.

        With ``user``, ``allowCredentials`` lists their credentials and only those are
        accepted; without, any discoverable credential of any user is (usernameless).
        """
        uv = self._uv(user_verification)
        allow: list[dict[str, Any]] = []
        if user is not None:
            for cred in self.credentials(user):
                entry: dict[str, Any] = {
                    "type": "public-key",
                    "id": b64url_encode(cred.credential_id),
                }
                if cred.transports:
                    entry["transports"] = list(cred.transports)
                allow.append(entry)
        challenge = self._issue(_Ceremony("get", user, uv, now + self.timeout, None), now)
        return {
            "challenge": b64url_encode(challenge),
            "timeout": int(self.timeout * 1000),
            "rpId": self.rp_id,
            "allowCredentials": allow,
            "userVerification": uv,
        }

    def finish_authentication(
        self, response: Mapping[str, Any] | str | bytes, *, now: float
    ) -> WebAuthnVerdict:
        """Verify the browser's assertion JSON (§7.2); the hot path."""
        try:  # everything that can be malformed, before the challenge is spent
            a = _parse_assertion(response)
            cd = parse_client_data(a.client_data_json)
            flags, count = _validate_authenticator_data(a.authenticator_data)
        except DecodeError as exc:
            return _refuse(MALFORMED, str(exc))
        if cd.type != _GET:
            return _refuse(MALFORMED, "clientDataJSON type is not webauthn.get")
        try:
            ceremony, reason, detail = self._consume(cd, "get", now)
            if ceremony is None:
                return _refuse(reason, detail)
            keys = self._keys_of(a.raw_id)
            found = self._lookup(a.raw_id, keys[1])
        except (StoreUnavailable, DecodeError) as exc:
            return _refuse(STORE_UNAVAILABLE, str(exc))
        if found is None:
            return _refuse(UNKNOWN_CREDENTIAL, "credential not registered")
        cred = found.cred
        # §7.2 step 6: the credential must belong to the user the ceremony was for, and
        # a userHandle, when given (always, for a usernameless login), must be its owner's.
        if ceremony.user is not None and ceremony.user != cred.user:
            return _refuse(UNKNOWN_CREDENTIAL, "credential not in allowCredentials")
        if a.user_handle is None:
            if ceremony.user is None:
                return _refuse(UNKNOWN_CREDENTIAL, "no userHandle for a usernameless login")
        elif not hmac.compare_digest(a.user_handle, cred.user_handle):
            return _refuse(UNKNOWN_CREDENTIAL, "userHandle is not the credential owner's")
        refused = _check_assertion(
            found.key,
            cd,
            a.authenticator_data,
            flags,
            count,
            a.client_data_json,
            a.signature,
            self._rp_id_hash,
            self.origins,
            ceremony.uv == "required",
            self.allow_cross_origin,
            self.top_origins,
        )
        if refused is not None:
            return refused._replace(user=cred.user, credential_id=cred.credential_id)
        v = _accept(flags, count, cred.user, cred.credential_id)
        try:
            return self._after_signature(cred, v, keys)
        except StoreUnavailable as exc:
            return v._replace(ok=False, reason=STORE_UNAVAILABLE, detail=str(exc))

    def _after_signature(
        self, cred: StoredCredential, v: WebAuthnVerdict, keys: tuple[str, str, str]
    ) -> WebAuthnVerdict:
        count = v.sign_count or 0
        key = keys[2]
        # §6.1.1 / §7.2 step 22: either counter non-zero -> the new one must be greater
        if count == 0:
            if self.store.counter(key):
                return v._replace(
                    ok=False,
                    reason=COUNTER_REGRESSED,
                    possible_clone=True,
                    detail="signature counter went back to 0: possible cloned authenticator",
                )
        elif not self.store.advance(key, count):
            return v._replace(
                ok=False,
                reason=COUNTER_REGRESSED,
                possible_clone=True,
                detail="signature counter did not increase: possible cloned authenticator",
            )
        if v.backup_state != cred.backup_state or (v.user_verified and not cred.uv_initialized):
            # §7.2 steps 23-24: keep BS current and note that UV was once performed
            updated = replace(
                cred,
                backup_state=v.backup_state,
                uv_initialized=cred.uv_initialized or v.user_verified,
            )
            self.store.put(keys[1], updated.to_record())
        return v
