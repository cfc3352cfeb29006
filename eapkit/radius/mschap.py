"""MS-CHAP-V2 over plain RADIUS, for NASes that run MS-CHAPv2 themselves (RFC 2548 §2.3).

L2TP/PPTP servers, RRAS-style gateways and several firewalls speak MS-CHAPv2 (RFC 2759)
to the user and hand the exchange to RADIUS without EAP::

    NAS                                            eapkit
    Access-Request  User-Name, MS-CHAP-Challenge (16 octets, §2.3.2),
                    MS-CHAP2-Response (Ident, Flags, Peer-Challenge, 8 reserved, NT-Response)
          -> right password, authorized:
             Access-Accept  MS-CHAP2-Success (Ident, "S=<AuthenticatorResponse>", §2.3.3),
                            MS-MPPE-Send-Key / Recv-Key (16 octets, RFC 2548 §2.4.2-2.4.3,
                            RFC 3079 §3), MS-MPPE-Encryption-Policy / -Types (§2.4.4-2.4.5)
          -> anything else (wrong password, unknown, disabled or throttled user, a user
             who must prove possession, whatever the password):
             Access-Reject  MS-CHAP-Error (Ident, "E=691 R=0 C=<challenge> V=3", §2.1.5)

Every outcome passes through the one authorization step (:class:`eapkit.authz.Authorizer`),
which proves the factor ``password``: a success through :meth:`~eapkit.authz.Authorizer.authorize`
(the user exists, is enabled, needs no possession factor here; the Accept's attributes are
the user's policy; the password throttle is cleared), a failure through
:meth:`~eapkit.authz.Authorizer.refused` (a failed password counts toward the throttle; the
decision line gets its reason).  The NT hash is looked up behind
:meth:`~eapkit.authz.Authorizer.nt_hash`, so a throttled, disabled or second-factor user's
response is never checked: a user with a second factor gets the same Reject whatever the
password, never a Success that confirms it (no code round: docs/security.md, "Authorization").
Policy, Types and the 16-octet keys are what FreeRADIUS's rlm_mschap sends by default
(``use_mppe = yes``, ``require_encryption = no``, ``require_strong = no``).

Every other Access-Request without EAP goes to the :class:`~eapkit.radius.pap.PapAccess`
this module wraps.

MS-CHAP v1 (RFC 2433; RFC 2548 §2.1): MS-CHAP-Challenge (8 octets) + MS-CHAP-Response
(Ident, Flags = 1 "use the NT-Response", LM-Response, NT-Response) is checked against the
NT hash (RFC 2433 §A.5 ChallengeResponse); the Accept carries MS-CHAP-MPPE-Keys (§2.4.1:
an 8-octet LM key, zeros since eapkit keeps no LAN Manager hash, and the 16-octet NT key
MD4(NT hash), hidden like User-Password) with the same authorization.  A response
with only the LM-Response (Flags = 0) is refused (``lm_response_unsupported``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from eapkit.authz import Authorizer, Nas, nas_scope
from eapkit.crypto.mschap import NT_HASH_LEN, get_master_key, mschapv2_msk, nt_hash_keys
from eapkit.crypto.stand_in import stand_in_secret
from eapkit.errors import ConfigError, DecodeError
from eapkit.methods.base import Factor
from eapkit.methods.mschapv2_check import (
    DelegatedCheck,
    NtHashLookup,
    authenticator_response,
    check_nt_response,
    failure_message,
    success_message,
)
from eapkit.radius.dictionary import VENDOR_MICROSOFT, Attr, MsAttr, vsa
from eapkit.radius.hiding import hide_password
from eapkit.radius.mppe import mppe_key_attributes
from eapkit.radius.packet import Attribute, Code, Packet
from eapkit.radius.pap import PapAccess
from eapkit.radius.reply import (
    REJECT_MESSAGE,
    AccessReply,
    Decision,
    accept_attributes,
)
from eapkit.rand import SYSTEM_RANDOM, RandomSource

__all__ = ["MsChapAccess", "parse_mschap2_response"]

MSCHAP2_RESPONSE_LEN = 50  # RFC 2548 §2.3.2
AUTHENTICATOR_CHALLENGE_LEN = 16  # RFC 2759 §4
ENCRYPTION_ALLOWED = 1  # RFC 2548 §2.4.4 MS-MPPE-Encryption-Policy
RC4_40_AND_128 = 6  # RFC 2548 §2.4.5 MS-MPPE-Encryption-Types (0x02 | 0x04)
METHOD = "mschapv2"
METHOD_V1 = "mschap"
MSCHAP_RESPONSE_LEN = 50  # RFC 2548 §2.1.3
MSCHAP_CHALLENGE_LEN = 8  # RFC 2433 §A.1
MS_CHAP_MPPE_KEYS = 12  # RFC 2548 §2.4.1
PASSWORD_ONLY = frozenset({Factor.PASSWORD})  # all that MS-CHAP proves


def parse_mschap2_response(value: bytes) -> tuple[int, bytes, bytes] | None:
    """RFC 2548 §2.3.2 MS-CHAP2-Response: (Ident, Peer-Challenge, NT-Response), or None
    when it is not 50 octets."""
    if len(value) != MSCHAP2_RESPONSE_LEN:
        return None
    return value[0], value[2:18], value[26:50]


def _ms(request: Packet) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for vtype, value in request.vendor_attributes(VENDOR_MICROSOFT):
        out.setdefault(vtype, value)
    return out


@dataclass
class MsChapAccess:
    """Plain Access-Requests: MS-CHAP-V2 and v1 here, everything else to ``pap``.

    ``nt_hash`` gives the users' NT hashes; it is consulted only behind
    ``authorizer``'s guard (:meth:`Authorizer.nt_hash <eapkit.authz.Authorizer.nt_hash>`),
    and every outcome passes through ``authorizer``."""

    nt_hash: NtHashLookup
    authorizer: Authorizer
    pap: PapAccess | None = None
    random: RandomSource = SYSTEM_RANDOM
    _guarded: NtHashLookup = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._guarded = self.authorizer.nt_hash(self.nt_hash)

    @property
    def state_prefix(self) -> bytes:
        return self.pap.state_prefix if self.pap is not None else b""

    @state_prefix.setter
    def state_prefix(self, prefix: bytes) -> None:
        if self.pap is not None:
            self.pap.state_prefix = prefix

    def expire(self, now: float) -> None:
        if self.pap is not None:
            self.pap.expire(now)

    def handle(
        self, request: Packet, secret: bytes, client: str, now: float, *, nas: Nas | None = None
    ) -> AccessReply | None:
        """The reply to one plain Access-Request; ``nas`` is the client entry it came from
        (authorization's per-NAS rules)."""
        with nas_scope(nas, now):
            return self._handle(request, secret, client, now, nas)

    def _handle(
        self, request: Packet, secret: bytes, client: str, now: float, nas: Nas | None
    ) -> AccessReply | None:
        try:
            ms = _ms(request)
        except DecodeError:
            user = (request.get(Attr.USER_NAME) or b"").decode("utf-8", "backslashreplace")
            return self._reject(client, user, "malformed", now, [])
        challenge = ms.get(MsAttr.MS_CHAP_CHALLENGE)
        v2 = ms.get(MsAttr.MS_CHAP2_RESPONSE)
        v1 = ms.get(MsAttr.MS_CHAP_RESPONSE)
        user = (request.get(Attr.USER_NAME) or b"").decode("utf-8", "backslashreplace")
        if challenge is None or (v2 is None and v1 is None):
            if self.pap is not None:
                return self.pap.handle(request, secret, client, now, nas=nas)
            return self._reject(client, user, "no_password", now, [])
        if v2 is None:
            assert v1 is not None
            return self._mschap_v1(request, secret, client, now, user, challenge, v1)
        parsed = parse_mschap2_response(v2)
        if parsed is None or len(challenge) != AUTHENTICATOR_CHALLENGE_LEN or not user:
            return self._reject(client, user, "malformed", now, [])
        ident, peer_challenge, nt_response = parsed
        name = request.get(Attr.USER_NAME) or b""
        error = failure_message(691, False, challenge, 3, "Authentication failed")
        refusal = [vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_ERROR, bytes((ident,)) + error)]
        try:
            checked = check_nt_response(
                self._guarded, user, challenge, peer_challenge, name, nt_response
            )
        except ConfigError:
            return self._reject(client, user, "backend_error", now, [])
        if checked.nt_hash_hash is None:
            return self._refused(client, user, checked.reason, now, refusal, METHOD)
        nt_hash_hash = checked.nt_hash_hash
        proof = authenticator_response(nt_hash_hash, nt_response, peer_challenge, challenge, name)
        master = get_master_key(nt_hash_hash, nt_response)

        def success(secret: bytes, request_authenticator: bytes) -> list[Attribute]:
            return [
                vsa(
                    VENDOR_MICROSOFT,
                    MsAttr.MS_CHAP2_SUCCESS,
                    bytes((ident,)) + success_message(proof),
                ),
                *mppe_key_attributes(
                    mschapv2_msk(master), secret, request_authenticator, self.random, 16
                ),
                _integer(MsAttr.MS_MPPE_ENCRYPTION_POLICY, ENCRYPTION_ALLOWED),
                _integer(MsAttr.MS_MPPE_ENCRYPTION_TYPES, RC4_40_AND_128),
            ]

        return self._accept(request, secret, client, now, user, success, refusal, METHOD)

    def _accept(
        self,
        request: Packet,
        secret: bytes,
        client: str,
        now: float,
        user: str,
        success: Callable[[bytes, bytes], list[Attribute]],
        refusal: list[Attribute],
        method: str,
    ) -> AccessReply:
        """The password was right: the Accept if the authorization step lets ``user``
        in on the password alone, else the same Reject (``refusal``) a wrong one gets."""
        authorized = self.authorizer.authorize(user, PASSWORD_ONLY, None, now, method=METHOD)
        matched = authorized.policy_name or ""
        if not authorized.ok:
            reply = self._reject(client, user, authorized.reason, now, refusal, method)
            if reply.decision is not None:
                reply.decision.policy = matched
            return reply
        name = authorized.user
        decision = Decision(now, client, name, user, method, "", "accept", "ok", 1, 0.0, "")
        decision.policy = matched
        attrs = accept_attributes(name, authorized.policy, self.random)
        attrs += success(secret, request.authenticator)
        return AccessReply(Code.ACCESS_ACCEPT, attrs, decision)

    def _refused(
        self,
        client: str,
        user: str,
        reason: str,
        now: float,
        refusal: list[Attribute],
        method: str,
    ) -> AccessReply:
        """The response did not check: the authorization step counts a failed password
        (the throttle) and names the reason (``throttled``, ``second_factor_required``)."""
        reason = self.authorizer.refused(user, reason, now)
        return self._reject(client, user, reason, now, refusal, method)

    def _mschap_v1(
        self,
        request: Packet,
        secret: bytes,
        client: str,
        now: float,
        user: str,
        challenge: bytes,
        response: bytes,
    ) -> AccessReply:
        """RFC 2433 / RFC 2548 §2.1: MS-CHAP v1 against the NT hash."""
        if (
            len(response) != MSCHAP_RESPONSE_LEN
            or len(challenge) != MSCHAP_CHALLENGE_LEN
            or not user
        ):
            return self._reject(client, user, "malformed", now, [], METHOD_V1)
        ident, flags, nt_response = response[0], response[1], response[26:50]
        if flags != 1:
            return self._reject(client, user, "lm_response_unsupported", now, [], METHOD_V1)
        stored = self._guarded(user)
        if isinstance(stored, DelegatedCheck):  # ntlm_auth: MS-CHAP v2 only, like FreeRADIUS's
            return self._refused(client, user, "mschap_v1_unsupported", now, [], METHOD_V1)
        if stored is not None and len(stored) != NT_HASH_LEN:
            return self._reject(client, user, "backend_error", now, [], METHOD_V1)
        keys = nt_hash_keys(stored if stored is not None else stand_in_secret(user, NT_HASH_LEN))
        valid = hmac.compare_digest(keys.challenge_response(challenge), nt_response)
        error = failure_message(691, False, None, None)
        refusal = [vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_ERROR, bytes((ident,)) + error)]
        if stored is None or not valid:
            reason = "unknown_user" if stored is None else "bad_password"
            return self._refused(client, user, reason, now, refusal, METHOD_V1)
        nt_key = keys.nt_hash_hash

        def success(secret: bytes, request_authenticator: bytes) -> list[Attribute]:
            mppe = hide_password(bytes(8) + nt_key, secret, request_authenticator)
            return [
                vsa(VENDOR_MICROSOFT, MS_CHAP_MPPE_KEYS, mppe),
                _integer(MsAttr.MS_MPPE_ENCRYPTION_POLICY, ENCRYPTION_ALLOWED),
                _integer(MsAttr.MS_MPPE_ENCRYPTION_TYPES, RC4_40_AND_128),
            ]

        return self._accept(request, secret, client, now, user, success, refusal, METHOD_V1)

    def _reject(
        self,
        client: str,
        user: str,
        reason: str,
        now: float,
        attrs: list[Attribute],
        method: str = METHOD,
    ) -> AccessReply:
        decision = Decision(now, client, user, user, method, "", "reject", reason, 1, 0.0, "")
        return AccessReply(
            Code.ACCESS_REJECT, [*attrs, (Attr.REPLY_MESSAGE, REJECT_MESSAGE)], decision
        )


def _integer(vendor_type: int, value: int) -> Attribute:
    return vsa(VENDOR_MICROSOFT, vendor_type, value.to_bytes(4, "big"))
