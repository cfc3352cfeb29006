"""EAP-MSCHAPv2 (EAP type 26, draft-kamath-pppext-eap-mschapv2-02), both roles.

MS-CHAPv2 (RFC 2759) carried in EAP.  Every message starts with an OpCode; all but the
peer's one-byte acknowledgements go on with an MS-CHAPv2-ID and an MS-Length (the length
of the whole Type-Data)::

    Authenticator                                         Peer
      Challenge   1 | id | len | 16 | Challenge | Name  ->
               <-  Response 2 | id | len | 49 | Peer-Challenge | 8 zero | NT-Response
                              | Flags | Name
      Success     3 | id | len | "S=<40 hex> M=<text>" ->
               <-  Success 3                                    (then EAP-Success)
    or
      Failure     4 | id | len | "E=691 R=1 C=<32 hex> V=3 M=<text>" ->
               <-  Failure 4                                    (then EAP-Failure)
               <-  Response 2 ...   computed over C, when R=1 (retry)
               <-  Change-Password 7 | id | len | Encrypted-Password (516)
                              | Encrypted-Hash (16) | Peer-Challenge | 8 zero
                              | NT-Response | Flags (2)     after E=648 (expired), V=3

The authenticator stores no password: an injected :class:`NtHashLookup` gives the user's
NT hash, or ``None``.  An unknown user is checked against a stand-in hash derived from
the name with a process-secret key, through the same code and the same cache
(:mod:`eapkit.methods.mschapv2_check`, shared with EAP-TTLS's inner MS-CHAP-V2), and gets
the same Failure (E=691, same R, a fresh C, same text): the wire and the time do not say
which users exist.  A :class:`PasswordChange` (optional) says when a password has
expired and stores the new hash after a Change-Password.

The peer verifies the authenticator response of the Success Request (mutual
authentication, RFC 2759 §8.8) and refuses the Success with a Failure Response when it
is wrong.

Keys
----

MS-CHAPv2 gives two 16-byte keys (RFC 3079 §3.4 GetAsymmetricStartKey from the master
key); the peer's send key is the authenticator's receive key.  Who does what with them:

- hostapd (``eap_server_mschapv2.c`` / ``eap_peer/eap_mschapv2.c`` getKey) exports a
  32-byte key that both sides compute alike: the authenticator's MasterReceiveKey then
  its MasterSendKey (the peer's send key then its receive key), citing [MS-CHAP]
  §3.1.5.1.  Its RADIUS server splits it in halves: MS-MPPE-Recv-Key = key[0:16],
  MS-MPPE-Send-Key = key[16:32].
- [MS-CHAP] §3.1.5.1: MSK = MasterReceiveKey | MasterSendKey | 32 zero bytes, with
  MS-MPPE-Recv-Key = MasterReceiveKey and MS-MPPE-Send-Key = MasterSendKey on the
  authenticator.
- FreeRADIUS (rlm_mschap, used by rlm_eap_mschapv2) sends the two 16-byte keys as
  MS-MPPE-Recv-Key / MS-MPPE-Send-Key.
- ``eapol_test`` compares the first 32 bytes of its MSK with MS-MPPE-Recv-Key, and
  when the Recv-Key and Send-Key are 16 bytes each it compares with Recv | Send.
- strongSwan's RADIUS code splits an MSK into MS-MPPE-Recv-Key = first half and
  MS-MPPE-Send-Key = second half, and its eap-radius client joins them in that order.
  In IKEv2 the MSK is an HMAC key, and trailing zeros up to the hash's block size do not
  change an HMAC, so 32 bytes and the zero-padded 64 give the same AUTH.

eapkit's MSK is therefore [MS-CHAP]'s 64 bytes (:func:`eapkit.crypto.mschap.mschapv2_msk`)::

    MSK = MasterReceiveKey | MasterSendKey | 32 zero bytes   (as seen by the authenticator)

the same on both sides, hostapd's 32 bytes followed by zeros.  ``KeyMaterial.mppe_key_length``
is 16, so the RADIUS layer sends MS-MPPE-Recv-Key = MasterReceiveKey and MS-MPPE-Send-Key =
MasterSendKey, 16 octets each, as FreeRADIUS and hostapd do: ``eapol_test`` joins them into
the 32 bytes it checks, strongSwan into the MSK a Windows client computes (HMAC pads it).
MS-CHAPv2 defines no EMSK (hostapd derives none): ``KeyMaterial.emsk`` is empty, and so
is the Session-Id (RFC 5247 defines none for this method).
"""

