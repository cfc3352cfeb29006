"""The answer of a second-factor verifier: a reason code and what matched.

A :class:`OtpVerdict` is a small immutable tuple (cheap to build on the hot path) that
speaks the reason vocabulary of :class:`eapkit.credentials.Verdict` (DESIGN.md,
"Errors"): verifiers return one for every input and raise only for programming errors.

The reason codes below are the whole vocabulary of the verifiers: the OTP ones first,
then those only WebAuthn (W3C Web Authentication Level 3, §7) gives.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from eapkit.credentials import Verdict
from eapkit.store.base import StoreUnavailable
from eapkit.store.records import RECORD_NOT_SEALED

__all__ = [
    "BAD_ATTESTATION",
    "BAD_CODE",
    "BAD_ORIGIN",
    "BAD_RP_ID",
    "BAD_SIGNATURE",
    "CHALLENGE_EXPIRED",
    "CHALLENGE_UNKNOWN",
    "COUNTER_REGRESSED",
    "CREDENTIAL_EXISTS",
    "LOCKED_OUT",
    "MALFORMED",
    "OK",
    "REPLAYED",
    "STORE_UNAVAILABLE",
    "UNKNOWN_CREDENTIAL",
    "UNKNOWN_USER",
    "UNSUPPORTED_ALGORITHM",
    "UNSUPPORTED_ATTESTATION",
    "UNTRUSTED_ATTESTATION",
    "USER_NOT_PRESENT",
    "UV_REQUIRED",
    "OtpVerdict",
]

OK: Final = "ok"
BAD_CODE: Final = "bad_code"
REPLAYED: Final = "replayed"
LOCKED_OUT: Final = "locked_out"
UNKNOWN_USER: Final = "unknown_user"
STORE_UNAVAILABLE: Final = "store_unavailable"
MALFORMED: Final = "malformed"

# WebAuthn (REPLAYED there: the challenge was already used)
BAD_SIGNATURE: Final = "bad_signature"
BAD_ORIGIN: Final = "bad_origin"  # origin not allowed, or cross-origin use not allowed
BAD_RP_ID: Final = "bad_rp_id"  # rpIdHash is not SHA-256 of our RP ID
CHALLENGE_UNKNOWN: Final = "challenge_unknown"  # not a challenge we issued (or hold)
CHALLENGE_EXPIRED: Final = "challenge_expired"
USER_NOT_PRESENT: Final = "user_not_present"
UV_REQUIRED: Final = "uv_required"
UNKNOWN_CREDENTIAL: Final = "unknown_credential"
COUNTER_REGRESSED: Final = "counter_regressed"  # possible cloned authenticator
UNSUPPORTED_ALGORITHM: Final = "unsupported_algorithm"
BAD_ATTESTATION: Final = "bad_attestation"  # the statement does not verify
UNTRUSTED_ATTESTATION: Final = "untrusted_attestation"  # verifies, but policy refuses it
UNSUPPORTED_ATTESTATION: Final = "unsupported_attestation"  # a format we cannot verify
CREDENTIAL_EXISTS: Final = "credential_exists"


class UnsealedRecord(StoreUnavailable):
    """A user's record holds its secret in the clear although sealing keys are
    configured (:class:`~eapkit.store.records.RecordNotSealed`): refused like a store
    that cannot answer (fail closed), but reported as ``record_not_sealed``."""

    reason = RECORD_NOT_SEALED


def store_refusal(exc: StoreUnavailable) -> str:
    """The reason a verdict gives for ``exc``: ``record_not_sealed`` or
    ``store_unavailable``."""
    return RECORD_NOT_SEALED if isinstance(exc, UnsealedRecord) else STORE_UNAVAILABLE


class OtpVerdict(NamedTuple):
    """One verification's outcome.

    ``step`` is what matched: the TOTP time step, the HOTP counter, or the YubiKey
    (usage, session) pair as ``usage << 8 | session``.  ``drift`` is the TOTP offset
    (matched step minus the clock's step) now recorded for the credential.
    ``retry_after`` (seconds) is set for ``locked_out``, and for the ``bad_code`` that
    started a lockout.  ``detail`` explains ``malformed`` and ``store_unavailable`` and
    never contains a secret.
    """

    ok: bool
    reason: str
    step: int | None = None
    user: str | None = None
    drift: int | None = None
    retry_after: float | None = None
    detail: str = ""

    def to_verdict(self) -> Verdict:
        """The same answer as the generic :class:`~eapkit.credentials.Verdict`."""
        if self.ok:
            return Verdict.accept(self.user)
        return Verdict(False, self.reason, self.user, self.detail)
