"""The WebAuthn Level 3 specification's test vectors (§16) through eapkit's public API.

Each case is a registration and an authentication ceremony made by the specification's
generator; the verifier must accept both, extract the credential the specification names,
and refuse each vector once a single input is changed.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fido2.cose import CoseKey
from fido2.webauthn import AttestationObject

from eapkit.testing.soft_authenticator import make_attestation_chain
from eapkit.verify.webauthn import (
    BAD_ORIGIN,
    BAD_RP_ID,
    BAD_SIGNATURE,
    CHALLENGE_UNKNOWN,
    MALFORMED,
    OK,
    UV_REQUIRED,
    RegistrationVerdict,
    verify_assertion,
    verify_registration,
)
from tests.vectorlib import Case, hexbytes, ids, load

CASES = load("webauthn_l3")
NOW = time.time()


def _cross_origin(case: Case) -> bool:
    return "crossOrigin" in case["name"] or "topOrigin" in case["name"]


def _register(
    case: Case, policy: str = "none", roots: list[bytes] | None = None, **kw: Any
) -> RegistrationVerdict:
    reg = case["registration"]
    args: dict[str, Any] = {
        "attestation_object": hexbytes(reg["attestation_object"]),
        "client_data_json": hexbytes(reg["client_data_json"]),
        "rp_id": case["rp_id"],
        "origin": case["origin"],
        "challenge": hexbytes(reg["challenge"]),
        "allow_cross_origin": _cross_origin(case),
        "attestation": policy,
        "trusted_roots": [hexbytes(case["attestation_root"])] if roots is None else roots,
        "credential_id": hexbytes(case["credential_id"]),
        "now": NOW,
    }
    args.update(kw)
    return verify_registration(**args)


def _assertion_args(case: Case) -> dict[str, Any]:
    reg = _register(case)
    assert reg.credential is not None
    auth = case["authentication"]
    return {
        "credential_public_key": reg.credential.public_key,
        "authenticator_data": hexbytes(auth["authenticator_data"]),
        "client_data_json": hexbytes(auth["client_data_json"]),
        "signature": hexbytes(auth["signature"]),
        "rp_id": case["rp_id"],
        "origin": case["origin"],
        "challenge": hexbytes(auth["challenge"]),
        "allow_cross_origin": _cross_origin(case),
    }


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_registration_extracts_the_specified_credential(case: Case) -> None:
    v = _register(case)
    assert v.ok, v
    cred = v.credential
    assert cred is not None
    assert cred.credential_id == hexbytes(case["credential_id"])
    assert cred.aaguid == hexbytes(case["aaguid"])
    assert cred.attestation_format == case["attestation_format"]
    assert cred.sign_count == 0
    # independent oracle: python-fido2's own parse of the attestation object
    ao = AttestationObject(hexbytes(case["registration"]["attestation_object"]))
    assert ao.auth_data.credential_data is not None
    fido_key = CoseKey.parse(ao.auth_data.credential_data.public_key)
    assert cred.algorithm == fido_key.ALGORITHM


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_assertion_verifies(case: Case) -> None:
    v = verify_assertion(**_assertion_args(case))
    assert v == v._replace(ok=True, reason=OK, sign_count=0), v
    flags = hexbytes(case["authentication"]["authenticator_data"])[32]
    assert v.user_verified == bool(flags & 0x04)
    assert v.backup_eligible == bool(flags & 0x08)
    assert v.backup_state == bool(flags & 0x10)


# What python-fido2's attestation verifiers conclude for each specification vector.
# "tpm": the specification's generator fills TPMS_CLOCK_INFO.safe with 0x33, and
# python-fido2 (correctly, TPMI_YES_NO is 0 or 1) refuses the certInfo; "android-key":
# python-fido2 has no verifier for that format.
SELF = {
    "none": ("untrusted_attestation", None),
    "packed-self": ("ok", "self"),
    "packed": ("ok", "basic"),
    "tpm": ("bad_attestation", None),
    "android-key": ("unsupported_attestation", None),
    "apple": ("ok", "anonca"),
    "fido-u2f": ("ok", "basic"),
}


def _family(case: Case) -> str:
    name = str(case["name"])
    if name.startswith("none"):
        return "none"
    return next(k for k in SELF if k != "none" and name.startswith(k + "-"))


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_attestation_policy_self(case: Case) -> None:
    reason, att_type = SELF[_family(case)]
    v = _register(case, "self")
    assert v.reason == reason, v
    assert (v.credential.attestation_type if v.credential else None) == att_type


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_attestation_policy_trusted_root(case: Case) -> None:
    reason, att_type = SELF[_family(case)]
    if att_type == "self":  # self attestation has no chain to any root
        reason, att_type = "untrusted_attestation", None
    v = _register(case, "trusted")
    assert v.reason == reason, v
    assert (v.credential.attestation_type if v.credential else None) == att_type


CHAINED = [c for c in CASES if SELF[_family(c)][1] in ("basic", "anonca")]


@pytest.mark.parametrize("case", CHAINED, ids=ids(CHAINED))
def test_attestation_chain_to_another_root_is_untrusted(case: Case) -> None:
    other = make_attestation_chain().root_der
    v = _register(case, "trusted", roots=[other])
    assert (v.reason, v.detail) == (
        "untrusted_attestation",
        "no trusted root for the attestation chain",
    )
    # the specification's certificates are valid from 2024-01-01 only
    v = _register(case, "trusted", now=1_600_000_000.0)
    assert (v.reason, v.detail) == (
        "untrusted_attestation",
        "attestation certificate not valid now",
    )


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_registration_refusals(case: Case) -> None:
    assert _register(case, rp_id="example.com").reason == BAD_RP_ID
    assert _register(case, origin="https://example.com").reason == BAD_ORIGIN
    assert _register(case, challenge=b"\x00" * 32).reason == CHALLENGE_UNKNOWN
    assert _register(case, credential_id=b"\x01" * 32).reason == MALFORMED
    uv = _register(case, user_verification_required=True)
    auth_data = AttestationObject(hexbytes(case["registration"]["attestation_object"])).auth_data
    assert uv.ok == auth_data.is_user_verified()
    if not uv.ok:
        assert uv.reason == UV_REQUIRED


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_each_changed_input_is_refused(case: Case) -> None:
    good = _assertion_args(case)

    def check(expected: str, **change: Any) -> None:
        v = verify_assertion(**{**good, **change})
        assert (v.ok, v.reason) == (False, expected), (change, v)

    sig = bytearray(good["signature"])
    sig[len(sig) // 2] ^= 0x01
    check(BAD_SIGNATURE, signature=bytes(sig))
    ad = bytearray(good["authenticator_data"])
    ad[36] ^= 0x01  # the signature counter: covered by the signature
    check(BAD_SIGNATURE, authenticator_data=bytes(ad))
    check(BAD_RP_ID, rp_id="example.com")
    check(BAD_ORIGIN, origin="https://example.com")
    check(CHALLENGE_UNKNOWN, challenge=bytes(32))
    check(MALFORMED, client_data_json=good["client_data_json"][:-1])
    check(MALFORMED, authenticator_data=good["authenticator_data"][:36])
    if not ad[32] & 0x04:
        check(UV_REQUIRED, user_verification_required=True)
    # another specification credential's key does not verify this assertion
    other = next(c for c in CASES if c["name"] != case["name"])
    check(BAD_SIGNATURE, credential_public_key=_assertion_args(other)["credential_public_key"])


def test_cross_origin_vectors_need_permission() -> None:
    for case in CASES:
        if not _cross_origin(case):
            continue
        args = _assertion_args(case)
        v = verify_assertion(**{**args, "allow_cross_origin": False})
        assert v.reason == BAD_ORIGIN
        assert _register(case, allow_cross_origin=False).reason == BAD_ORIGIN


def test_top_origin_is_checked_when_a_list_is_given() -> None:
    (case,) = [c for c in CASES if c["name"].endswith("topOrigin")]
    args = _assertion_args(case)
    top = case["top_origin"]
    assert verify_assertion(**args, top_origins=[top]).ok
    v = verify_assertion(**args, top_origins=["https://other.example"])
    assert v.reason == BAD_ORIGIN
