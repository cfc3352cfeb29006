"""Second-factor verifiers: TOTP/HOTP (:mod:`eapkit.verify.otp`), YubiKey OTP
(:mod:`eapkit.verify.yubico`, the validation protocol's two roles in
:mod:`~eapkit.verify.yubico_client` and :mod:`~eapkit.verify.yubico_server`) and
WebAuthn (the :mod:`eapkit.verify.webauthn` package), sans-I/O apart from the injected
store: nothing here opens a socket.

Every verifier answers with an :class:`~eapkit.verify.verdict.OtpVerdict` (reason code
and what matched) and raises only for programming errors.
"""

from __future__ import annotations

from eapkit.verify.verdict import OtpVerdict

__all__ = ["OtpVerdict"]
