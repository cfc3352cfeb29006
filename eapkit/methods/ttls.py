"""EAP-TTLSv0 (type 21), both roles: RFC 5281, and RFC 9427 for TLS 1.3.

EAP-TTLS carries a TLS handshake like EAP-TLS (the work of
:class:`eapkit.tlsio.TlsEapEngine`), usually without a client certificate, then uses the
tunnel to carry Diameter AVPs (:mod:`eapkit.diameter`, RFC 5281 §10) that authenticate
the user: phase 2.  The peer speaks first in phase 2::

    S: Start (version 0)        P: ClientHello        ... handshake as EAP-TLS ...
    TLS 1.2:  P: .. Finished    S: ChangeCipherSpec, Finished
    TLS 1.3:  P: Finished       S: NewSessionTickets (or an empty Request)
    P: {User-Name, <credentials>}                      (AVPs inside the tunnel)
    S: {<result AVPs>} ... or Success / Failure

Inner methods (RFC 5281 §11.2), chosen by the peer through the AVPs it sends; the
authenticator accepts any of those it was configured with:

- **PAP** (§11.2.5): User-Name, User-Password padded with zeros to a multiple of 16
  octets (the padding is removed on receipt).  The password goes to a
  :class:`~eapkit.credentials.ResponseCheck`, so the two-factor combinators apply:
  :class:`~eapkit.credentials.PasswordAndCode` (password followed by a one-time code in
  one field) or :class:`~eapkit.credentials.PasswordThenCode`, whose second round is a
  Reply-Message AVP (the prompt) answered by another User-Password AVP (the code).
- **CHAP** (§11.2.2): CHAP-Challenge and CHAP-Password, over the implicit challenge
  (below); the server needs the cleartext password (:data:`CleartextLookup`).
- **MS-CHAP-V2** (§11.2.4): MS-CHAP-Challenge and MS-CHAP2-Response over the implicit
  challenge, checked against the user's NT hash; the server answers MS-CHAP2-Success
  (Ident + ``S=<40 hex>``), which the peer verifies before it acknowledges with an
  empty Response, or MS-CHAP-Error, acknowledged the same way before the Failure.
- **EAP** (§11.2.1): EAP-Message AVPs carrying a whole inner EAP conversation, run
  through :class:`eapkit.session.AuthenticatorSession` / :class:`~eapkit.session.PeerSession`
  with any eapkit methods (EAP-MSCHAPv2, EAP-GTC, ...).  The peer opens it with an
  EAP-Response/Identity nobody asked for (there is no inner Identity Request); a Nak
  moves the inner session to the next method.  As hostapd and FreeRADIUS do, the
  authenticator does not tunnel the inner Success or Failure: the outer one ends both.

The implicit challenge (§11.1) is ``TLS-Exporter("ttls challenge", no context, 17)``:
16 octets of challenge and one octet of Ident/CHAP identifier.  The same exporter call
serves TLS 1.3 (where "no context" and an empty one are the same), as hostapd does.

Keys: TLS 1.2 (§8) ``TLS-PRF-128(master_secret, "ttls keying material", client.random ||
server.random)``, MSK the first 64 octets, EMSK the next 64, Session-Id ``0x15 ||
client.random || server.random``; TLS 1.3, RFC 9427 with the type code 0x15 (see
:mod:`eapkit.tlsio.keys`).  The inner method's keys are not used (TTLSv0 has no
cryptographic binding).

AVPs: an AVP that a side does not know with the M bit set ends the conversation
(§10.1); others are ignored.  Several EAP-Message AVPs are joined in order (RADIUS
servers split EAP packets in 253-octet attributes).

Identities: the outer EAP Identity may be anonymous (``anonymous@example.org``); the
authenticator reports the inner one (User-Name, or the inner EAP Identity) as the
authenticated user (``Outcome.identity``), and :data:`RealmPolicy` says whether the
realms of the two must agree.  ``Outcome.attributes["inner_method"]`` names the inner
method (``pap``, ``chap``, ``mschapv2``, ``eap-gtc``, ``eap-mschapv2``).

What every tunnel shares (the inner EAP session's actions as tunnel writes, checking TLS
after each write, the inner method's name, the final outcome with the factors the inner
method proved) is :mod:`eapkit.methods.tunnel`; inner MS-CHAP-V2 is checked by
:mod:`eapkit.methods.mschapv2_check`, as bare EAP-MSCHAPv2 is.  PAP proves the factors of
its check (``Verdict.factors``), CHAP and MS-CHAP-V2 a password, inner EAP those of the
inner method.

Every problem ends in a Failure with a reason (``malformed``, ``unsupported_avp``,
``challenge_mismatch``, ``bad_password``, ``unknown_user``, ``realm_mismatch``,
``inner_method_not_allowed``, ``peer_refused_methods``, a TLS alert name...); nothing
received raises.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from eapkit.credentials import CHALLENGE, ResponseCheck, TwoRoundCheck, Verdict
from eapkit.crypto.mschap import (
    NT_HASH_LEN,
    authenticator_response_digest,
    challenge_hash,
    nt_hash_keys,
    nt_password_hash,
)
from eapkit.crypto.stand_in import stand_in_secret
from eapkit.diameter import MICROSOFT, Avp, AvpCode, decode_avps, encode_avps, unknown_mandatory
from eapkit.errors import ConfigError, DecodeError, EapkitError
from eapkit.methods.base import (
    Authenticator,
    Done,
    Factor,
    KeyMaterial,
    MethodContext,
    MethodFactory,
    Outcome,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.mschapv2_check import (
    NtHashLookup,
    authenticator_response,
    check_nt_response,
    failure_message,
    success_message,
)
from eapkit.methods.tunnel import (
    TunnelAuthenticatorBase,
    TunnelPeerBase,
    inner_eap_name,
    inner_factors,
)
from eapkit.packet import Code, EapType, Identity, MethodId
from eapkit.session import (
    Action,
    AuthenticatorSession,
    PeerSession,
    Send,
    SessionConfig,
)
from eapkit.session import Result as SessionResult
from eapkit.tlsio import Failed, Message, SessionCache, TlsConfig, TlsContext, TlsEapEngine, TlsRole
from eapkit.tlsio.keys import derive_keys
from eapkit.tlsio.method import tls_failure_outcome

if TYPE_CHECKING:
    from eapkit.methods.mschapv2 import NtHashLookup

__all__ = [
    "TTLS",
    "TTLS_CHALLENGE_LABEL",
    "TTLS_KEY_LABEL",
    "CleartextLookup",
    "InnerChap",
    "InnerEap",
    "InnerMethod",
    "InnerMsChapV2",
    "InnerPap",
    "RealmPolicy",
    "TtlsAuthenticator",
    "TtlsPeer",
    "any_realm",
    "implicit_challenge",
    "pad_password",
    "same_realm",
    "ttls_authenticator",
    "ttls_peer",
    "unpad_password",
]

TTLS = MethodId.legacy(EapType.TTLS)
TTLS_KEY_LABEL = b"ttls keying material"
TTLS_CHALLENGE_LABEL = b"ttls challenge"
CHALLENGE_LEN = 16  # CHAP-Challenge and MS-CHAP-Challenge (§11.2.2, §11.2.4)
MSCHAP2_RESPONSE_LEN = 50  # RFC 2548 §2.3.2: Ident, Flags, Peer-Challenge, 8 reserved, NT-Response
MAX_PASSWORD = 1024  # a User-Password AVP longer than this is not a password
MAX_USER_NAME = 253  # RFC 2865 §5.1

# (vendor, code) of the AVPs each side understands (RFC 5281 §10.1)
_SERVER_KNOWN = {
    (0, AvpCode.USER_NAME),
    (0, AvpCode.USER_PASSWORD),
    (0, AvpCode.CHAP_PASSWORD),
    (0, AvpCode.CHAP_CHALLENGE),
    (0, AvpCode.EAP_MESSAGE),
    (MICROSOFT, AvpCode.MS_CHAP_CHALLENGE),
    (MICROSOFT, AvpCode.MS_CHAP2_RESPONSE),
}
_PEER_KNOWN = {
    (0, AvpCode.REPLY_MESSAGE),
    (0, AvpCode.EAP_MESSAGE),
    (MICROSOFT, AvpCode.MS_CHAP2_SUCCESS),
    (MICROSOFT, AvpCode.MS_CHAP_ERROR),
}

CleartextLookup = Callable[[str], "str | None"]
"""CHAP needs the user's cleartext password: the password, or None for an unknown user."""

