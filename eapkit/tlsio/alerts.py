"""TLS alert names (RFC 8446 §6, IANA "TLS Alerts") and why a handshake failed.

The reason a failed EAP-TLS conversation reports is the name of the TLS alert that
ended it (``unknown_ca``, ``certificate_expired``, ...): the alert this side sent when
it found the problem, or the alert the other side sent.  OpenSSL picks the alert
from the certificate verification error (``ssl_x509err2alert``), so the names below
are the vocabulary callers see in :attr:`eapkit.methods.base.Outcome.reason`.
"""

from __future__ import annotations

__all__ = ["ALERT_NAMES", "alert_name"]

ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}


def alert_name(description: int) -> str:
    """The registry name of an AlertDescription, or ``alert_<n>`` for unknown codes."""
    return ALERT_NAMES.get(description, f"alert_{description}")
