"""Assertions (WebAuthn L3 §7.2): the checks of one ``navigator.credentials.get()`` answer
against a known credential, and :class:`WebAuthnVerdict`, their outcome."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from typing import Any, Final, NamedTuple

from eapkit.credentials import Verdict
from eapkit.errors import DecodeError
from eapkit.verify.verdict import (
    BAD_ORIGIN,
    BAD_RP_ID,
    BAD_SIGNATURE,
    CHALLENGE_UNKNOWN,
    MALFORMED,
    OK,
    USER_NOT_PRESENT,
    UV_REQUIRED,
)
from eapkit.verify.webauthn.authenticator_data import (
    BE,
    BS,
    UP,
    UV,
    rp_id_hash_cached,
    validate_authenticator_data,
)
from eapkit.verify.webauthn.client_data import GET, ClientData, parse_client_data
from eapkit.verify.webauthn.cose import CredentialPublicKey, cached_public_key, key_reason

__all__ = [
    "WebAuthnVerdict",
    "accept",
    "check_assertion",
    "check_client_data",
    "check_flags",
    "refuse",
    "verify_assertion",
]


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


def refuse(reason: str, detail: str = "", **fields: Any) -> WebAuthnVerdict:
    return WebAuthnVerdict(False, reason, detail=detail, **fields)


def check_client_data(
    cd: ClientData,
    origins: Collection[str],
    allow_cross_origin: bool,
    top_origins: Collection[str] | None,
) -> WebAuthnVerdict | None:
    if cd.origin not in origins:
        return refuse(BAD_ORIGIN, "origin not allowed")
    if cd.cross_origin and not allow_cross_origin:
        return refuse(BAD_ORIGIN, "cross-origin use not allowed")
    if cd.top_origin is not None:
        if not allow_cross_origin:
            return refuse(BAD_ORIGIN, "topOrigin present but cross-origin use not allowed")
        if top_origins is not None and cd.top_origin not in top_origins:
            return refuse(BAD_ORIGIN, "topOrigin not allowed")
    return None


def check_flags(flags: int, count: int, uv_required: bool) -> WebAuthnVerdict | None:
    if not flags & UP:
        return refuse(USER_NOT_PRESENT, "UP flag not set", sign_count=count)
    if uv_required and not flags & UV:
        return refuse(UV_REQUIRED, "UV flag not set", sign_count=count)
    return None


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
        return refuse(key_reason(exc), str(exc))
    try:
        cd = parse_client_data(client_data_json)
    except DecodeError as exc:
        return refuse(MALFORMED, str(exc))
    if cd.type != GET:
        return refuse(MALFORMED, "clientDataJSON type is not webauthn.get")
    if not hmac.compare_digest(cd.challenge, challenge):
        return refuse(CHALLENGE_UNKNOWN, "challenge does not match the one issued")
    try:
        flags, count = validate_authenticator_data(authenticator_data)
    except DecodeError as exc:
        return refuse(MALFORMED, str(exc))
    refused = check_assertion(
        key,
        cd,
        authenticator_data,
        flags,
        count,
        client_data_json,
        signature,
        rp_id_hash_cached(rp_id),
        (origin,),
        user_verification_required,
        allow_cross_origin,
        top_origins,
    )
    return refused or accept(flags, count)


def accept(
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
            bool(flags & UV),
            bool(flags & BE),
            bool(flags & BS),
            False,
            "",
        ),
    )


_new_tuple: Final = tuple.__new__


def check_assertion(
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
    refused = check_client_data(cd, origins, allow_cross_origin, top_origins)
    if refused is not None:
        return refused
    if not hmac.compare_digest(authenticator_data[:32], rp_id_hash):
        return refuse(BAD_RP_ID, "rpIdHash does not match the RP ID", sign_count=count)
    refused = check_flags(flags, count, uv_required)
    if refused is not None:
        return refused
    signed = bytes(authenticator_data) + hashlib.sha256(client_data_json).digest()
    if not key.verify(bytes(signature), signed):
        return refuse(BAD_SIGNATURE, "signature does not verify", sign_count=count)
    return None