from __future__ import annotations

import enum
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from eapkit.crypto.mschap import (
    CHALLENGE_LEN,
    NT_HASH_LEN,
    NT_RESPONSE_LEN,
    PW_BLOCK_LEN,
    authenticator_response_digest,
    challenge_hash,
    decrypt_pw_block_with_password_hash,
    get_master_key,
    mschapv2_msk,
    new_password_encrypted_with_old_nt_password_hash,
    nt_hash_keys,
    nt_password_hash,
    old_nt_password_hash_encrypted_with_new_nt_password_hash,
    strip_domain,
)
from eapkit.errors import ConfigError, DecodeError, need
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
from eapkit.packet import EapType, MethodId

__all__ = [
    "MSCHAPV2",
    "MsChapV2Authenticator",
    "MsChapV2Challenge",
    "MsChapV2ChangePassword",
    "MsChapV2Error",
    "MsChapV2FailureRequest",
    "MsChapV2FailureResponse",
    "MsChapV2Peer",
    "MsChapV2Response",
    "MsChapV2SuccessRequest",
    "MsChapV2SuccessResponse",
    "NtHashLookup",
    "OpCode",
    "PasswordChange",
    "decode_request",
    "decode_response",
    "mschapv2_authenticator",
    "mschapv2_peer",
]

MSCHAPV2 = MethodId.legacy(EapType.MSCHAPV2)

_HEADER = struct.Struct("!BBH")  # OpCode, MS-CHAPv2-ID, MS-Length
RESPONSE_VALUE_SIZE = 49  # Peer-Challenge 16 + Reserved 8 + NT-Response 24 + Flags 1
MAX_NAME = 256


class OpCode(enum.IntEnum):
    """draft-kamath-pppext-eap-mschapv2-02 §2."""

    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


class MsChapV2Error(enum.IntEnum):
    """The E= codes of RFC 2759 §6."""

    RESTRICTED_LOGON_HOURS = 646
    ACCT_DISABLED = 647
    PASSWD_EXPIRED = 648
    NO_DIALIN_PERMISSION = 649
    AUTHENTICATION_FAILURE = 691
    CHANGING_PASSWORD = 709


_ERROR_REASONS = {
    646: "restricted_logon_hours",
    647: "account_disabled",
    648: "password_expired",
    649: "no_dialin_permission",
    691: "authentication_failure",
    709: "password_change_failed",
}


# -- messages --------------------------------------------------------------------------


def _check_octet(value: int, what: str) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} is not an octet")


def _check_bytes(value: bytes, length: int, what: str) -> None:
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, not {len(value)}")


def _with_header(op: OpCode, ms_chap_id: int, body: bytes) -> bytes:
    length = _HEADER.size + len(body)
    if length > 0xFFFF:
        raise ValueError(f"EAP-MSCHAPv2 message of {length} bytes")
    return _HEADER.pack(op, ms_chap_id, length) + body


