"""A FIDO2 authenticator and the browser in front of it, in software: tests need no hardware.

:class:`SoftAuthenticator` takes the options JSON a relying party produces
(``PublicKeyCredentialCreationOptionsJSON`` / ``...RequestOptionsJSON``, WebAuthn L3
§5.4/§5.5) and answers with what ``PublicKeyCredential.toJSON()`` would give the page
(§5.1.8): client data (§5.8.1), authenticator data (§6.1), an attestation object with
format ``none``, ``packed`` self attestation or ``packed`` with a certificate chain (§8.2),
and assertions signed with ES256/384/512, EdDSA (Ed25519, Ed448) or RS256.

It is a test double, not an authenticator anyone should hold keys in: private keys sit in
memory.  Knobs on :meth:`create` and :meth:`get` produce the faulty answers a verifier must
refuse (flags, counters, origins, client data fields, RP ID).  Key material and
credential IDs come from an injectable random source (RSA keys excepted: ``cryptography``
cannot derive them from a seed).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from fido2 import cbor

from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.verify.webauthn import b64url_decode, b64url_encode

__all__ = [
    "SOFT_AAGUID",
    "AttestationChain",
    "SoftAuthenticator",
    "SoftCredential",
    "make_attestation_chain",
]

# A made-up AAGUID (random, not registered with the FIDO Metadata Service)
SOFT_AAGUID = bytes.fromhex("6561706b69742d736f66742d6b657921")

PrivateKey = (
    ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | rsa.RSAPrivateKey
)

# alg -> (curve, hash, random bytes for the scalar, COSE crv, coordinate size)
_EC_CURVES: dict[int, tuple[ec.EllipticCurve, hashes.HashAlgorithm, int, int, int]] = {
    -7: (ec.SECP256R1(), hashes.SHA256(), 31, 1, 32),
    -35: (ec.SECP384R1(), hashes.SHA384(), 47, 2, 48),
    -36: (ec.SECP521R1(), hashes.SHA512(), 64, 3, 66),
}
SUPPORTED_ALGORITHMS = (-7, -8, -257, -35, -36, -53)

_UP, _UV, _BE, _BS, _AT, _ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80


def _generate(alg: int, rand: RandomSource) -> tuple[PrivateKey, bytes]:
    """(private key, COSE public key) for a COSE algorithm."""
    # COSE_Key maps (RFC 9053 §7, RFC 8230 §4): 1 kty, 3 alg, -1 crv/n, -2 x/e, -3 y
    if alg in _EC_CURVES:
        curve, _, nbytes, crv, size = _EC_CURVES[alg]
        # fewer bytes than the group order has: always a valid non-zero scalar
        scalar = int.from_bytes(rand.random_bytes(nbytes), "big") | 1
        ek = ec.derive_private_key(scalar, curve)
        point = ek.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        x, y = point[1 : 1 + size], point[1 + size :]
        return ek, cbor.encode({1: 2, 3: alg, -1: crv, -2: x, -3: y})
    if alg in (-8, -53):
        okp: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey = (
            ed25519.Ed25519PrivateKey.from_private_bytes(rand.random_bytes(32))
            if alg == -8
            else ed448.Ed448PrivateKey.from_private_bytes(rand.random_bytes(57))
        )
        raw = okp.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return okp, cbor.encode({1: 1, 3: alg, -1: 6 if alg == -8 else 7, -2: raw})
    if alg == -257:
        rk = rsa.generate_private_key(65537, 2048)
        pn = rk.public_key().public_numbers()
        n = pn.n.to_bytes((pn.n.bit_length() + 7) // 8, "big")
        return rk, cbor.encode({1: 3, 3: alg, -1: n, -2: pn.e.to_bytes(3, "big")})
    raise ValueError(f"soft authenticator does not support COSE algorithm {alg}")


def _sign(key: PrivateKey, alg: int, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(_EC_CURVES[alg][1]))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


@dataclass
class SoftCredential:
    credential_id: bytes
    rp_id: str
    user_handle: bytes
    algorithm: int
    private_key: PrivateKey = field(repr=False)
    public_key: bytes = field(repr=False)  # COSE
    discoverable: bool
    sign_count: int = 0


@dataclass(frozen=True)
class AttestationChain:
    """A test attestation CA and a leaf that meets §8.2.1 (packed certificate rules)."""

    root_der: bytes
    leaf_der: bytes
    leaf_key: ec.EllipticCurvePrivateKey = field(repr=False)


def make_attestation_chain(
    aaguid: bytes = SOFT_AAGUID, *, not_after: datetime.datetime | None = None
) -> AttestationChain:
    """A self-signed root and an attestation certificate for ``aaguid`` (ES256 keys)."""
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    end = not_after or datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "eapkit soft authenticator test CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eapkit tests"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "AA"),
        ]
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "AA"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "eapkit tests"),
                    x509.NameAttribute(
                        NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"
                    ),
                    x509.NameAttribute(NameOID.COMMON_NAME, "eapkit soft authenticator"),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # id-fido-gen-ce-aaguid: OCTET STRING wrapping the 16-byte AAGUID (§8.2.1)
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4"), b"\x04\x10" + aaguid
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    return AttestationChain(
        root.public_bytes(Encoding.DER), leaf.public_bytes(Encoding.DER), leaf_key
    )


def _challenge(options: Mapping[str, Any]) -> str:
    challenge = options["challenge"]
    b64url_decode(challenge)  # a page would fail on a non-base64url challenge too
    return str(challenge)


class SoftAuthenticator:
    """One authenticator (with its browser): credentials it created, by credential ID.

    ``attestation``: ``none``, ``packed-self`` or ``packed`` (needs ``chain``).
    ``counter``: ``increment`` (per credential, as security keys do) or ``zero`` (as
    synced passkeys do).  ``backup_eligible``/``backup_state`` set BE/BS.
    """

    def __init__(
        self,
        *,
        rand: RandomSource = SYSTEM_RANDOM,
        aaguid: bytes = SOFT_AAGUID,
        attestation: Literal["none", "packed-self", "packed"] = "none",
        chain: AttestationChain | None = None,
        counter: Literal["increment", "zero"] = "increment",
        user_verification: bool = True,
        backup_eligible: bool = False,
        backup_state: bool = False,
        transports: Sequence[str] = ("usb",),
        attachment: str = "cross-platform",
    ) -> None:
        if attestation == "packed" and chain is None:
            raise ValueError("packed attestation needs an AttestationChain")
        self.rand = rand
        self.aaguid = aaguid
        self.attestation = attestation
        self.chain = chain
        self.counter = counter
        self.user_verification = user_verification
        self.backup_eligible = backup_eligible
        self.backup_state = backup_state
        self.transports = list(transports)
        self.attachment = attachment
        self.credentials: dict[bytes, SoftCredential] = {}

    # -- pieces -----------------------------------------------------------------------------
    @staticmethod
    def client_data(
        typ: str, challenge: str, origin: str, extra: Mapping[str, Any] | None = None
    ) -> bytes:
        """clientDataJSON as a browser serialises it (§5.8.1.1), ``extra`` merged last."""
        doc: dict[str, Any] = {
            "type": typ,
            "challenge": challenge,
            "origin": origin,
            "crossOrigin": False,
        }
        doc.update(extra or {})
        return json.dumps(doc, separators=(",", ":")).encode()

    def _flags(self, up: bool, uv: bool | None) -> int:
        flags = _UP if up else 0
        if self.user_verification if uv is None else uv:
            flags |= _UV
        if self.backup_eligible:
            flags |= _BE
        if self.backup_state:
            flags |= _BS
        return flags

    # -- navigator.credentials.create() -------------------------------------------------
    def create(
        self,
        options: Mapping[str, Any],
        *,
        origin: str,
        alg: int | None = None,
        discoverable: bool | None = None,
        user_present: bool = True,
        user_verified: bool | None = None,
        flags: int | None = None,
        sign_count: int = 0,
        rp_id: str | None = None,
        client_data: Mapping[str, Any] | None = None,
        attestation: Literal["none", "packed-self", "packed"] | None = None,
        credential_id_length: int = 32,
    ) -> dict[str, Any]:
        """A registration response (``PublicKeyCredential.toJSON()``) to ``options``."""
        rp = rp_id or options["rp"]["id"]
        if alg is None:
            offered = [p["alg"] for p in options.get("pubKeyCredParams", [])]
            alg = next((a for a in offered if a in SUPPORTED_ALGORITHMS), None)
            if alg is None:
                raise ValueError("no offered algorithm is supported")
        selection = options.get("authenticatorSelection", {})
        if discoverable is None:
            discoverable = selection.get("residentKey", "discouraged") != "discouraged"
        key, cose = _generate(alg, self.rand)
        cred = SoftCredential(
            credential_id=self.rand.random_bytes(credential_id_length),
            rp_id=rp,
            user_handle=b64url_decode(options["user"]["id"]),
            algorithm=alg,
            private_key=key,
            public_key=cose,
            discoverable=discoverable,
            sign_count=sign_count,
        )
        cdj = self.client_data("webauthn.create", _challenge(options), origin, client_data)
        f = (self._flags(user_present, user_verified) | _AT) if flags is None else flags
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + struct.pack(">BI", f, sign_count)
            + self.aaguid
            + struct.pack(">H", len(cred.credential_id))
            + cred.credential_id
            + cose
        )
        fmt = attestation or self.attestation
        signed = auth_data + hashlib.sha256(cdj).digest()
        stmt: dict[str, Any]
        if fmt == "none":
            stmt = {}
        elif fmt == "packed-self":
            stmt = {"alg": alg, "sig": _sign(key, alg, signed)}
        else:
            assert self.chain is not None
            stmt = {
                "alg": -7,
                "sig": _sign(self.chain.leaf_key, -7, signed),
                "x5c": [self.chain.leaf_der],
            }
        att_obj = cbor.encode(
            {"fmt": "packed" if fmt != "none" else "none", "attStmt": stmt, "authData": auth_data}
        )
        self.credentials[cred.credential_id] = cred
        cid = b64url_encode(cred.credential_id)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "response": {
                "clientDataJSON": b64url_encode(cdj),
                "attestationObject": b64url_encode(att_obj),
                "transports": list(self.transports),
            },
            "clientExtensionResults": {"credProps": {"rk": discoverable}},
        }

    # -- navigator.credentials.get() ----------------------------------------------------
    def get(
        self,
        options: Mapping[str, Any],
        *,
        origin: str,
        credential_id: bytes | None = None,
        user_present: bool = True,
        user_verified: bool | None = None,
        flags: int | None = None,
        sign_count: int | None = None,
        rp_id: str | None = None,
        client_data: Mapping[str, Any] | None = None,
        user_handle: bytes | Literal["omit"] | None = None,
    ) -> dict[str, Any]:
        """An assertion response (``PublicKeyCredential.toJSON()``) to ``options``.

        The credential is ``credential_id``, else the first one ``allowCredentials``
        names, else the first discoverable credential for the RP ID.
        """
        rp = rp_id or options.get("rpId") or ""
        cred = self._pick(options, rp, credential_id)
        if sign_count is None:
            if self.counter == "increment":
                cred.sign_count += 1
            sign_count = cred.sign_count
        cdj = self.client_data("webauthn.get", _challenge(options), origin, client_data)
        f = self._flags(user_present, user_verified) if flags is None else flags
        auth_data = hashlib.sha256(rp.encode()).digest() + struct.pack(">BI", f, sign_count)
        sig = _sign(cred.private_key, cred.algorithm, auth_data + hashlib.sha256(cdj).digest())
        if user_handle == "omit":
            uh = None
        elif user_handle is not None:
            uh = b64url_encode(user_handle)
        else:
            uh = b64url_encode(cred.user_handle) if cred.discoverable else None
        cid = b64url_encode(cred.credential_id)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "response": {
                "clientDataJSON": b64url_encode(cdj),
                "authenticatorData": b64url_encode(auth_data),
                "signature": b64url_encode(sig),
                "userHandle": uh,
            },
            "clientExtensionResults": {},
        }

    def _pick(
        self, options: Mapping[str, Any], rp: str, credential_id: bytes | None
    ) -> SoftCredential:
        if credential_id is not None:
            return self.credentials[credential_id]
        allowed = [b64url_decode(c["id"]) for c in options.get("allowCredentials", [])]
        for cid in allowed:
            if cid in self.credentials:
                return self.credentials[cid]
        if not allowed:
            for c in self.credentials.values():
                if c.discoverable and c.rp_id == rp:
                    return c
        raise LookupError("no credential on this authenticator matches (NotAllowedError)")
