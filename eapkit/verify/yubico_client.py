"""YubiKey OTPs checked by a validation service (YubiCloud or a self-hosted one).

Where :class:`~eapkit.verify.yubico.YubicoVerifier` validates OTPs locally with the
keys' AES secrets, this check asks a server that speaks Yubico's validation protocol
2.0 (YubiCloud, yubikey-val, or :mod:`eapkit.verify.yubico_server`), through the
``yubico-client`` package (the ``[yubico]`` extra): it builds and signs the request,
and checks the response's signature and that it echoes our OTP and nonce.  The answer
speaks the same vocabulary as the local verifier (:class:`OtpVerdict`):

==============================================  ===========================
protocol status                                 reason
==============================================  ===========================
OK                                              ``ok``
BAD_OTP                                         ``bad_code``
REPLAYED_OTP, REPLAYED_REQUEST                  ``replayed``
BAD_SIGNATURE, MISSING_PARAMETER,               ``store_unavailable``
NO_SUCH_CLIENT, OPERATION_NOT_ALLOWED,          (the service cannot answer
BACKEND_ERROR, NOT_ENOUGH_ANSWERS, no answer,   for us: fail closed; the
a bad response signature or echo                detail names the status)
==============================================  ===========================

A validation service accepts every YubiKey it knows, so the binding of keys to users
stays here: ``public_ids(user)`` names the public ids enrolled for a user, and an OTP
of another key is ``bad_code`` without asking the service (which would burn it).  A
malformed OTP is ``malformed``, also without a request.

This is the one verifier that does I/O (blocking HTTP, ``timeout`` seconds per
server, servers tried in order while they fail to answer); call it from a thread
when the server is asyncio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

from eapkit.credentials import Verdict
from eapkit.errors import DecodeError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.verify.verdict import (
    BAD_CODE,
    MALFORMED,
    OK,
    REPLAYED,
    STORE_UNAVAILABLE,
    UNKNOWN_USER,
    OtpVerdict,
)
from eapkit.verify.yubico import split_otp

__all__ = ["STATUS_REASONS", "YUBICLOUD", "YubicoServiceCheck"]

YUBICLOUD = ("https://api.yubico.com/wsapi/2.0/verify",)

STATUS_REASONS = {
    "OK": OK,
    "BAD_OTP": BAD_CODE,
    "REPLAYED_OTP": REPLAYED,
    "REPLAYED_REQUEST": REPLAYED,
}
# Statuses after which another server of the list may still answer.
_TRY_NEXT = frozenset({"BACKEND_ERROR", "NOT_ENOUGH_ANSWERS"})
_STATUS = re.compile(r"(?m)^status=([A-Z0-9_]+)\s*$")


class YubicoServiceCheck:
    """A YubiKey OTP check against a validation service.

    ``client_id`` and ``api_key`` (base64, as Yubico hands it out) identify us to the
    service; without ``api_key`` requests are unsigned and responses are not checked
    (only for a service reached over verified HTTPS).  ``sl`` and ``timeout`` are sent
    as the protocol's sync level and timeout.
    """

    def __init__(
        self,
        client_id: int | str,
        api_key: str | None,
        *,
        public_ids: Callable[[str], Collection[str]] | None = None,
        api_urls: Sequence[str] = YUBICLOUD,
        timeout: int = 10,
        sl: int | str | None = None,
        verify_cert: bool = True,
        ca_bundle: str | None = None,
        rand: RandomSource = SYSTEM_RANDOM,
    ) -> None:
        from yubico_client import Yubico  # the [yubico] extra

        self._client: Any = Yubico(
            str(client_id),
            api_key,
            verify_cert=verify_cert,
            api_urls=tuple(api_urls),
            ca_certs_bundle_path=ca_bundle,
            max_retries=1,
        )
        self.public_ids = public_ids
        self.timeout = timeout
        self.sl = sl
        self._rand = rand

    def verify(self, user: str | None, otp: str, now: float) -> OtpVerdict:
        """Ask the service about ``otp``; ``user`` None skips the key-to-user binding.
        Never raises for bad input or a failing service."""
        text = otp.strip()
        try:
            public, _ = split_otp(text)
        except DecodeError as exc:
            return OtpVerdict(False, MALFORMED, user=user, detail=exc.reason)
        if user is not None and self.public_ids is not None:
            owned = {p.lower() for p in self.public_ids(user)}
            if not owned:
                return OtpVerdict(False, UNKNOWN_USER, user=user, detail="no YubiKey enrolled")
            if public not in owned:
                return OtpVerdict(False, BAD_CODE, user=user, detail="key enrolled to another user")
        text = text.lower()  # modhex; the service echoes what we send
        detail = "no validation server answered"
        for url in self._client.api_urls:
            status, params, detail = self._ask(url, text)
            if status is None or status in _TRY_NEXT:
                continue
            reason = STATUS_REASONS.get(status)
            if reason is None:
                return OtpVerdict(False, STORE_UNAVAILABLE, user=user, detail=f"service: {status}")
            if reason != OK:
                return OtpVerdict(False, reason, user=user, detail=f"service: {status}")
            return OtpVerdict(True, OK, _pair(params), user)
        return OtpVerdict(False, STORE_UNAVAILABLE, user=user, detail=detail)

    def __call__(self, user: str, response: str, now: float, /) -> Verdict:
        """The :class:`~eapkit.credentials.ResponseCheck` form (for GTC/PAP wiring)."""
        return self.verify(user, response, now).to_verdict()

    def _ask(self, url: str, otp: str) -> tuple[str | None, dict[str, str], str]:
        """One server: (status or None, the response's pairs, detail)."""
        from yubico_client.yubico import URLThread
        from yubico_client.yubico_exceptions import (
            InvalidClientIdError,
            InvalidValidationResponse,
            SignatureVerificationError,
            StatusCodeError,
        )

        client = self._client
        nonce = self._rand.random_bytes(16).hex()  # 32 characters, within 16..40
        query = client.generate_query_string(otp, nonce, True, self.sl, self.timeout)
        # The library's own transport, run in this thread (its verify() spawns one per
        # server and folds most statuses into one exception).
        fetch = URLThread(
            url=f"{url}?{query}",
            timeout=self.timeout,
            verify_cert=client.verify_cert,
            ca_bundle_path=client._get_ca_bundle_path(),
            max_retries=1,
        )
        fetch.run()
        body = fetch.response
        if not isinstance(body, str):
            return None, {}, f"no answer from {url}"
        found = _STATUS.findall(body)
        if len(found) != 1:
            return None, {}, f"no single status from {url}"
        status: str = found[0]
        try:
            # Checks the signature (when we have a key), then the OTP and nonce echo.
            client.verify_response(body, otp, nonce, return_response=True)
        except SignatureVerificationError:
            return None, {}, f"response signature mismatch from {url}"
        except InvalidValidationResponse:
            return None, {}, f"response from {url} does not echo our request"
        except (InvalidClientIdError, StatusCodeError):
            pass  # NO_SUCH_CLIENT, REPLAYED_OTP: signature checked, status known
        _, line = client.parse_parameters_from_response(body)
        params: dict[str, str] = client.get_parameters_as_dictionary(line)
        if status == "OK" and (params.get("otp") != otp or params.get("nonce") != nonce):
            # The library checks the echo only when present; the protocol requires it.
            return None, {}, f"response from {url} does not echo our request"
        return status, params, f"service: {status}"


def _pair(params: dict[str, str]) -> int | None:
    """(usage, session) as ``usage << 8 | session`` when the service told us."""
    try:
        return int(params["sessioncounter"]) << 8 | int(params["sessionuse"])
    except (KeyError, ValueError):
        return None