def _text(data: bytes, offset: int, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8 text", offset=offset) from None


@dataclass(frozen=True, slots=True)
class MsChapV2Challenge:
    """Challenge Request (OpCode 1): the authenticator's 16-byte challenge and name."""

    ms_chap_id: int
    challenge: bytes
    name: bytes = b""

    def __post_init__(self) -> None:
        _check_octet(self.ms_chap_id, "MS-CHAPv2-ID")
        _check_bytes(self.challenge, CHALLENGE_LEN, "challenge")

    def encode(self) -> bytes:
        body = bytes([CHALLENGE_LEN]) + self.challenge + self.name
        return _with_header(OpCode.CHALLENGE, self.ms_chap_id, body)


@dataclass(frozen=True, slots=True)
class MsChapV2Response:
    """Response (OpCode 2): Peer-Challenge, NT-Response, Flags and the peer's name."""

    ms_chap_id: int
    peer_challenge: bytes
    nt_response: bytes
    name: bytes = b""
    flags: int = 0
    reserved: bytes = bytes(8)

    def __post_init__(self) -> None:
        _check_octet(self.ms_chap_id, "MS-CHAPv2-ID")
        _check_octet(self.flags, "Flags")
        _check_bytes(self.peer_challenge, CHALLENGE_LEN, "peer_challenge")
        _check_bytes(self.nt_response, NT_RESPONSE_LEN, "nt_response")
        _check_bytes(self.reserved, 8, "reserved")

    def encode(self) -> bytes:
        body = bytes([RESPONSE_VALUE_SIZE]) + self.peer_challenge + self.reserved
        body += self.nt_response + bytes([self.flags]) + self.name
        return _with_header(OpCode.RESPONSE, self.ms_chap_id, body)


_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")
_DIGITS = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class MsChapV2SuccessRequest:
    """Success Request (OpCode 3): ``S=<authenticator response> M=<message>``."""

    ms_chap_id: int
    authenticator_response: bytes = field(repr=False)
    message: str = ""

    def __post_init__(self) -> None:
        _check_octet(self.ms_chap_id, "MS-CHAPv2-ID")
        _check_bytes(self.authenticator_response, 20, "authenticator_response")

    def encode(self) -> bytes:
        body = success_message(self.authenticator_response, self.message)
        return _with_header(OpCode.SUCCESS, self.ms_chap_id, body)

    @classmethod
    def parse(cls, ms_chap_id: int, body: bytes) -> MsChapV2SuccessRequest:
        text = _text(body, _HEADER.size, "Success message")
        if not text.startswith("S=") or not _HEX40.fullmatch(text[2:42]):
            raise DecodeError("Success message without S=<40 hex>", offset=_HEADER.size)
        rest = text[42:].lstrip(" ")
        message = rest[2:] if rest.startswith("M=") else rest
        return cls(ms_chap_id, bytes.fromhex(text[2:42]), message)


@dataclass(frozen=True, slots=True)
class MsChapV2FailureRequest:
    """Failure Request (OpCode 4): ``E=<error> R=<0|1> C=<32 hex> V=<version> M=<text>``
    (RFC 2759 §6).  ``challenge`` (C) is the next authenticator challenge, for a retry
    or a Change-Password; ``version`` 3 offers Change-Password."""

    ms_chap_id: int
    error: int
    retry: bool = False
    challenge: bytes | None = None
    version: int | None = 3
    message: str = ""

    def __post_init__(self) -> None:
        _check_octet(self.ms_chap_id, "MS-CHAPv2-ID")
        if not 0 <= self.error <= 9_999_999_999:
            raise ValueError(f"error code {self.error} out of range")
        if self.version is not None and not 0 <= self.version <= 9_999_999_999:
            raise ValueError(f"version {self.version} out of range")
        if self.challenge is not None:
            _check_bytes(self.challenge, CHALLENGE_LEN, "challenge")

    @property
    def reason(self) -> str:
        return _ERROR_REASONS.get(self.error, "mschapv2_error")

    def encode(self) -> bytes:
        body = failure_message(self.error, self.retry, self.challenge, self.version, self.message)
        return _with_header(OpCode.FAILURE, self.ms_chap_id, body)

    @classmethod
    def parse(cls, ms_chap_id: int, body: bytes) -> MsChapV2FailureRequest:
        text = _text(body, _HEADER.size, "Failure message")
        fields: dict[str, str] = {}
        rest = text
        # E, R, C and V are single words in this order; M takes the rest of the text.
        for key in ("E", "R", "C", "V"):
            if not rest.startswith(key + "="):
                continue
            word, _, rest = rest[2:].partition(" ")
            fields[key] = word
        if rest.startswith("M="):
            fields["M"] = rest[2:]
        elif rest:
            raise DecodeError("Failure message has unknown fields", offset=_HEADER.size)
        if "E" not in fields or not _DIGITS.fullmatch(fields["E"]):
            raise DecodeError("Failure message without E=<code>", offset=_HEADER.size)
        retry = fields.get("R", "0")
        if retry not in ("0", "1"):
            raise DecodeError("Failure message R= is not 0 or 1", offset=_HEADER.size)
        challenge = None
        if "C" in fields:
            if not _HEX32.fullmatch(fields["C"]):
                raise DecodeError("Failure message C= is not 32 hex", offset=_HEADER.size)
            challenge = bytes.fromhex(fields["C"])
        version = None
        if "V" in fields:
            if not _DIGITS.fullmatch(fields["V"]):
                raise DecodeError("Failure message V= is not a number", offset=_HEADER.size)
            version = int(fields["V"])
        return cls(
            ms_chap_id,
            int(fields["E"]),
            retry == "1",
            challenge,
            version,
            fields.get("M", ""),
        )


@dataclass(frozen=True, slots=True)
class MsChapV2SuccessResponse:
    """The peer's Success acknowledgement: the OpCode alone."""

    def encode(self) -> bytes:
        return bytes([OpCode.SUCCESS])


@dataclass(frozen=True, slots=True)
class MsChapV2FailureResponse:
    """The peer's Failure acknowledgement: the OpCode alone."""

    def encode(self) -> bytes:
        return bytes([OpCode.FAILURE])


_CHANGE_PASSWORD = struct.Struct(f"!{PW_BLOCK_LEN}s16s16s8s24sH")


@dataclass(frozen=True, slots=True)
class MsChapV2ChangePassword:
    """Change-Password (OpCode 7, RFC 2759 §7 as carried by EAP): the new password
    encrypted with the old hash, the old hash encrypted with the new, and a Response
    computed with the new password over the Failure's challenge."""

    ms_chap_id: int
    encrypted_password: bytes = field(repr=False)
    encrypted_hash: bytes = field(repr=False)
    peer_challenge: bytes
    nt_response: bytes
    flags: int = 0
    reserved: bytes = bytes(8)

    def __post_init__(self) -> None:
        _check_octet(self.ms_chap_id, "MS-CHAPv2-ID")
        if not 0 <= self.flags <= 0xFFFF:
            raise ValueError(f"Flags {self.flags} is not 16 bits")
        _check_bytes(self.encrypted_password, PW_BLOCK_LEN, "encrypted_password")
        _check_bytes(self.encrypted_hash, NT_HASH_LEN, "encrypted_hash")
        _check_bytes(self.peer_challenge, CHALLENGE_LEN, "peer_challenge")
        _check_bytes(self.reserved, 8, "reserved")
        _check_bytes(self.nt_response, NT_RESPONSE_LEN, "nt_response")

    def encode(self) -> bytes:
        body = _CHANGE_PASSWORD.pack(
            self.encrypted_password,
            self.encrypted_hash,
            self.peer_challenge,
            self.reserved,
            self.nt_response,
            self.flags,
        )
        return _with_header(OpCode.CHANGE_PASSWORD, self.ms_chap_id, body)


RequestMessage = MsChapV2Challenge | MsChapV2SuccessRequest | MsChapV2FailureRequest
ResponseMessage = (
    MsChapV2Response | MsChapV2SuccessResponse | MsChapV2FailureResponse | MsChapV2ChangePassword
)


def _header(data: bytes) -> tuple[int, int, bytes]:
    need(data, 0, _HEADER.size, "EAP-MSCHAPv2 header")
    op, ms_chap_id, length = _HEADER.unpack_from(data)
    if length != len(data):
        raise DecodeError(
            f"MS-Length {length} does not match the {len(data)}-byte Type-Data",
            offset=2,
            expected=str(len(data)),
        )
    return op, ms_chap_id, bytes(data[_HEADER.size :])


def decode_request(data: bytes) -> RequestMessage:
    """Decode the Type-Data of an EAP-MSCHAPv2 Request (authenticator to peer)."""
    data = bytes(data)
    op, ms_chap_id, body = _header(data)
    if op == OpCode.CHALLENGE:
        need(body, 0, 1 + CHALLENGE_LEN, "Challenge")
        if body[0] != CHALLENGE_LEN:
            raise DecodeError(
                f"Value-Size {body[0]}", offset=_HEADER.size, expected=str(CHALLENGE_LEN)
            )
        return MsChapV2Challenge(ms_chap_id, body[1:17], body[17:])
    if op == OpCode.SUCCESS:
        return MsChapV2SuccessRequest.parse(ms_chap_id, body)
    if op == OpCode.FAILURE:
        return MsChapV2FailureRequest.parse(ms_chap_id, body)
    raise DecodeError(f"OpCode {op} in a Request", expected="1, 3 or 4")


def decode_response(data: bytes) -> ResponseMessage:
    """Decode the Type-Data of an EAP-MSCHAPv2 Response (peer to authenticator)."""
    data = bytes(data)
    need(data, 0, 1, "OpCode")
    op = data[0]
    # The acknowledgements are the OpCode alone (hostapd reads nothing more either).
    if op == OpCode.SUCCESS:
        return MsChapV2SuccessResponse()
    if op == OpCode.FAILURE:
        return MsChapV2FailureResponse()
    if op == OpCode.RESPONSE:
        _, ms_chap_id, body = _header(data)
        need(body, 0, 1 + RESPONSE_VALUE_SIZE, "Response")
        if body[0] != RESPONSE_VALUE_SIZE:
            raise DecodeError(
                f"Value-Size {body[0]}", offset=_HEADER.size, expected=str(RESPONSE_VALUE_SIZE)
            )
        return MsChapV2Response(
            ms_chap_id,
            peer_challenge=body[1:17],
            reserved=body[17:25],
            nt_response=body[25:49],
            flags=body[49],
            name=body[50:],
        )
    if op == OpCode.CHANGE_PASSWORD:
        _, ms_chap_id, body = _header(data)
        if len(body) != _CHANGE_PASSWORD.size:
            raise DecodeError(
                f"Change-Password of {len(body)} bytes",
                offset=_HEADER.size,
                expected=f"{_CHANGE_PASSWORD.size} bytes",
            )
        enc_pw, enc_hash, peer_challenge, reserved, nt_response, flags = _CHANGE_PASSWORD.unpack(
            body
        )
        return MsChapV2ChangePassword(
            ms_chap_id, enc_pw, enc_hash, peer_challenge, nt_response, flags, reserved
        )
    raise DecodeError(f"OpCode {op} in a Response", expected="2, 3, 4 or 7")


# -- credentials -------------------------------------------------------------------------


class PasswordChange(Protocol):
    """Password expiry and change (RFC 2759 §7) for the authenticator."""

    def expired(self, user: str) -> bool:
        """Must this user change the password before getting in?"""
        ...

    def change(self, user: str, new_nt_hash: bytes) -> bool:
        """Store the new NT hash; ``False`` refuses it (policy, history, store down)."""
        ...


def _keys_for(nt_hash_hash: bytes, nt_response: bytes) -> KeyMaterial:
    master = get_master_key(nt_hash_hash, nt_response)
    return KeyMaterial(msk=mschapv2_msk(master), emsk=b"", mppe_key_length=16)


# -- authenticator -------------------------------------------------------------------------


class _AuthState(enum.Enum):
    START = "start"
    CHALLENGE_SENT = "challenge_sent"
    SUCCESS_SENT = "success_sent"
    FAILURE_SENT = "failure_sent"
    DONE = "done"


class MsChapV2Authenticator:
    """The server role (hostapd's ``eap_server_mschapv2.c`` does the same job).

    States: START -start()-> CHALLENGE_SENT -Response-> SUCCESS_SENT or FAILURE_SENT;
    SUCCESS_SENT -Success ack-> done (keys); FAILURE_SENT -Failure ack-> done (failed),
    -Response (retry allowed)-> as from CHALLENGE_SENT, -Change-Password (expired)->
    SUCCESS_SENT or FAILURE_SENT.  Anything else ends the method with a Failure.
    """

    method = MSCHAPV2

    def __init__(
        self,
        ctx: MethodContext,
        lookup: NtHashLookup,
        *,
        server_name: bytes = b"eapkit",
        max_retries: int = 0,
        password_change: PasswordChange | None = None,
        success_message: str = "Authentication succeeded",
        failure_message: str = "Authentication failed",
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self._ctx = ctx
        self._lookup = lookup
        self._server_name = server_name
        self._retries_left = max_retries
        self._password_change = password_change
        self._success_message = success_message
        self._failure_message = failure_message
        self._state = _AuthState.START
        self._ms_chap_id = 0
        self._challenge = b""
        self._user = ""
        self._name = b""
        self._reason = "authentication_failure"
        self._retry_allowed = False
        self._old_hash: bytes | None = None  # set while a Change-Password may come
        self._keys: KeyMaterial | None = None

    def start(self) -> bytes:
        if self._state is not _AuthState.START:
            raise RuntimeError("start() opens the method once")
        self._ms_chap_id = self._ctx.random.random_bytes(1)[0]
        self._challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
        self._state = _AuthState.CHALLENGE_SENT
        return MsChapV2Challenge(self._ms_chap_id, self._challenge, self._server_name).encode()

    def receive(self, type_data: bytes) -> Step:
        try:
            msg = decode_response(type_data)
        except DecodeError as exc:
            return self._end(Outcome.failed("malformed", str(exc), self._identity()))
        state = self._state
        if state is _AuthState.CHALLENGE_SENT and isinstance(msg, MsChapV2Response):
            return self._response(msg)
        if state is _AuthState.SUCCESS_SENT:
            if isinstance(msg, MsChapV2SuccessResponse):
                outcome = Outcome.ok(self._keys, self._user)
                return self._end(replace(outcome, factors=frozenset({Factor.PASSWORD})))
            if isinstance(msg, MsChapV2FailureResponse):
                return self._end(
                    Outcome.failed(
                        "peer_rejected", "peer refused the authenticator response", self._user
                    )
                )
        if state is _AuthState.FAILURE_SENT:
            if isinstance(msg, MsChapV2FailureResponse):
                return self._end(Outcome.failed(self._reason, "", self._identity()))
            if isinstance(msg, MsChapV2Response) and self._retry_allowed:
                return self._response(msg)
            if isinstance(msg, MsChapV2ChangePassword) and self._old_hash is not None:
                return self._change_password(msg)
        return self._end(
            Outcome.failed(
                "protocol_error", f"{type(msg).__name__} in state {state.value}", self._identity()
            )
        )

    # -- internals ---------------------------------------------------------------------

    def _identity(self) -> str | None:
        return self._user or None

    def _end(self, outcome: Outcome) -> Done:
        self._state = _AuthState.DONE
        self._keys = None
        return Done(outcome)

    def _response(self, msg: MsChapV2Response) -> Step:
        identity = self._ctx.identity
        if len(msg.name) > MAX_NAME or len(identity) > MAX_NAME:
            # RFC 2759 §4: a user name has at most 256 characters
            return self._end(Outcome.failed("malformed", "user name longer than 256 bytes"))
        # RFC 2759 §8.2 hashes the name without its domain; like hostapd, the name must
        # be the EAP identity's (domains aside).
        if identity and strip_domain(identity) != strip_domain(msg.name):
            return self._end(
                Outcome.failed("identity_mismatch", "MS-CHAPv2 Name differs from the EAP Identity")
            )
        self._name = msg.name
        self._user = self._ctx.identity_text or msg.name.decode("utf-8", "backslashreplace")
        check = check_nt_response(
            self._lookup,
            self._user,
            self._challenge,
            msg.peer_challenge,
            msg.name,
            msg.nt_response,
        )
        self._ms_chap_id = msg.ms_chap_id
        if check.nt_hash_hash is None:
            return self._failure(MsChapV2Error.AUTHENTICATION_FAILURE, check.reason)
        stored = check.nt_hash  # None when a directory checked the response (no change then)
        if (
            stored is not None
            and self._password_change is not None
            and self._password_change.expired(self._user)
        ):
            self._old_hash = stored
            return self._failure(
                MsChapV2Error.PASSWD_EXPIRED, "password_expired", retry=False, change=True
            )
        return self._success(check.nt_hash_hash, msg.peer_challenge, msg.nt_response)

    def _success(self, nt_hash_hash: bytes, peer_challenge: bytes, nt_response: bytes) -> Reply:
        digest = authenticator_response(
            nt_hash_hash, nt_response, peer_challenge, self._challenge, self._name
        )
        self._keys = _keys_for(nt_hash_hash, nt_response)
        self._old_hash = None
        self._state = _AuthState.SUCCESS_SENT
        request = MsChapV2SuccessRequest(self._ms_chap_id, digest, self._success_message)
        return Reply(request.encode())

    def _failure(
        self, error: MsChapV2Error, reason: str, *, retry: bool | None = None, change: bool = False
    ) -> Reply:
        if retry is None:
            retry = self._retries_left > 0
            self._retries_left -= int(retry)
        self._reason = reason
        self._retry_allowed = retry
        if not change:
            self._old_hash = None
        # A fresh C every time, retry or not, so every failure looks alike.
        self._challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
        self._state = _AuthState.FAILURE_SENT
        message = "Password expired" if change else self._failure_message
        if error == MsChapV2Error.CHANGING_PASSWORD:
            message = "Password change failed"
        request = MsChapV2FailureRequest(
            self._ms_chap_id, int(error), retry, self._challenge, 3, message
        )
        return Reply(request.encode())

    def _change_password(self, msg: MsChapV2ChangePassword) -> Step:
        assert self._old_hash is not None and self._password_change is not None
        old_hash = self._old_hash
        self._ms_chap_id = msg.ms_chap_id
        try:
            new_password = decrypt_pw_block_with_password_hash(msg.encrypted_password, old_hash)
            new_hash = nt_password_hash(new_password)
        except (DecodeError, ValueError):
            return self._failure(
                MsChapV2Error.CHANGING_PASSWORD, "password_change_failed", retry=False
            )
        expected_hash = old_nt_password_hash_encrypted_with_new_nt_password_hash(
            new_nt_hash=new_hash, old_nt_hash=old_hash
        )
        proof = hmac.compare_digest(expected_hash, msg.encrypted_hash)
        valid = nt_hash_keys(new_hash).verify_nt_response(
            self._challenge, msg.peer_challenge, self._name, msg.nt_response
        )
        if not (proof and valid):
            return self._failure(
                MsChapV2Error.CHANGING_PASSWORD, "password_change_failed", retry=False
            )
        if not self._password_change.change(self._user, new_hash):
            return self._failure(
                MsChapV2Error.CHANGING_PASSWORD, "password_change_refused", retry=False
            )
        return self._success(
            nt_hash_keys(new_hash).nt_hash_hash, msg.peer_challenge, msg.nt_response
        )


# -- peer ------------------------------------------------------------------------------


class _PeerState(enum.Enum):
    START = "start"
    RESPONDED = "responded"
    DONE = "done"


RetryPolicy = Callable[[MsChapV2FailureRequest], "str | None"]
"""Asked after a Failure with R=1: the password to retry with, or ``None`` to give up."""

NewPasswordSource = Callable[[MsChapV2FailureRequest], "str | None"]
"""Asked after E=648 (password expired): the new password, or ``None`` to give up."""


class MsChapV2Peer:
    """The client role (compare hostapd's ``eap_peer/eap_mschapv2.c``)."""

    method = MSCHAPV2

    def __init__(
        self,
        ctx: MethodContext,
        *,
        password: str | None = None,
        nt_hash: bytes | None = None,
        username: str | bytes | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int = 2,
        new_password: NewPasswordSource | None = None,
    ) -> None:
        if (password is None) == (nt_hash is None):
            raise ValueError("give exactly one of password and nt_hash")
        self._ctx = ctx
        self._nt_hash = (
            nt_password_hash(password) if password is not None else bytes(nt_hash or b"")
        )
        if len(self._nt_hash) != NT_HASH_LEN:
            raise ValueError("nt_hash must be 16 bytes")
        if username is None:
            username = ctx.identity
        self._name = username.encode("utf-8") if isinstance(username, str) else bytes(username)
        if len(self._name) > MAX_NAME:
            raise ConfigError("MS-CHAPv2 user names have at most 256 bytes (RFC 2759 §4)")
        self._retry = retry
        self._retries_left = max_retries
        self._new_password = new_password
        self._state = _PeerState.START
        self._auth_challenge = b""
        self._peer_challenge = b""
        self._nt_response = b""

    def receive(self, type_data: bytes) -> Step:
        try:
            msg = decode_request(type_data)
        except DecodeError as exc:
            return self._end(Outcome.failed("malformed", str(exc)))
        if isinstance(msg, MsChapV2Challenge) and self._state is _PeerState.START:
            return self._respond(msg.ms_chap_id, msg.challenge)
        if self._state is _PeerState.RESPONDED:
            if isinstance(msg, MsChapV2SuccessRequest):
                return self._success(msg)
            if isinstance(msg, MsChapV2FailureRequest):
                return self._failure(msg)
        return self._end(
            Outcome.failed("protocol_error", f"{type(msg).__name__} in state {self._state.value}")
        )

    def _end(self, outcome: Outcome, type_data: bytes | None = None) -> Done:
        self._state = _PeerState.DONE
        return Done(outcome, type_data)

    def _respond(self, ms_chap_id: int, auth_challenge: bytes) -> Reply:
        self._auth_challenge = auth_challenge
        self._peer_challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
        self._nt_response = nt_hash_keys(self._nt_hash).challenge_response(
            challenge_hash(self._peer_challenge, auth_challenge, self._name)
        )
        self._state = _PeerState.RESPONDED
        response = MsChapV2Response(ms_chap_id, self._peer_challenge, self._nt_response, self._name)
        return Reply(response.encode())

    def _success(self, msg: MsChapV2SuccessRequest) -> Done:
        expected = authenticator_response_digest(
            nt_hash_keys(self._nt_hash).nt_hash_hash,
            self._nt_response,
            self._peer_challenge,
            self._auth_challenge,
            self._name,
        )
        if not hmac.compare_digest(expected, msg.authenticator_response):
            return self._end(
                Outcome.failed(
                    "bad_authenticator_response",
                    "the authenticator did not prove it knows the password",
                ),
                MsChapV2FailureResponse().encode(),
            )
        keys = _keys_for(nt_hash_keys(self._nt_hash).nt_hash_hash, self._nt_response)
        return self._end(Outcome.ok(keys), MsChapV2SuccessResponse().encode())

    def _failure(self, msg: MsChapV2FailureRequest) -> Step:
        detail = f"E={msg.error}" + (f": {msg.message}" if msg.message else "")
        if (
            msg.error == MsChapV2Error.PASSWD_EXPIRED
            and msg.version == 3
            and msg.challenge is not None
            and self._new_password is not None
        ):
            new_password = self._new_password(msg)
            if new_password is not None:
                try:
                    return self._change_password(msg, msg.challenge, new_password)
                except ValueError as exc:  # a new password MS-CHAPv2 cannot carry
                    return self._end(
                        Outcome.failed("bad_new_password", str(exc)),
                        MsChapV2FailureResponse().encode(),
                    )
        elif (
            msg.retry
            and msg.challenge is not None
            and self._retry is not None
            and self._retries_left > 0
        ):
            password = self._retry(msg)
            if password is not None:
                self._retries_left -= 1
                try:
                    self._nt_hash = nt_password_hash(password)
                except ValueError as exc:
                    return self._end(
                        Outcome.failed("bad_password_input", str(exc)),
                        MsChapV2FailureResponse().encode(),
                    )
                # hostapd also increments the MS-CHAPv2-ID for the retried Response
                return self._respond((msg.ms_chap_id + 1) & 0xFF, msg.challenge)
        return self._end(Outcome.failed(msg.reason, detail), MsChapV2FailureResponse().encode())

    def _change_password(
        self, msg: MsChapV2FailureRequest, challenge: bytes, new_password: str
    ) -> Reply:
        old_hash = self._nt_hash
        new_hash = nt_password_hash(new_password)
        filler = self._ctx.random.random_bytes(512)
        encrypted_password = new_password_encrypted_with_old_nt_password_hash(
            new_password, old_nt_hash=old_hash, filler=filler
        )
        encrypted_hash = old_nt_password_hash_encrypted_with_new_nt_password_hash(
            new_nt_hash=new_hash, old_nt_hash=old_hash
        )
        self._auth_challenge = challenge
        self._peer_challenge = self._ctx.random.random_bytes(CHALLENGE_LEN)
        self._nt_hash = new_hash
        self._nt_response = nt_hash_keys(new_hash).challenge_response(
            challenge_hash(self._peer_challenge, challenge, self._name)
        )
        self._new_password = None  # one change per conversation
        change = MsChapV2ChangePassword(
            (msg.ms_chap_id + 1) & 0xFF,
            encrypted_password,
            encrypted_hash,
            self._peer_challenge,
            self._nt_response,
        )
        return Reply(change.encode())


# -- factories ---------------------------------------------------------------------------


def mschapv2_authenticator(
    lookup: NtHashLookup,
    *,
    server_name: bytes = b"eapkit",
    max_retries: int = 0,
    password_change: PasswordChange | None = None,
    success_message: str = "Authentication succeeded",
    failure_message: str = "Authentication failed",
) -> MethodFactory[Authenticator]:
    """A factory for :class:`eapkit.session.AuthenticatorSession`.

    ``max_retries`` Failures with R=1 let the peer try again in the same conversation;
    ``password_change`` enables E=648 and Change-Password.
    """
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")

    def create(ctx: MethodContext) -> Authenticator:
        return MsChapV2Authenticator(
            ctx,
            lookup,
            server_name=server_name,
            max_retries=max_retries,
            password_change=password_change,
            success_message=success_message,
            failure_message=failure_message,
        )

    return MethodFactory(MSCHAPV2, create, "mschapv2", pure_start=True)


def mschapv2_peer(
    password: str | None = None,
    *,
    nt_hash: bytes | None = None,
    username: str | bytes | None = None,
    retry: RetryPolicy | None = None,
    max_retries: int = 2,
    new_password: str | NewPasswordSource | None = None,
) -> MethodFactory[Peer]:
    """A factory for :class:`eapkit.session.PeerSession`: the password (or its NT hash),
    optionally a different MS-CHAPv2 user name than the EAP identity, what to do after a
    retryable failure and the new password to give when the old one has expired."""
    if (password is None) == (nt_hash is None):
        raise ValueError("give exactly one of password and nt_hash")
    source: NewPasswordSource | None
    if isinstance(new_password, str):
        fixed = new_password

        def source(_failure: MsChapV2FailureRequest) -> str | None:
            return fixed

    else:
        source = new_password

    def create(ctx: MethodContext) -> Peer:
        return MsChapV2Peer(
            ctx,
            password=password,
            nt_hash=nt_hash,
            username=username,
            retry=retry,
            max_retries=max_retries,
            new_password=source,
        )

    return MethodFactory(MSCHAPV2, create, "mschapv2")
