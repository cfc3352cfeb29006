"""Registration (WebAuthn L3 §7.1): the checks of one ``navigator.credentials.create()``
answer, and the credential it attests."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

from cryptography import x509
from fido2 import cbor
from fido2.webauthn import AttestationObject

from eapkit.errors import DecodeError
from eapkit.verify.verdict import BAD_RP_ID, CHALLENGE_UNKNOWN, MALFORMED, OK, UNSUPPORTED_ALGORITHM
from eapkit.verify.webauthn.assertion import check_client_data, check_flags
from eapkit.verify.webauthn.attestation import AttestationPolicy, load_roots, verify_attestation
from eapkit.verify.webauthn.authenticator_data import (
    BE,
    BS,
    MAX_CREDENTIAL_ID,
    UV,
    rp_id_hash_cached,
    validate_authenticator_data,
)
from eapkit.verify.webauthn.client_data import CREATE, ClientData, parse_client_data
from eapkit.verify.webauthn.cose import DEFAULT_ALGORITHMS, cached_public_key, key_reason
from eapkit.verify.webauthn.records import StoredCredential

__all__ = [
    "AttestedCredential",
    "RegistrationVerdict",
    "check_registration",
    "verify_registration",
]


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
    if cd.type != CREATE:
        return RegistrationVerdict(False, MALFORMED, detail="clientDataJSON type is not create")
    if not hmac.compare_digest(cd.challenge, challenge):
        return RegistrationVerdict(False, CHALLENGE_UNKNOWN, detail="challenge does not match")
    return check_registration(
        cd,
        attestation_object,
        client_data_json,
        rp_id_hash_cached(rp_id),
        origins,
        user_verification_required,
        allow_cross_origin,
        top_origins,
        attestation,
        load_roots(trusted_roots),
        DEFAULT_ALGORITHMS if algorithms is None else algorithms,
        credential_id,
        now,
    )


def check_registration(
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
    refused = check_client_data(cd, origins, allow_cross_origin, top_origins)
    if refused is not None:
        return RegistrationVerdict(False, refused.reason, detail=refused.detail)
    try:
        ao = AttestationObject(bytes(attestation_object))
        ad = ao.auth_data
        fmt, stmt = ao.fmt, ao.att_stmt
        if not isinstance(fmt, str) or not isinstance(stmt, dict):
            raise TypeError("fmt/attStmt")
        flags, count = validate_authenticator_data(ad)
    except Exception as exc:  # python-fido2's parser of untrusted CBOR raises anything
        return RegistrationVerdict(False, MALFORMED, detail=f"attestation object: {exc}"[:200])
    if not hmac.compare_digest(ad.rp_id_hash, rp_id_hash):
        return RegistrationVerdict(False, BAD_RP_ID, detail="rpIdHash does not match the RP ID")
    refused = check_flags(flags, count, uv_required)
    if refused is not None:
        return RegistrationVerdict(False, refused.reason, detail=refused.detail)
    acd = ad.credential_data
    if acd is None:
        return RegistrationVerdict(False, MALFORMED, detail="no attested credential data")
    cred_id = bytes(acd.credential_id)
    if not 1 <= len(cred_id) <= MAX_CREDENTIAL_ID:
        return RegistrationVerdict(False, MALFORMED, detail="credential ID length")
    if credential_id is not None and not hmac.compare_digest(credential_id, cred_id):
        return RegistrationVerdict(False, MALFORMED, detail="rawId is not the attested ID")
    cose = cbor.encode(acd.public_key)
    try:
        key = cached_public_key(cose)
    except DecodeError as exc:
        return RegistrationVerdict(False, key_reason(exc), detail=str(exc))
    if key.algorithm not in algorithms:
        return RegistrationVerdict(
            False, UNSUPPORTED_ALGORITHM, detail=f"algorithm {key.algorithm} not allowed"
        )
    reason, att_type, detail = verify_attestation(
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
            user_verified=bool(flags & UV),
            backup_eligible=bool(flags & BE),
            backup_state=bool(flags & BS),
            attestation_format=fmt,
            attestation_type=att_type,
        ),
    )
