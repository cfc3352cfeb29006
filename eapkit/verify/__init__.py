"""Second-factor verifiers: TOTP/HOTP (:mod:`eapkit.verify.otp`) and YubiKey OTP
(:mod:`eapkit.verify.yubico`), sans-I/O apart from the injected store.

Every verifier answers with an :class:`~eapkit.verify.verdict.OtpVerdict` (reason code
and what matched) and raises only for programming errors.
"""

from __future__ import annotations

from eapkit.verify.verdict import OtpVerdict

__all__ = ["OtpVerdict"]
