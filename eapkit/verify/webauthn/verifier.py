"""The stateful relying party (WebAuthn L3 §7): challenges, credentials and signature
counters on a shared :class:`~eapkit.store.base.Store`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Literal, NamedTuple

from cryptography import x509

from eapkit.errors import ConfigError, DecodeError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable
from eapkit.verify.verdict import (
    CHALLENGE_EXPIRED,
    CHALLENGE_UNKNOWN,
    COUNTER_REGRESSED,
    CREDENTIAL_EXISTS,
    MALFORMED,
    OK,
    REPLAYED,
    STORE_UNAVAILABLE,
    UNKNOWN_CREDENTIAL,
)
from eapkit.verify.webauthn.assertion import WebAuthnVerdict, accept, check_assertion, refuse
from eapkit.verify.webauthn.attestation import AttestationPolicy, load_roots
from eapkit.verify.webauthn.authenticator_data import rp_id_hash, validate_authenticator_data
from eapkit.verify.webauthn.base64url import b64url_decode, b64url_encode
from eapkit.verify.webauthn.client_data import CREATE, GET, ClientData, parse_client_data
from eapkit.verify.webauthn.cose import (
    DEFAULT_ALGORITHMS,
    CredentialPublicKey,
    cached_public_key,
)
from eapkit.verify.webauthn.credential_json import as_mapping, parse_assertion, parse_raw_id
from eapkit.verify.webauthn.records import (
    Ceremony,
    StoredCredential,
    decode_ceremony,
    encode_ceremony,
)
from eapkit.verify.webauthn.registration import RegistrationVerdict, check_registration

__all__ = ["ResidentKey", "UserVerification", "WebAuthnVerifier"]

UserVerification = Literal["required", "preferred", "discouraged"]
ResidentKey = Literal["required", "preferred", "discouraged"]

_MAX_CHALLENGE: Final = 64  # we issue 32 bytes; anything longer was never ours


class _Cached(NamedTuple):
    cred: StoredCredential
    key: CredentialPublicKey


class WebAuthnVerifier:
    """A WebAuthn relying party on a shared :class:`~eapkit.store.base.Store`.

    ``origins`` are the exact origins pages run on (``https://login.example.org``);
    ``rp_id`` is the RP ID (a registrable suffix of their hosts, §5.1.4.1).
    ``user_verification`` is the default UV policy (``required`` refuses assertions
    without UV); ``attestation`` the attestation policy for registrations (``none`` /
    ``self`` / ``trusted`` with ``trusted_roots``).  Challenges live ``timeout`` seconds;
    an expired one is still recognised (``challenge_expired``) for ``grace`` seconds more,
    and a used one (``replayed``) as long.  Store keys start with ``namespace``.

    ``begin_*`` return the options JSON for the browser and may raise
    :class:`~eapkit.store.base.StoreUnavailable`; ``finish_*`` return a verdict and never
    raise for anything in the response.
    """

    def __init__(
        self,
        store: Store,
        *,
        rp_id: str,
        origins: Iterable[str],
        rp_name: str | None = None,
        user_verification: UserVerification = "preferred",
        resident_key: ResidentKey = "preferred",
        attestation: AttestationPolicy = "none",
        trusted_roots: Iterable[bytes | x509.Certificate] = (),
        algorithms: Sequence[int] = DEFAULT_ALGORITHMS,
        timeout: float = 300.0,
        grace: float = 600.0,
        allow_cross_origin: bool = False,
        top_origins: Iterable[str] | None = None,
        namespace: str = "webauthn",
        rand: RandomSource = SYSTEM_RANDOM,
        cache_size: int = 10_000,
    ) -> None:
        if user_verification not in ("required", "preferred", "discouraged"):
            raise ConfigError("user_verification must be required, preferred or discouraged")
        if attestation not in ("none", "self", "trusted"):
            raise ConfigError("attestation policy must be none, self or trusted")
        self.roots = load_roots(trusted_roots)
        if attestation == "trusted" and not self.roots:
            raise ConfigError("attestation policy 'trusted' needs trusted_roots")
        if timeout <= 0 or grace < 0:
            raise ConfigError("timeout must be positive and grace not negative")
        self.store = store
        self.rp_id = rp_id
        self.rp_name = rp_name or rp_id
        self.origins = frozenset(origins)
        if not self.origins:
            raise ConfigError("at least one origin is needed")
        self.user_verification: UserVerification = user_verification
        self.resident_key: ResidentKey = resident_key
        self.attestation: AttestationPolicy = attestation
        self.algorithms = tuple(algorithms)
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.allow_cross_origin = allow_cross_origin
        self.top_origins = None if top_origins is None else frozenset(top_origins)
        self.ns = namespace
        self.rand = rand
        self._rp_id_hash = rp_id_hash(rp_id)
        self._cache: dict[bytes, _Cached] = {}
        self._cache_size = cache_size
        # credential ID -> (tag, credential key, counter key): derived, never stale
        self._keys: dict[bytes, tuple[str, str, str]] = {}

    # store keys
    @staticmethod
    def _tag(credential_id: bytes) -> str:
        """Credential IDs are up to 1023 bytes: store keys carry their SHA-256."""
        return b64url_encode(hashlib.sha256(credential_id).digest())

    def _keys_of(self, credential_id: bytes) -> tuple[str, str, str]:
        """(tag, credential key, counter key) of a credential ID, hashed once per ID."""
        keys = self._keys.get(credential_id)
        if keys is None:
            tag = self._tag(credential_id)
            keys = (tag, self._cred_key(credential_id, tag), self._count_key(credential_id, tag))
            if len(self._keys) >= self._cache_size:
                self._keys.clear()
            self._keys[credential_id] = keys
        return keys

    def _cred_key(self, credential_id: bytes, tag: str | None = None) -> str:
        return f"{self.ns}:cred:{tag or self._tag(credential_id)}"

    def _count_key(self, credential_id: bytes, tag: str | None = None) -> str:
        return f"{self.ns}:count:{tag or self._tag(credential_id)}"

    def _user_key(self, user: str) -> str:
        return f"{self.ns}:user:{user}"

    # Challenge tokens are keyed by the challenge's unpadded base64url text, as issued and
    # as browsers echo it; a non-canonical spelling finds nothing (challenge_unknown).
    def _chal_key(self, text: str) -> str:
        return f"{self.ns}:chal:{text}"

    def _used_key(self, text: str) -> str:
        return f"{self.ns}:used:{text}"

    # -- users and credentials ------------------------------------------------------------
    def _user_record(self, user: str) -> tuple[bytes | None, list[bytes]]:
        raw = self.store.get(self._user_key(user))
        if raw is None:
            return None, []
        try:
            d = json.loads(raw)
            return b64url_decode(d["uh"]), [b64url_decode(c) for c in d["creds"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable("corrupt WebAuthn user record") from exc

    def _put_user_record(self, user: str, handle: bytes, creds: list[bytes]) -> None:
        self.store.put(
            self._user_key(user),
            json.dumps(
                {"uh": b64url_encode(handle), "creds": [b64url_encode(c) for c in creds]},
                separators=(",", ":"),
            ).encode(),
        )

    def credentials(self, user: str) -> list[StoredCredential]:
        """The user's registered credentials with their current signature counters."""
        _, ids = self._user_record(user)
        out = []
        for cid in ids:
            raw = self.store.get(self._cred_key(cid))
            if raw is None:
                continue
            cred = StoredCredential.from_record(raw)
            count = self.store.counter(self._count_key(cid)) or 0
            out.append(replace(cred, sign_count=count))
        return out

    def remove_credential(self, user: str, credential_id: bytes) -> bool:
        """Unregister a credential of ``user``; True if it was there."""
        handle, ids = self._user_record(user)
        raw = self.store.get(self._cred_key(credential_id))
        if raw is None or StoredCredential.from_record(raw).user != user:
            return False
        self.store.delete(self._cred_key(credential_id))
        self.store.delete(self._count_key(credential_id))
        if handle is not None:
            self._put_user_record(user, handle, [c for c in ids if c != credential_id])
        return True

    def _lookup(self, credential_id: bytes, cred_key: str) -> _Cached | None:
        raw = self.store.get(cred_key)
        if raw is None:
            return None
        entry = self._cache.get(raw)
        if entry is None:
            cred = StoredCredential.from_record(raw)
            entry = _Cached(cred, cached_public_key(cred.public_key))
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # records are cheap to re-parse; keep the bound simple
            self._cache[raw] = entry
        # keys are SHA-256 of the ID; the record holds the ID itself
        if not hmac.compare_digest(entry.cred.credential_id, credential_id):
            return None
        return entry

    # -- challenges -------------------------------------------------------------------------
    def _issue(self, ceremony: Ceremony, now: float) -> bytes:
        for _ in range(4):
            challenge = self.rand.random_bytes(32)
            if self.store.put_once(
                self._chal_key(b64url_encode(challenge)),
                encode_ceremony(ceremony),
                self.timeout + self.grace,
                now,
            ):
                return challenge
        raise StoreUnavailable("could not store a fresh challenge")  # pragma: no cover

    def _consume(
        self, cd: ClientData, purpose: str, now: float
    ) -> tuple[Ceremony | None, str, str]:
        """Take the challenge token once: (ceremony, reason, detail)."""
        if not 1 <= len(cd.challenge) <= _MAX_CHALLENGE:
            return None, CHALLENGE_UNKNOWN, "challenge length"
        text = cd.challenge_text
        raw = self.store.take(self._chal_key(text), now)
        if raw is None:
            if self.store.peek(self._used_key(text), now) is not None:
                return None, REPLAYED, "challenge already used"
            return None, CHALLENGE_UNKNOWN, "challenge not issued or long expired"
        if self.grace > 0:
            self.store.put_once(self._used_key(text), b"1", self.grace, now)
        ceremony = decode_ceremony(raw)
        if ceremony.purpose != purpose:
            return None, CHALLENGE_UNKNOWN, "challenge issued for another ceremony"
        if now > ceremony.expires:
            return None, CHALLENGE_EXPIRED, "challenge expired"
        return ceremony, OK, ""

    def _uv(self, uv: UserVerification | None) -> UserVerification:
        uv = uv or self.user_verification
        if uv not in ("required", "preferred", "discouraged"):
            raise ValueError("user_verification must be required, preferred or discouraged")
        return uv

    # -- registration -----------------------------------------------------------------------
    def begin_registration(
        self,
        user: str,
        *,
        now: float,
        display_name: str | None = None,
        user_verification: UserVerification | None = None,
        resident_key: ResidentKey | None = None,
        authenticator_attachment: Literal["platform", "cross-platform"] | None = None,
    ) -> dict[str, Any]:
        """``PublicKeyCredentialCreationOptionsJSON`` for ``user`` (§5.4), challenge issued."""
        uv = self._uv(user_verification)
        handle, existing = self._user_record(user)
        if handle is None:
            handle = self.rand.random_bytes(32)  # §14.6.1: user handles carry no PII
            self._put_user_record(user, handle, [])
        challenge = self._issue(Ceremony("create", user, uv, now + self.timeout, handle), now)
        rk = resident_key or self.resident_key
        selection: dict[str, Any] = {
            "residentKey": rk,
            "requireResidentKey": rk == "required",
            "userVerification": uv,
        }
        if authenticator_attachment is not None:
            selection["authenticatorAttachment"] = authenticator_attachment
        return {
            "rp": {"id": self.rp_id, "name": self.rp_name},
            "user": {
                "id": b64url_encode(handle),
                "name": user,
                "displayName": display_name or user,
            },
            "challenge": b64url_encode(challenge),
            "pubKeyCredParams": [{"type": "public-key", "alg": a} for a in self.algorithms],
            "timeout": int(self.timeout * 1000),
            "excludeCredentials": [
                {"type": "public-key", "id": b64url_encode(c)} for c in existing
            ],
            "authenticatorSelection": selection,
            "attestation": "none" if self.attestation == "none" else "direct",
            "extensions": {"credProps": True},
        }

    def finish_registration(
        self, response: Mapping[str, Any] | str | bytes, *, now: float
    ) -> RegistrationVerdict:
        """Verify the browser's ``PublicKeyCredential`` JSON and store the credential."""
        try:
            resp = as_mapping(response)
            raw_id = parse_raw_id(resp)
            r = resp.get("response")
            if not isinstance(r, Mapping):
                raise DecodeError("no response member")
            cdj = b64url_decode(r.get("clientDataJSON"))
            att_obj = b64url_decode(r.get("attestationObject"))
            transports = r.get("transports", [])
            if (
                not isinstance(transports, list)
                or len(transports) > 16
                or not all(isinstance(t, str) and len(t) <= 32 for t in transports)
            ):
                raise DecodeError("transports is not a list of strings")
            cd = parse_client_data(cdj)
        except DecodeError as exc:
            return RegistrationVerdict(False, MALFORMED, detail=str(exc))
        if cd.type != CREATE:
            return RegistrationVerdict(False, MALFORMED, detail="clientDataJSON type")
        try:
            ceremony, reason, detail = self._consume(cd, "create", now)
        except (StoreUnavailable, DecodeError) as exc:
            return RegistrationVerdict(False, STORE_UNAVAILABLE, detail=str(exc))
        if ceremony is None or ceremony.user is None or ceremony.user_handle is None:
            return RegistrationVerdict(False, reason, detail=detail)
        verdict = check_registration(
            cd,
            att_obj,
            cdj,
            self._rp_id_hash,
            self.origins,
            ceremony.uv == "required",
            self.allow_cross_origin,
            self.top_origins,
            self.attestation,
            self.roots,
            self.algorithms,
            raw_id,
            now,
        )
        if not verdict.ok or verdict.credential is None:
            return verdict._replace(user=ceremony.user)
        ac = verdict.credential
        stored = StoredCredential(
            credential_id=ac.credential_id,
            user=ceremony.user,
            user_handle=ceremony.user_handle,
            public_key=ac.public_key,
            algorithm=ac.algorithm,
            aaguid=ac.aaguid,
            transports=tuple(dict.fromkeys(transports)),
            backup_eligible=ac.backup_eligible,
            backup_state=ac.backup_state,
            uv_initialized=ac.user_verified,
            attestation_format=ac.attestation_format,
            attestation_type=ac.attestation_type,
            created=now,
            sign_count=ac.sign_count,
        )
        try:
            if self.store.get(self._cred_key(ac.credential_id)) is not None:
                return RegistrationVerdict(
                    False, CREDENTIAL_EXISTS, ceremony.user, detail="credential ID registered"
                )
            self.store.put(self._cred_key(ac.credential_id), stored.to_record())
            if ac.sign_count > 0:
                self.store.advance(self._count_key(ac.credential_id), ac.sign_count)
            handle, ids = self._user_record(ceremony.user)
            self._put_user_record(
                ceremony.user, handle or ceremony.user_handle, [*ids, ac.credential_id]
            )
        except StoreUnavailable as exc:
            return RegistrationVerdict(False, STORE_UNAVAILABLE, ceremony.user, detail=str(exc))
        return verdict._replace(user=ceremony.user, stored=stored)

    # -- authentication ---------------------------------------------------------------------
    def begin_authentication(
        self,
        user: str | None = None,
        *,
        now: float,
        user_verification: UserVerification | None = None,
    ) -> dict[str, Any]:
        """``PublicKeyCredentialRequestOptionsJSON`` (§5.5), challenge issued.

        With ``user``, ``allowCredentials`` lists their credentials and only those are
        accepted; without, any discoverable credential of any user is (usernameless).
        """
        uv = self._uv(user_verification)
        allow: list[dict[str, Any]] = []
        if user is not None:
            for cred in self.credentials(user):
                entry: dict[str, Any] = {
                    "type": "public-key",
                    "id": b64url_encode(cred.credential_id),
                }
                if cred.transports:
                    entry["transports"] = list(cred.transports)
                allow.append(entry)
        challenge = self._issue(Ceremony("get", user, uv, now + self.timeout, None), now)
        return {
            "challenge": b64url_encode(challenge),
            "timeout": int(self.timeout * 1000),
            "rpId": self.rp_id,
            "allowCredentials": allow,
            "userVerification": uv,
        }

    def finish_authentication(
        self, response: Mapping[str, Any] | str | bytes, *, now: float
    ) -> WebAuthnVerdict:
        """Verify the browser's assertion JSON (§7.2); the hot path."""
        try:  # everything that can be malformed, before the challenge is spent
            a = parse_assertion(response)
            cd = parse_client_data(a.client_data_json)
            flags, count = validate_authenticator_data(a.authenticator_data)
        except DecodeError as exc:
            return refuse(MALFORMED, str(exc))
        if cd.type != GET:
            return refuse(MALFORMED, "clientDataJSON type is not webauthn.get")
        try:
            ceremony, reason, detail = self._consume(cd, "get", now)
            if ceremony is None:
                return refuse(reason, detail)
            keys = self._keys_of(a.raw_id)
            found = self._lookup(a.raw_id, keys[1])
        except (StoreUnavailable, DecodeError) as exc:
            return refuse(STORE_UNAVAILABLE, str(exc))
        if found is None:
            return refuse(UNKNOWN_CREDENTIAL, "credential not registered")
        cred = found.cred
        # §7.2 step 6: the credential must belong to the user the ceremony was for, and
        # a userHandle, when given (always, for a usernameless login), must be its owner's.
        if ceremony.user is not None and ceremony.user != cred.user:
            return refuse(UNKNOWN_CREDENTIAL, "credential not in allowCredentials")
        if a.user_handle is None:
            if ceremony.user is None:
                return refuse(UNKNOWN_CREDENTIAL, "no userHandle for a usernameless login")
        elif not hmac.compare_digest(a.user_handle, cred.user_handle):
            return refuse(UNKNOWN_CREDENTIAL, "userHandle is not the credential owner's")
        refused = check_assertion(
            found.key,
            cd,
            a.authenticator_data,
            flags,
            count,
            a.client_data_json,
            a.signature,
            self._rp_id_hash,
            self.origins,
            ceremony.uv == "required",
            self.allow_cross_origin,
            self.top_origins,
        )
        if refused is not None:
            return refused._replace(user=cred.user, credential_id=cred.credential_id)
        v = accept(flags, count, cred.user, cred.credential_id)
        try:
            return self._after_signature(cred, v, keys)
        except StoreUnavailable as exc:
            return v._replace(ok=False, reason=STORE_UNAVAILABLE, detail=str(exc))

    def _after_signature(
        self, cred: StoredCredential, v: WebAuthnVerdict, keys: tuple[str, str, str]
    ) -> WebAuthnVerdict:
        count = v.sign_count or 0
        key = keys[2]
        # §6.1.1 / §7.2 step 22: either counter non-zero -> the new one must be greater
        if count == 0:
            if self.store.counter(key):
                return v._replace(
                    ok=False,
                    reason=COUNTER_REGRESSED,
                    possible_clone=True,
                    detail="signature counter went back to 0: possible cloned authenticator",
                )
        elif not self.store.advance(key, count):
            return v._replace(
                ok=False,
                reason=COUNTER_REGRESSED,
                possible_clone=True,
                detail="signature counter did not increase: possible cloned authenticator",
            )
        if v.backup_state != cred.backup_state or (v.user_verified and not cred.uv_initialized):
            # §7.2 steps 23-24: keep BS current and note that UV was once performed
            updated = replace(
                cred,
                backup_state=v.backup_state,
                uv_initialized=cred.uv_initialized or v.user_verified,
            )
            self.store.put(keys[1], updated.to_record())
        return v