RealmPolicy = Callable[[str, str], bool]
"""(outer identity, inner identity) -> may this inner user authenticate under that outer
identity?"""


def _realm(identity: str) -> str:
    return identity.rpartition("@")[2].casefold() if "@" in identity else ""


def any_realm(outer: str, inner: str) -> bool:
    """The default: the outer identity is a routing hint only."""
    return True


def same_realm(outer: str, inner: str) -> bool:
    """Outer and inner identities name the same realm (the part after the last ``@``,
    compared without case; no ``@`` is the empty realm), so a visited network routes
    the request where the user really belongs."""
    return _realm(outer) == _realm(inner)


# -- small codecs ---------------------------------------------------------------------------


def pad_password(password: bytes) -> bytes:
    """RFC 5281 §11.2.5: User-Password padded with zero octets to a multiple of 16
    (at least 16)."""
    size = max(16, -(-len(password) // 16) * 16)
    return password.ljust(size, b"\x00")


def unpad_password(data: bytes) -> bytes:
    """The inverse of :func:`pad_password`: trailing zero octets removed."""
    return data.rstrip(b"\x00")


def implicit_challenge(engine: TlsEapEngine) -> tuple[bytes, int]:
    """RFC 5281 §11.1: 16 octets of challenge and the Ident octet, from the TLS exporter
    with the label "ttls challenge" and no context."""
    material = engine.export_keying_material(TTLS_CHALLENGE_LABEL, CHALLENGE_LEN + 1, None)
    return material[:CHALLENGE_LEN], material[CHALLENGE_LEN]


def _chap_md5(ident: int, password: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5(Identifier || secret || Challenge)."""
    return hashlib.md5(bytes([ident]) + password + challenge).digest()  # noqa: S324 - the RFC's


def _eap_data(avps: Sequence[Avp]) -> bytes:
    return b"".join(a.data for a in avps if a.key == (0, AvpCode.EAP_MESSAGE))


def _first(avps: Sequence[Avp], code: int, vendor: int = 0) -> Avp | None:
    return next((a for a in avps if a.key == (vendor, code)), None)


def _text(data: bytes, what: str, limit: int) -> str:
    """Decode a text AVP; raises DecodeError."""
    if not data or len(data) > limit:
        raise DecodeError(f"{what} of {len(data)} octets", expected=f"1 to {limit} octets")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


def _eap_avp(packet: bytes) -> bytes:
    return Avp(AvpCode.EAP_MESSAGE, packet).encode()


def _inner_eap_name(method: MethodId | None, factories: Sequence[MethodFactory[object]]) -> str:
    return inner_eap_name(method, factories) if method is not None else "eap"  # none chosen yet


def _proved(verdict: Verdict) -> frozenset[Factor]:
    """The factors a check proved (a word this version does not know is left out)."""
    return frozenset(Factor(f) for f in verdict.factors if f in _FACTORS)


_FACTORS = frozenset(f.value for f in Factor)


# -- authenticator --------------------------------------------------------------------------


class _AuthPhase(enum.Enum):
    HANDSHAKE = "handshake"
    AWAIT_AVPS = "await_avps"  # handshake done, the peer's first phase-2 AVPs are due
    PAP_CODE = "pap_code"  # Reply-Message sent: the code is due in a User-Password
    MSCHAPV2_RESULT = "mschapv2_result"  # MS-CHAP2-Success / MS-CHAP-Error sent
    INNER_EAP = "inner_eap"
    CLOSING = "closing"  # our last TLS flight sent; the peer's acknowledgement is due


@dataclass(frozen=True)
class _ServerInner:
    """What the authenticator accepts in phase 2 (None / empty: not offered)."""

    pap: ResponseCheck | None = None
    chap: CleartextLookup | None = None
    mschapv2: NtHashLookup | None = None
    eap: Sequence[MethodFactory[Authenticator]] = ()
    realm_policy: RealmPolicy = any_realm
    inner_session: SessionConfig = field(
        default_factory=lambda: SessionConfig(identity_round=False, max_rounds=20)
    )
    success_message: str = ""


class TtlsAuthenticator(TunnelAuthenticatorBase):
    """The server role of EAP-TTLSv0 (see the module docstring)."""

    method = TTLS
    _label = "EAP-TTLS"

    def __init__(self, ctx: MethodContext, context: TlsContext, inner: _ServerInner) -> None:
        self._inner = inner
        super().__init__(ctx, TlsEapEngine(context, EapType.TTLS))
        self._phase = _AuthPhase.HANDSHAKE
        self._prompted = False
        self._user: str | None = None
        self._inner_name = ""
        self._pending: Outcome | None = None  # decided, told to the peer, ack due
        self._code_check: ResponseCheck | None = None
        self._session: AuthenticatorSession | None = None

    def _tls_failed(self, failure: Failed) -> Outcome:
        return tls_failure_outcome(failure, self._user, self._engine)

    def light(self, type_data: bytes, methods: frozenset[MethodId]) -> bool:
        """Whether :meth:`receive` of ``type_data`` reaches no check but those of
        ``methods`` (:meth:`eapkit.session.AuthenticatorSession.light`, issue 21).  Until
        the first AVPs, when it hands TLS no application data
        (:meth:`~eapkit.tlsio.TlsEapEngine.may_carry_application_data`): AVPs may hold a
        User-Password, whose check is a PBKDF2.  Inner EAP when the inner session rests
        among ``methods``.  The acknowledgement that ends the conversation, always; the
        code round of PAP, never."""
        phase = self._phase
        if phase in (_AuthPhase.HANDSHAKE, _AuthPhase.AWAIT_AVPS):
            return not self._engine.may_carry_application_data(type_data)
        if phase is _AuthPhase.INNER_EAP:
            return self._session is not None and self._session.rests_among(methods)
        return phase in (_AuthPhase.CLOSING, _AuthPhase.MSCHAPV2_RESULT)

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if not engine.handshake_done:
            if event.empty and not engine.has_output:
                return self._end(Outcome.failed("protocol_error", "empty Response"))
            return Reply(engine.next_type_data())
        if self._phase is _AuthPhase.HANDSHAKE:
            if engine.peer_version_bits:
                return self._end(
                    Outcome.failed("unsupported_version", "the peer does not speak TTLSv0")
                )
            self._phase = _AuthPhase.AWAIT_AVPS
            record = self._resumable() if engine.resumed else None
            if record is not None:
                # RFC 5281 §7.5: phase 2 is skipped; an empty Request (or the tickets)
                # says so, the peer acknowledges, Success follows.
                self._user = record.identity
                self._pending = self._resumed_success(record)
                self._phase = _AuthPhase.CLOSING
                return Reply(engine.next_type_data())
        if self._phase in (_AuthPhase.CLOSING, _AuthPhase.MSCHAPV2_RESULT):
            assert self._pending is not None
            if not event.empty:  # like hostapd: the acknowledgement carries no TLS data
                return self._end(
                    Outcome.failed("protocol_error", "data where an acknowledgement was due")
                )
            return self._end(self._pending)
        if not event.data:
            if self._phase is _AuthPhase.AWAIT_AVPS and not self._prompted:
                # The handshake just ended: our Finished (1.2), tickets or an empty
                # Request (1.3) invites the peer's phase-2 AVPs.
                self._prompted = True
                return Reply(engine.next_type_data())
            return self._fail("protocol_error", "empty Response where AVPs were due")
        self._prompted = True
        try:
            avps = decode_avps(event.data)
        except DecodeError as exc:
            return self._fail("malformed", str(exc))
        unknown = unknown_mandatory(avps, _SERVER_KNOWN)
        if unknown is not None:
            return self._fail(
                "unsupported_avp",
                f"AVP {unknown.code} (vendor {unknown.vendor_id or 0}) with the M bit",
            )
        try:
            if self._phase is _AuthPhase.INNER_EAP:
                return self._inner_eap(avps)
            if self._phase is _AuthPhase.PAP_CODE:
                return self._pap_code(avps)
            return self._phase2(avps)
        except DecodeError as exc:
            return self._fail("malformed", str(exc))

    # -- phase 2 -----------------------------------------------------------------------------

    def _phase2(self, avps: list[Avp]) -> Step:
        inner = self._inner
        eap = _eap_data(avps)
        if eap:
            if not inner.eap:
                return self._fail("inner_method_not_allowed", "inner EAP is not offered")
            return self._start_inner_eap(eap)
        name_avp = _first(avps, AvpCode.USER_NAME)
        if name_avp is None:
            return self._fail("malformed", "phase-2 AVPs without User-Name")
        user = _text(name_avp.data, "User-Name", MAX_USER_NAME)
        self._user = user
        if not inner.realm_policy(self._ctx.identity_text, user):
            return self._fail("realm_mismatch", "inner and outer realms differ")
        password = _first(avps, AvpCode.USER_PASSWORD)
        if password is not None:
            return self._pap(user, password.data)
        chap = _first(avps, AvpCode.CHAP_PASSWORD)
        if chap is not None:
            return self._chap(user, chap.data, _first(avps, AvpCode.CHAP_CHALLENGE))
        response = _first(avps, AvpCode.MS_CHAP2_RESPONSE, MICROSOFT)
        if response is not None:
            challenge = _first(avps, AvpCode.MS_CHAP_CHALLENGE, MICROSOFT)
            return self._mschapv2(user, response.data, challenge)
        return self._fail("malformed", "no inner authentication AVPs")

    def _password_text(self, data: bytes) -> str:
        if len(data) > MAX_PASSWORD:
            raise DecodeError(f"User-Password of {len(data)} octets", expected="a password")
        try:
            return unpad_password(data).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("User-Password is not UTF-8") from None

    def _pap(self, user: str, data: bytes) -> Step:
        check = self._inner.pap
        self._inner_name = "pap"
        if check is None:
            return self._fail("inner_method_not_allowed", "PAP is not offered")
        verdict = check(user, self._password_text(data), self._ctx.now)
        if verdict.reason == CHALLENGE and isinstance(check, TwoRoundCheck):
            # RFC 5281 §11.2.5: a challenge goes to the peer as a Reply-Message.
            self._user = verdict.user or user
            self._code_check = check.second
            self._phase = _AuthPhase.PAP_CODE
            prompt = (verdict.detail or "One-time code: ").encode()
            return self._write(encode_avps([Avp(AvpCode.REPLY_MESSAGE, prompt)]))
        return self._verdict(verdict, user)

    def _pap_code(self, avps: list[Avp]) -> Step:
        assert self._code_check is not None and self._user is not None
        name = _first(avps, AvpCode.USER_NAME)
        if name is not None and _text(name.data, "User-Name", MAX_USER_NAME) != self._user:
            return self._fail("identity_mismatch", "User-Name changed between PAP rounds")
        password = _first(avps, AvpCode.USER_PASSWORD)
        if password is None:
            return self._fail("malformed", "no User-Password after the Reply-Message")
        code = self._password_text(password.data)
        return self._verdict(self._code_check(self._user, code, self._ctx.now), self._user)

    def _verdict(self, verdict: Verdict, user: str) -> Step:
        if verdict.ok:
            return self._success(verdict.user or user, _proved(verdict))
        return self._fail(verdict.reason, verdict.detail)

    def _chap(self, user: str, password: bytes, challenge: Avp | None) -> Step:
        lookup = self._inner.chap
        self._inner_name = "chap"
        if lookup is None:
            return self._fail("inner_method_not_allowed", "CHAP is not offered")
        if challenge is None or len(challenge.data) != CHALLENGE_LEN or len(password) != 17:
            return self._fail("malformed", "CHAP-Challenge of 16 and CHAP-Password of 17 octets")
        expected, ident = implicit_challenge(self._engine)
        if not hmac.compare_digest(challenge.data, expected) or password[0] != ident:
            return self._fail("challenge_mismatch", "CHAP challenge not from this tunnel")
        secret = lookup(user)
        stand_in = stand_in_secret(user, 16)
        digest = _chap_md5(ident, secret.encode() if secret is not None else stand_in, expected)
        match = hmac.compare_digest(digest, password[1:])
        if secret is None:
            return self._fail("unknown_user", "")
        if not match:
            return self._fail("bad_password", "")
        return self._success(user, frozenset({Factor.PASSWORD}))

    def _mschapv2(self, user: str, response: bytes, challenge: Avp | None) -> Step:
        lookup = self._inner.mschapv2
        self._inner_name = "mschapv2"
        if lookup is None:
            return self._fail("inner_method_not_allowed", "MS-CHAP-V2 is not offered")
        if (
            challenge is None
            or len(challenge.data) != CHALLENGE_LEN
            or len(response) != MSCHAP2_RESPONSE_LEN
        ):
            return self._fail(
                "malformed", "MS-CHAP-Challenge of 16 and MS-CHAP2-Response of 50 octets"
            )
        expected, ident = implicit_challenge(self._engine)
        if not hmac.compare_digest(challenge.data, expected) or response[0] != ident:
            return self._fail("challenge_mismatch", "MS-CHAP challenge not from this tunnel")
        peer_challenge, nt_response = response[2:18], response[26:50]
        name = user.encode()
        check = check_nt_response(lookup, user, expected, peer_challenge, name, nt_response)
        if check.nt_hash_hash is None:
            # RFC 2759 §6 failure packet, as the MS-CHAP-Error AVP carries it (RFC 2548)
            next_challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
            text = failure_message(691, False, next_challenge, 3, "Authentication failed")
            return self._tell(
                Outcome.failed(check.reason, "", identity=user),
                [Avp(AvpCode.MS_CHAP_ERROR, bytes([ident]) + text, MICROSOFT)],
            )
        digest = authenticator_response(
            check.nt_hash_hash, nt_response, peer_challenge, expected, name
        )
        success = bytes([ident]) + success_message(digest, self._inner.success_message)
        return self._tell(
            self._success_outcome(user, frozenset({Factor.PASSWORD})),
            [Avp(AvpCode.MS_CHAP2_SUCCESS, success, MICROSOFT)],
        )

    # -- inner EAP ---------------------------------------------------------------------------

    def _start_inner_eap(self, eap: bytes) -> Step:
        inner = self._inner
        self._session = AuthenticatorSession(
            inner.eap, config=inner.inner_session, now=self._ctx.now, random=self._ctx.random
        )
        self._phase = _AuthPhase.INNER_EAP
        self._inner_name = "eap"
        action = self._session.receive(eap)
        if isinstance(action, Send):  # the Identity was taken: check the realms
            self._user = self._session.identity.decode("utf-8", "backslashreplace")
            if not inner.realm_policy(self._ctx.identity_text, self._user):
                return self._fail("realm_mismatch", "inner and outer realms differ")
        return self._inner_action(action)

    def _inner_eap(self, avps: list[Avp]) -> Step:
        assert self._session is not None
        eap = _eap_data(avps)
        if not eap:
            return self._fail("malformed", "no EAP-Message during inner EAP")
        return self._inner_action(self._session.receive(eap))

    def _inner_action(self, action: Action) -> Step:
        assert self._session is not None
        self._inner_name = _inner_eap_name(self._session.method, self._inner.eap)
        return super()._inner_action(action)

    def _tunnel_packet(self, packet: bytes) -> bytes:
        return _eap_avp(packet)

    def _inner_discarded(self, reason: str) -> Step:
        return self._fail("malformed", f"inner EAP: {reason}")

    def _inner_finished(self, result: SessionResult) -> Step:
        self._user = result.user or self._user
        if result.success:
            return self._success(result.user, inner_factors(result))
        return self._fail(result.reason, f"inner EAP: {result.detail}".rstrip(": "))

    # -- endings ------------------------------------------------------------------------------

    def _tell(self, outcome: Outcome, avps: list[Avp]) -> Step:
        """Send result AVPs; the outcome holds once the peer acknowledges them."""
        if not outcome.success:
            outcome = replace(outcome, attributes={"inner_method": self._inner_name})
        self._pending = outcome
        self._phase = _AuthPhase.MSCHAPV2_RESULT
        return self._write(encode_avps(avps))

    def _keys(self) -> KeyMaterial:
        return derive_keys(self._engine, TTLS_KEY_LABEL)

    def _success_outcome(self, user: str, factors: frozenset[Factor]) -> Outcome:
        keys = self._keys()
        return self._tunnel_success(keys, user, self._tunnel_attributes(self._inner_name), factors)

    def _success(self, user: str, factors: frozenset[Factor]) -> Step:
        outcome = self._success_outcome(user, factors)
        if self._engine.has_output:  # e.g. our Finished, when the peer sent AVPs with its own
            self._pending = outcome
            self._phase = _AuthPhase.CLOSING
            return Reply(self._engine.next_type_data())
        return self._end(outcome)

    def _fail(self, reason: str, detail: str) -> Done:
        outcome = Outcome.failed(reason, detail, identity=self._user)
        if self._inner_name:
            outcome = replace(outcome, attributes={"inner_method": self._inner_name})
        return self._end(outcome)

    def _end(self, outcome: Outcome) -> Done:
        self._session = None
        return super()._end(outcome)


# -- peer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InnerPap:
    """Phase 2 by PAP.  ``challenge`` answers a Reply-Message (a second factor's prompt)
    with the code; without it such a challenge fails the conversation."""

    password: str = field(repr=False)
    challenge: Callable[[str], str] | None = None


@dataclass(frozen=True)
class InnerChap:
    """Phase 2 by CHAP (RFC 1994 MD5) over the implicit challenge."""

    password: str = field(repr=False)


@dataclass(frozen=True)
class InnerMsChapV2:
    """Phase 2 by MS-CHAP-V2 over the implicit challenge (the password or its NT hash)."""

    password: str | None = field(default=None, repr=False)
    nt_hash: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.nt_hash is None):
            raise ValueError("give exactly one of password and nt_hash")


@dataclass(frozen=True)
class InnerEap:
    """Phase 2 by EAP: these peer methods, in order of preference, in an inner
    :class:`~eapkit.session.PeerSession` (it Naks what it does not have)."""

    methods: Sequence[MethodFactory[Peer]]

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("inner EAP needs at least one method")


InnerMethod = InnerPap | InnerChap | InnerMsChapV2 | InnerEap


class _Watch:
    """The inner peer method's last step (the session keeps it to itself): the TTLS peer
    learns from it that the inner method would accept a Success."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: Done | None = None


class _WatchedPeer:
    def __init__(self, inner: Peer, watch: _Watch) -> None:
        self.method = inner.method
        self._inner = inner
        self._watch = watch

    def receive(self, type_data: bytes) -> Step:
        try:
            step = self._inner.receive(type_data)
        except DecodeError as exc:
            step = Done(Outcome.failed("malformed", str(exc)))
        except EapkitError as exc:
            step = Done(Outcome.failed("method_error", str(exc)))
        self._watch.done = step if isinstance(step, Done) else None
        return step


def _watched(factory: MethodFactory[Peer], watch: _Watch) -> MethodFactory[Peer]:
    return MethodFactory(
        factory.method, lambda ctx: _WatchedPeer(factory(ctx), watch), factory.name
    )


class _PeerPhase(enum.Enum):
    HANDSHAKE = "handshake"
    SENT = "sent"  # phase-2 AVPs sent


class TtlsPeer(TunnelPeerBase):
    """The peer role of EAP-TTLSv0 (see the module docstring).  With a session cache it
    offers the last session again; a resumed session the server asks nothing of skips
    phase 2."""

    method = TTLS
    _label = "EAP-TTLS"

    def __init__(
        self,
        ctx: MethodContext,
        context: TlsContext,
        inner: InnerMethod,
        identity: str | None,
        cache: SessionCache | None = None,
    ) -> None:
        self._inner = inner
        self._identity = identity if identity is not None else ctx.identity_text
        key = (context.config.server_name or "", ctx.identity, self._identity)
        super().__init__(ctx, context, EapType.TTLS, cache=cache, cache_key=key)
        self._phase = _PeerPhase.HANDSHAKE
        self._skipped = False  # a resumed session, phase 2 skipped
        self._watch = _Watch()
        self._session: PeerSession | None = None
        self._ident = 0
        self._nt_response = b""
        self._peer_challenge = b""
        self._nt_hash = b""

    @property
    def inner_name(self) -> str:
        inner = self._inner
        if isinstance(inner, InnerPap):
            return "pap"
        if isinstance(inner, InnerChap):
            return "chap"
        if isinstance(inner, InnerMsChapV2):
            return "mschapv2"
        return _inner_eap_name(self._session.method if self._session else None, inner.methods)

    def _message(self, event: Message) -> Step:
        engine = self._engine
        if not engine.handshake_done:
            return Reply(engine.next_type_data())
        if self._phase is _PeerPhase.HANDSHAKE:
            if engine.has_output and engine.resumed:
                # Our Finished ends a resumed handshake: the server may skip phase 2
                # and answer Success (hostapd), or ask more (handled below).
                self._phase, self._skipped = _PeerPhase.SENT, True
                step = self._send_last(self._ok("none"), final=False)
                engine.done_writing()
                return step
            if engine.has_output:  # TLS 1.3: our Finished goes first
                return Reply(engine.next_type_data())
            self._phase = _PeerPhase.SENT
            if engine.resumed and not event.data:
                # RFC 5281 §7.5: a resumed session and nothing asked: phase 2 is
                # skipped; acknowledge, a Success may follow (as wpa_supplicant does)
                self._skipped = True
                engine.done_writing()
                return self._send_last(self._ok("none"), final=False)
            try:
                return self._open_phase2()
            except ValueError as exc:  # a credential the inner method cannot carry
                return self._send_last(Outcome.failed("bad_credentials", str(exc)))
        if self._skipped and event.data in (b"", b"\x00"):
            # phase 2 skipped: an empty Request or TLS 1.3 tickets and a commitment
            # (0x00, FreeRADIUS): acknowledge and keep the success (wpa_supplicant too)
            return self._send_last(self._ok("none"), final=False)
        if not event.data:
            return Reply(engine.ack())
        try:
            avps = decode_avps(event.data)
        except DecodeError as exc:
            return self._send_last(Outcome.failed("malformed", str(exc)))
        unknown = unknown_mandatory(avps, _PEER_KNOWN)
        if unknown is not None:
            return self._send_last(
                Outcome.failed(
                    "unsupported_avp",
                    f"AVP {unknown.code} (vendor {unknown.vendor_id or 0}) with the M bit",
                )
            )
        inner = self._inner
        if isinstance(inner, InnerEap):
            return self._inner_eap(avps)
        if isinstance(inner, InnerMsChapV2):
            return self._mschapv2_result(avps)
        if isinstance(inner, InnerPap):
            return self._pap_challenge(inner, avps)
        return self._send_last(Outcome.failed("protocol_error", "data after CHAP"))

    # -- phase 2 -------------------------------------------------------------------------

    def _user_name(self) -> Avp:
        return Avp(AvpCode.USER_NAME, self._identity.encode())

    def _open_phase2(self) -> Step:
        inner = self._inner
        if isinstance(inner, InnerEap):
            watch = self._watch
            self._session = PeerSession(
                [_watched(f, watch) for f in inner.methods],
                self._identity,
                config=SessionConfig(max_rounds=20),
                now=self._ctx.now,
                random=self._ctx.random,
            )
            # RFC 5281 §11.2.1: the peer starts with an EAP-Response/Identity
            asked = Identity(Code.REQUEST, 0, b"").encode()
            return self._inner_action(self._session.receive(asked))
        if isinstance(inner, InnerPap):
            avps = [
                self._user_name(),
                Avp(AvpCode.USER_PASSWORD, pad_password(inner.password.encode())),
            ]
            return self._write_avps_last(avps, self._ok(), final=False)
        challenge, ident = implicit_challenge(self._engine)
        if isinstance(inner, InnerChap):
            digest = _chap_md5(ident, inner.password.encode(), challenge)
            avps = [
                self._user_name(),
                Avp(AvpCode.CHAP_CHALLENGE, challenge),
                Avp(AvpCode.CHAP_PASSWORD, bytes([ident]) + digest),
            ]
            return self._write_avps_last(avps, self._ok(), final=False)
        self._nt_hash = (
            nt_password_hash(inner.password) if inner.password is not None else inner.nt_hash or b""
        )
        if len(self._nt_hash) != NT_HASH_LEN:
            raise ValueError("nt_hash must be 16 bytes")
        self._ident = ident
        self._peer_challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
        name = self._identity.encode()
        self._nt_response = nt_hash_keys(self._nt_hash).challenge_response(
            challenge_hash(self._peer_challenge, challenge, name)
        )
        response = bytes([ident, 0]) + self._peer_challenge + bytes(8) + self._nt_response
        avps = [
            self._user_name(),
            Avp(AvpCode.MS_CHAP_CHALLENGE, challenge, MICROSOFT),
            Avp(AvpCode.MS_CHAP2_RESPONSE, response, MICROSOFT),
        ]
        return self._write(encode_avps(avps))

    def _mschapv2_result(self, avps: list[Avp]) -> Step:
        success = _first(avps, AvpCode.MS_CHAP2_SUCCESS, MICROSOFT)
        if success is not None:
            data = success.data
            challenge, _ = implicit_challenge(self._engine)
            expected = authenticator_response_digest(
                nt_hash_keys(self._nt_hash).nt_hash_hash,
                self._nt_response,
                self._peer_challenge,
                challenge,
                self._identity.encode(),
            )
            given = b"S=" + expected.hex().upper().encode()
            # RFC 2759 §8.8: compare in constant time, hex in either case
            if (
                len(data) >= 43
                and data[0] == self._ident
                and hmac.compare_digest(data[1:43].upper(), given)
            ):
                return self._send_last(self._ok(), final=True)
            return self._send_last(
                Outcome.failed(
                    "bad_authenticator_response",
                    "the server did not prove it knows the password",
                )
            )
        error = _first(avps, AvpCode.MS_CHAP_ERROR, MICROSOFT)
        if error is not None:
            text = error.data[1:].decode("utf-8", "replace")
            reason = "authentication_failure" if "E=691" in text or not text else "server_error"
            return self._send_last(Outcome.failed(reason, text[:200]))
        return self._send_last(Outcome.failed("protocol_error", "no MS-CHAP-V2 result"))

    def _pap_challenge(self, inner: InnerPap, avps: list[Avp]) -> Step:
        prompt = _first(avps, AvpCode.REPLY_MESSAGE)
        if prompt is None or inner.challenge is None:
            return self._send_last(Outcome.failed("protocol_error", "unexpected PAP challenge"))
        code = inner.challenge(prompt.data.decode("utf-8", "replace"))
        avps_out = [self._user_name(), Avp(AvpCode.USER_PASSWORD, pad_password(code.encode()))]
        return self._write_avps_last(avps_out, self._ok(), final=False)

    def _inner_eap(self, avps: list[Avp]) -> Step:
        assert self._session is not None
        eap = _eap_data(avps)
        if not eap:
            return self._send_last(Outcome.failed("malformed", "no EAP-Message in inner EAP"))
        self._watch.done = None
        return self._inner_action(self._session.receive(eap))

    def _tunnel_packet(self, packet: bytes) -> bytes:
        return _eap_avp(packet)

    def _inner_finished(self, result: SessionResult) -> Step:
        # a server that tunnels the inner Success/Failure
        outcome = self._ok() if result.success else Outcome.failed(result.reason, result.detail)
        return self._send_last(outcome)

    def _inner_discarded(self, reason: str) -> Step:
        done = self._watch.done
        if done is not None and done.outcome.success and done.type_data is None:
            return self._send_last(self._ok(), final=done.final)
        return self._send_last(Outcome.failed("malformed", f"inner EAP: {reason}"))

    def _inner_send(self, packet: bytes) -> Step:
        done = self._watch.done
        data = self._tunnel_packet(packet)
        if done is None:
            return self._write(data)
        if done.outcome.success:
            # The inner method would take a Success; it may still be asked more (MAY_CONT).
            return self._write_last(data, self._ok(), final=False)
        outcome = done.outcome
        return self._write_last(data, Outcome.failed(outcome.reason, outcome.detail))

    # -- endings ---------------------------------------------------------------------------

    def _ok(self, inner_method: str | None = None) -> Outcome:
        """Success; ``inner_method`` is ``"none"`` when phase 2 was skipped."""
        attrs = self._tunnel_attributes(inner_method or self.inner_name)
        return Outcome(True, "ok", derive_keys(self._engine, TTLS_KEY_LABEL), None, "", attrs)

    def _write_avps_last(self, avps: list[Avp], outcome: Outcome, final: bool = True) -> Step:
        return self._write_last(encode_avps(avps), outcome, final)


# -- factories -----------------------------------------------------------------------------


def ttls_authenticator(
    config: TlsConfig | TlsContext,
    *,
    pap: ResponseCheck | None = None,
    chap: CleartextLookup | None = None,
    mschapv2: NtHashLookup | None = None,
    eap: Sequence[MethodFactory[Authenticator]] = (),
    realm_policy: RealmPolicy = any_realm,
    inner_session: SessionConfig | None = None,
    success_message: str = "",
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`.

    The inner methods offered are those given: ``pap`` (a password check, possibly a
    two-factor combinator), ``chap`` (cleartext passwords), ``mschapv2`` (NT hashes),
    ``eap`` (inner EAP method factories, in order of preference).  ``config`` is the
    server's TLS configuration; TTLS servers usually set ``verify_peer=False`` (no
    client certificate).  The TLS context is built once and shared by conversations (a
    built :class:`~eapkit.tlsio.TlsContext` may be given instead of the configuration).
    """
    if pap is None and chap is None and mschapv2 is None and not eap:
        raise ConfigError("EAP-TTLS needs at least one inner method")
    inner = _ServerInner(
        pap=pap,
        chap=chap,
        mschapv2=mschapv2,
        eap=tuple(eap),
        realm_policy=realm_policy,
        success_message=success_message,
    )
    if inner_session is not None:
        inner = replace(inner, inner_session=replace(inner_session, identity_round=False))
    context = config if isinstance(config, TlsContext) else TlsContext(config, TlsRole.SERVER)
    if not context.is_server:
        raise ConfigError("the authenticator needs a server TLS context")
    return MethodFactory(TTLS, lambda ctx: TtlsAuthenticator(ctx, context, inner), "ttls", True)


def ttls_peer(
    config: TlsConfig,
    inner: InnerMethod,
    identity: str | None = None,
    cache: SessionCache | None = None,
) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`: ``inner`` is the phase-2
    method, ``identity`` the inner identity (default: the outer EAP Identity, which may
    then be anonymous).  With ``config.resumption`` (the default) the factory keeps the
    sessions (in ``cache``, or its own) and offers them on the next authentication."""
    context = TlsContext(config, TlsRole.PEER)
    if cache is None and config.resumption:
        cache = SessionCache()
    return MethodFactory(TTLS, lambda ctx: TtlsPeer(ctx, context, inner, identity, cache), "ttls")
