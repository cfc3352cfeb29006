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

The package, one module per concept (as python-fido2 is laid out):

- :mod:`~eapkit.verify.webauthn.base64url`: the JSON encoding of binary members;
- :mod:`~eapkit.verify.webauthn.cbor`: the strict CBOR reader for COSE keys;
- :mod:`~eapkit.verify.webauthn.cose`: credential public keys and algorithms;
- :mod:`~eapkit.verify.webauthn.client_data`: ``clientDataJSON`` (§5.8.1);
- :mod:`~eapkit.verify.webauthn.authenticator_data`: flags and counter (§6.1);
- :mod:`~eapkit.verify.webauthn.assertion`: the checks of §7.2, :class:`WebAuthnVerdict`;
- :mod:`~eapkit.verify.webauthn.attestation`: attestation statements under a policy;
- :mod:`~eapkit.verify.webauthn.registration`: the checks of §7.1;
- :mod:`~eapkit.verify.webauthn.records`: credential records and challenge tokens;
- :mod:`~eapkit.verify.webauthn.credential_json`: ``PublicKeyCredential`` JSON (§5.1.8);
- :mod:`~eapkit.verify.webauthn.verifier`: :class:`WebAuthnVerifier`, on the store.

Reason codes come from :mod:`eapkit.verify.verdict`, shared with the OTP verifiers.
"""

from __future__ import annotations

from eapkit.verify.verdict import (
    BAD_ATTESTATION,
    BAD_ORIGIN,
    BAD_RP_ID,
    BAD_SIGNATURE,
    CHALLENGE_EXPIRED,
    CHALLENGE_UNKNOWN,
    COUNTER_REGRESSED,
    CREDENTIAL_EXISTS,
    MALFORMED,
    OK,
    REPLAYED,
    STORE_UNAVAILABLE,
    UNKNOWN_CREDENTIAL,
    UNSUPPORTED_ALGORITHM,
    UNSUPPORTED_ATTESTATION,
    UNTRUSTED_ATTESTATION,
    USER_NOT_PRESENT,
    UV_REQUIRED,
)
from eapkit.verify.webauthn.assertion import WebAuthnVerdict, verify_assertion
from eapkit.verify.webauthn.attestation import AttestationPolicy
from eapkit.verify.webauthn.base64url import b64url_decode, b64url_encode
from eapkit.verify.webauthn.cbor import decode_cose_key_map
from eapkit.verify.webauthn.client_data import ClientData, parse_client_data
from eapkit.verify.webauthn.cose import (
    DEFAULT_ALGORITHMS,
    CredentialPublicKey,
    UnsupportedAlgorithm,
    cached_public_key,
    parse_credential_public_key,
)
from eapkit.verify.webauthn.records import StoredCredential
from eapkit.verify.webauthn.registration import (
    AttestedCredential,
    RegistrationVerdict,
    verify_registration,
)
from eapkit.verify.webauthn.verifier import ResidentKey, UserVerification, WebAuthnVerifier

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
    "AttestationPolicy",
    "AttestedCredential",
    "ClientData",
    "CredentialPublicKey",
    "RegistrationVerdict",
    "ResidentKey",
    "StoredCredential",
    "UnsupportedAlgorithm",
    "UserVerification",
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
