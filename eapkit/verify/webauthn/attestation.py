"""Attestation statements under a policy (WebAuthn L3 §7.1 steps 19-21, §8): python-fido2
verifies the statement; the policy decides whether its type and chain are enough."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.attestation.base import (
    Attestation,
    AttestationType,
    InvalidData,
    UnsupportedAttestation,
    UnsupportedType,
    verify_x509_chain,
)
from fido2.attestation.base import InvalidSignature as AttestationBadSignature
from fido2.webauthn import AttestationObject

from eapkit.verify.verdict import (
    BAD_ATTESTATION,
    UNSUPPORTED_ATTESTATION,
    UNTRUSTED_ATTESTATION,
)

__all__ = ["AttestationPolicy", "load_roots", "verify_attestation"]

AttestationPolicy = Literal["none", "self", "trusted"]
_DER: Final = Encoding.DER
_ATTESTATION_TYPE_NAMES: Final = {
    AttestationType.NONE: "none",
    AttestationType.SELF: "self",
    AttestationType.BASIC: "basic",
    AttestationType.ATT_CA: "attca",
    AttestationType.ANON_CA: "anonca",
}


def load_roots(roots: Iterable[bytes | x509.Certificate]) -> tuple[x509.Certificate, ...]:
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


def verify_attestation(
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
