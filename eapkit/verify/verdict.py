"""The answer of a second-factor verifier: a reason code and what matched.

A :class:`OtpVerdict` is a small immutable tuple (cheap to build on the hot path) that
speaks the reason vocabulary of :class:`eapkit.credentials.Verdict` (DESIGN.md,
"Errors"): verifiers return one for every input and raise only for programming errors.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from eapkit.credentials import Verdict

__all__ = [
    "BAD_CODE",
    "LOCKED_OUT",
    "MALFORMED",
    "OK",
    "REPLAYED",
    "STORE_UNAVAILABLE",
    "UNKNOWN_USER",
    "OtpVerdict",
]

OK: Final = "ok"
BAD_CODE: Final = "bad_code"
REPLAYED: Final = "replayed"
LOCKED_OUT: Final = "locked_out"
UNKNOWN_USER: Final = "unknown_user"
STORE_UNAVAILABLE: Final = "store_unavailable"
MALFORMED: Final = "malformed"


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
