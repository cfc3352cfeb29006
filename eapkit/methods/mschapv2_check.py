"""The MS-CHAPv2 authenticator's check (RFC 2759), one for every carrier of it.

Bare EAP-MSCHAPv2 (:mod:`eapkit.methods.mschapv2`, also PEAP's inner method) and
EAP-TTLS's inner MS-CHAP-V2 (RFC 5281 §11.2.4, in RFC 2548 AVPs) check a response the same
way and answer in the same words; only the framing around the words differs::

    check_nt_response(lookup, user, challenge, peer_challenge, name, nt_response)
      ok           -> success_message(authenticator_response(...), text)
                      "S=<40 hex> M=<text>"
      unknown_user,
      bad_password -> failure_message(691, retry, next challenge, 3, text)
                      "E=691 R=0 C=<32 hex> V=3 M=<text>"

An unknown user is checked against a stand-in hash (:mod:`eapkit.crypto.stand_in`)
through the same code, so the wire and the time do not say which users exist; the caller
sends the same failure for both reasons.

A directory that keeps no NT hash but can have the response checked where the hash is
(Active Directory: Samba's ``ntlm_auth --request-nt-key`` through winbind, as FreeRADIUS's
rlm_mschap does) answers the lookup with a :class:`DelegatedCheck`.  What every carrier
needs afterwards is PasswordHashHash (RFC 2759 §8.7, the "NT key"), not the hash itself:
the authenticator response (§8.7) and the MPPE master key (RFC 3079 §3.4) are derived
from it, so :class:`NtResponseCheck` carries it either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from eapkit.crypto.mschap import NT_HASH_LEN, authenticator_response_digest, nt_hash_keys
from eapkit.crypto.stand_in import stand_in_secret
from eapkit.errors import ConfigError

__all__ = [
    "DelegatedCheck",
    "NtHashLookup",
    "NtResponseCheck",
    "authenticator_response",
    "check_nt_response",
    "failure_message",
    "success_message",
]


@dataclass(frozen=True, slots=True)
class NtResponseCheck:
    """The result of :func:`check_nt_response`: ``reason`` is ``ok``, ``unknown_user`` or
    ``bad_password`` (a :class:`DelegatedCheck` may say more: ``account_disabled``,
    ``directory_unavailable``, ...).  When the response is right, ``nt_hash_hash`` is
    PasswordHashHash (RFC 2759 §8.4, 16 bytes) and ``nt_hash`` the stored hash (None
    when the check was delegated: no hash was here)."""

    reason: str
    nt_hash: bytes | None = field(default=None, repr=False)
    nt_hash_hash: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.nt_hash_hash is not None


@dataclass(frozen=True, slots=True)
class DelegatedCheck:
    """The user's NT hash is not here: ``verify(authenticator_challenge, peer_challenge,
    name, nt_response)`` has the account's own directory check the NT-Response (RFC 2759
    §8.1) and answers with its :class:`NtResponseCheck`, PasswordHashHash included."""

    verify: Callable[[bytes, bytes, bytes, bytes], NtResponseCheck] = field(repr=False)


class NtHashLookup(Protocol):
    """The user's NT hash (16 bytes, RFC 2759 §8.3), a :class:`DelegatedCheck`, or
    ``None`` for an unknown user.

    ``user`` is the EAP Identity as the peer sent it, any ``DOMAIN\\`` prefix included;
    the MS-CHAPv2 Name must equal it, domains aside."""

    def __call__(self, user: str) -> bytes | DelegatedCheck | None: ...


def check_nt_response(
    lookup: NtHashLookup,
    user: str,
    authenticator_challenge: bytes,
    peer_challenge: bytes,
    name: bytes,
    nt_response: bytes,
) -> NtResponseCheck:
    """RFC 2759 §8.1: is ``nt_response`` the one ``user``'s NT hash gives over the two
    challenges and ``name`` (the user name the peer hashed)?  Raises
    :class:`~eapkit.errors.ConfigError` when ``lookup`` returns something not 16 bytes.
    A :class:`DelegatedCheck` answers for itself."""
    stored = lookup(user)
    if isinstance(stored, DelegatedCheck):
        return stored.verify(authenticator_challenge, peer_challenge, name, nt_response)
    stand_in = stand_in_secret(user, NT_HASH_LEN)  # computed either way: same work
    if stored is not None and len(stored) != NT_HASH_LEN:
        raise ConfigError("the NT hash lookup returned a value that is not 16 bytes")
    keys = nt_hash_keys(stand_in if stored is None else stored)
    valid = keys.verify_nt_response(authenticator_challenge, peer_challenge, name, nt_response)
    if stored is None:
        return NtResponseCheck("unknown_user")
    if not valid:
        return NtResponseCheck("bad_password")
    return NtResponseCheck("ok", stored, keys.nt_hash_hash)


def authenticator_response(
    nt_hash_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    name: bytes,
) -> bytes:
    """RFC 2759 §8.7 GenerateAuthenticatorResponse, 20 bytes, from PasswordHashHash
    (:attr:`NtResponseCheck.nt_hash_hash`): the proof that the authenticator knows the
    password too."""
    return authenticator_response_digest(
        nt_hash_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        name,
    )


def success_message(authenticator_response: bytes, message: str = "") -> bytes:
    """RFC 2759 §5: the Success packet's Message, ``S=<40 uppercase hex> M=<text>``
    (`` M=`` left out without a text)."""
    text = "S=" + authenticator_response.hex().upper()
    if message:
        text += " M=" + message
    return text.encode("utf-8")


def failure_message(
    error: int,
    retry: bool,
    challenge: bytes | None,
    version: int | None = 3,
    message: str = "",
) -> bytes:
    """RFC 2759 §6: the Failure packet's Message, ``E=<error> R=<0|1> C=<32 hex> V=<version>
    M=<text>``; ``C``, ``V`` and ``M`` are left out when not given."""
    text = f"E={error} R={int(retry)}"
    if challenge is not None:
        text += " C=" + challenge.hex().upper()
    if version is not None:
        text += f" V={version}"
    if message:
        text += " M=" + message
    return text.encode("utf-8")
