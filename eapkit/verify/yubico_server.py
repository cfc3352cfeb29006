"""A self-hosted Yubico OTP validation server: protocol 2.0, ``/wsapi/2.0/verify``.

Yubico, "Validation Protocol Version 2.0" (yubikey-val ``doc/ValidationProtocolV20``).
A client (``yubico-client``, pam_yubico, ...) sends an HTTP GET::

    /wsapi/2.0/verify?id=87&otp=<44 modhex>&nonce=<16..40 chars>[&timestamp=1]
                     [&sl=0..100|fast|secure][&timeout=<seconds>][&h=<base64>]

and gets ``key=value`` lines back, signed the same way: ``h`` is the base64
HMAC-SHA1, under the client's API key, of the other pairs sorted by key and joined as
``k=v&k=v`` (no whitespace).  The story of one request, in the order it is checked::

    query --parse--> pairs                      MISSING_PARAMETER (malformed)
    id --clients--> API key                     MISSING_PARAMETER / NO_SUCH_CLIENT /
                                                OPERATION_NOT_ALLOWED / BACKEND_ERROR
    a parameter given twice                     MISSING_PARAMETER
    h --HMAC-SHA1, constant time-->             BAD_SIGNATURE (also: unsigned, if signed
                                                requests are required)
    otp, nonce, timestamp, sl, timeout          MISSING_PARAMETER (absent or out of range)
    otp --modhex, 32..48 chars-->               BAD_OTP
    (id, nonce) --store.put_once-->             REPLAYED_REQUEST (a nonce seen before)
    otp --YubicoVerifier on the store-->        OK / REPLAYED_OTP / BAD_OTP / BACKEND_ERROR
    (public id, counters) --sync to peers-->    REPLAYED_OTP / NOT_ENOUGH_ANSWERS

Replay protection lives in the :class:`~eapkit.store.base.Store`: servers sharing one
store (SQLite on one host, Redis for a cluster) agree by construction, so ``sl`` is 100.
Servers with separate stores name each other's stores as ``peers``; after a local
accept the (usage, session) pair is advanced on every peer until ``timeout``, ``sl`` is
the percentage that answered, and a peer that had already seen the pair turns the
answer into REPLAYED_OTP (the scheme of yubikey-val's sync pool, over the Store
interface instead of HTTP).  Fewer answers than the requested level: NOT_ENOUGH_ANSWERS
(the OTP stays consumed, as in yubikey-val).

:class:`ValidationService` is the protocol without I/O (query text and ``now`` in,
response text out); :mod:`eapkit.yubico_validation` (the application layer) puts it
behind ``http.server`` and gives it a command line.  API keys are sealed at rest like
the YubiKey AES keys.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol
from urllib.parse import parse_qsl

from eapkit.errors import ConfigError, DecodeError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable
from eapkit.store.records import SealedRecords
from eapkit.store.sealing import Sealer, SealError
from eapkit.verify.verdict import OK as VERDICT_OK
from eapkit.verify.verdict import REPLAYED, STORE_UNAVAILABLE
from eapkit.verify.yubico import YubicoVerifier, split_otp

__all__ = [
    "BACKEND_ERROR",
    "BAD_OTP",
    "BAD_SIGNATURE",
    "MISSING_PARAMETER",
    "NOT_ENOUGH_ANSWERS",
    "NO_SUCH_CLIENT",
    "OK",
    "OPERATION_NOT_ALLOWED",
    "REPLAYED_OTP",
    "REPLAYED_REQUEST",
    "STATUSES",
    "VERIFY_PATH",
    "ApiClient",
    "ApiClients",
    "StoreApiClients",
    "SyncLevels",
    "ValidationResponse",
    "ValidationService",
    "parse_response",
    "sign",
    "signature_valid",
]

VERIFY_PATH: Final = "/wsapi/2.0/verify"

# The status values of protocol 2.0, "Response".
OK: Final = "OK"
BAD_OTP: Final = "BAD_OTP"
REPLAYED_OTP: Final = "REPLAYED_OTP"
BAD_SIGNATURE: Final = "BAD_SIGNATURE"
MISSING_PARAMETER: Final = "MISSING_PARAMETER"
NO_SUCH_CLIENT: Final = "NO_SUCH_CLIENT"
OPERATION_NOT_ALLOWED: Final = "OPERATION_NOT_ALLOWED"
BACKEND_ERROR: Final = "BACKEND_ERROR"
NOT_ENOUGH_ANSWERS: Final = "NOT_ENOUGH_ANSWERS"
REPLAYED_REQUEST: Final = "REPLAYED_REQUEST"
STATUSES: Final = (
    OK,
    BAD_OTP,
    REPLAYED_OTP,
    BAD_SIGNATURE,
    MISSING_PARAMETER,
    NO_SUCH_CLIENT,
    OPERATION_NOT_ALLOWED,
    BACKEND_ERROR,
    NOT_ENOUGH_ANSWERS,
    REPLAYED_REQUEST,
)

_NONCE = re.compile(r"[A-Za-z0-9]{16,40}")  # "16 to 40 character long"; yubikey-val: alnum
_CLIENT_ID = re.compile(r"[1-9][0-9]{0,9}")  # ids are positive integers
_SAFE_VALUE = re.compile(r"[!-%'-~]{1,256}")  # printable ASCII without '&': echoable
_MAX_QUERY = 2048
_MAX_FIELDS = 16


# -- signatures ----------------------------------------------------------------------


def sign(params: Mapping[str, str], key: bytes) -> str:
    """``h`` for ``params`` ("Generating signatures"): base64 HMAC-SHA1 of the pairs
    other than ``h``, sorted by key, as ``k=v&k=v``."""
    line = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "h")
    return base64.b64encode(hmac.digest(key, line.encode("utf-8"), "sha1")).decode("ascii")


def signature_valid(params: Mapping[str, str], key: bytes) -> bool:
    """Whether ``params["h"]`` signs the other pairs under ``key`` (constant time)."""
    given = params.get("h")
    if given is None:
        return False
    return hmac.compare_digest(sign(params, key).encode(), given.encode("utf-8", "replace"))


def parse_response(text: str) -> dict[str, str]:
    """The ``key=value`` lines of a response (DecodeError if a line is not one)."""
    out: dict[str, str] = {}
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped:
            key, sep, value = stripped.partition("=")
            if not sep or not key or key in out:
                raise DecodeError("not a key=value line", offset=offset, expected="key=value")
            out[key] = value
        offset += len(line)
    return out


# -- API clients ---------------------------------------------------------------------


@dataclass(frozen=True)
class ApiClient:
    """A client of the validation service: its id and the HMAC-SHA1 API key."""

    id: str
    key: bytes = field(repr=False)
    enabled: bool = True  # a disabled client gets OPERATION_NOT_ALLOWED

    def __post_init__(self) -> None:
        if not _CLIENT_ID.fullmatch(self.id):
            raise ValueError("a client id is a positive decimal integer")
        if len(self.key) < 16:
            raise ValueError("an API key is at least 16 bytes")

    @property
    def key_b64(self) -> str:
        """The key as Yubico hands it out (and ``yubico-client`` takes it): base64."""
        return base64.b64encode(self.key).decode()


class ApiClients(Protocol):
    """Where the service finds a client by id (may raise StoreUnavailable)."""

    def get(self, client_id: str) -> ApiClient | None: ...


class StoreApiClients:
    """API clients as records in a Store, keys sealed (``ykval:client:<id>``)."""

    def __init__(self, store: Store, sealer: Sealer | None = None) -> None:
        self._records = SealedRecords(store, sealer, what="API keys")
        self.store = store

    @staticmethod
    def _key(client_id: str) -> str:
        return f"ykval:client:{client_id}"

    def add(self, client: ApiClient) -> None:
        self._records.write(self._key(client.id), {"v": 1, "enabled": client.enabled}, client.key)

    def create(self, rand: RandomSource = SYSTEM_RANDOM, *, enabled: bool = True) -> ApiClient:
        """A new client with a free id and a random 20-byte key (like YubiCloud's)."""
        for _ in range(100):
            client_id = str(1 + int.from_bytes(rand.random_bytes(4), "big") % 999_999_999)
            if self.store.get(self._key(client_id)) is None:
                client = ApiClient(client_id, rand.random_bytes(20), enabled)
                self.add(client)
                return client
        raise ConfigError("no free client id found")  # pragma: no cover - 1e9 ids

    def remove(self, client_id: str) -> bool:
        return self.store.delete(self._key(client_id))

    def get(self, client_id: str) -> ApiClient | None:
        key = self._key(client_id)
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            record, secret = self._records.open(key, raw)
            return ApiClient(client_id, secret, bool(record.get("enabled", True)))
        except (SealError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise StoreUnavailable(
                f"API client record does not load ({type(exc).__name__})"
            ) from None


# -- the service ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncLevels:
    """What ``sl`` means when the client leaves it out or says fast/secure
    (yubikey-val's defaults), and the default ``timeout`` in seconds."""

    default: int = 60
    fast: int = 1
    secure: int = 40
    timeout: float = 1.0


@dataclass(frozen=True)
class ValidationResponse:
    """One answer: the HTTP status (always 200: the protocol's status is in the body),
    the parsed pairs and the body text."""

    status: str
    params: dict[str, str]
    body: str
    http_status: int = 200


class ValidationService:
    """Protocol 2.0 ``verify`` without I/O: :meth:`handle` takes the query string.

    ``verifier`` validates the OTPs (its keys and counters are in its store; the nonces
    go there too).  ``peers`` are the stores of other validation servers to sync
    counters with.  ``require_signature`` refuses unsigned requests (BAD_SIGNATURE),
    which the protocol allows by default.  ``clock`` (monotonic seconds) bounds the
    sync by ``timeout``.
    """

    def __init__(
        self,
        verifier: YubicoVerifier,
        clients: ApiClients,
        *,
        peers: Sequence[Store] = (),
        levels: SyncLevels | None = None,
        require_signature: bool = False,
        nonce_ttl: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if nonce_ttl <= 0:
            raise ConfigError("nonce_ttl must be positive")
        self.verifier = verifier
        self.store = verifier.store
        self.clients = clients
        self.peers = tuple(peers)
        self.levels = levels or SyncLevels()
        self.require_signature = require_signature
        self.nonce_ttl = nonce_ttl
        self._clock = clock

    def handle(self, query: str, now: float) -> ValidationResponse:
        """Answer one ``verify`` request (the URL's query string); never raises for
        any input."""
        echo: dict[str, str] = {}
        try:
            pairs = parse_qsl(
                query[: _MAX_QUERY + 1],
                keep_blank_values=True,
                strict_parsing=True,
                max_num_fields=_MAX_FIELDS,
            )
        except ValueError:
            return self._answer(MISSING_PARAMETER, None, echo, now)
        params: dict[str, str] = {}
        repeated: set[str] = set()
        for k, v in pairs:
            if k in params:  # a repeated parameter is ambiguous: refused below
                repeated.add(k)
            params[k] = v
        for name in ("otp", "nonce"):
            if name not in repeated and _SAFE_VALUE.fullmatch(params.get(name, "")):
                echo[name] = params[name]
        if len(query) > _MAX_QUERY:
            return self._answer(MISSING_PARAMETER, None, echo, now)

        client_id = params.get("id", "")
        if not _CLIENT_ID.fullmatch(client_id) or "id" in repeated:
            return self._answer(MISSING_PARAMETER, None, echo, now)
        try:
            client = self.clients.get(client_id)
        except StoreUnavailable:
            return self._answer(BACKEND_ERROR, None, echo, now)
        if client is None:
            return self._answer(NO_SUCH_CLIENT, None, echo, now)
        key = client.key
        if not client.enabled:
            return self._answer(OPERATION_NOT_ALLOWED, key, echo, now)
        if repeated:  # signed now that we know whom we answer
            return self._answer(MISSING_PARAMETER, key, echo, now)
        if ("h" in params or self.require_signature) and not signature_valid(params, key):
            return self._answer(BAD_SIGNATURE, key, echo, now)

        otp, nonce = params.get("otp", ""), params.get("nonce", "")
        level = self._sync_level(params.get("sl"))
        timeout = self._timeout(params.get("timeout"))
        if not otp or not _NONCE.fullmatch(nonce) or level is None or timeout is None:
            return self._answer(MISSING_PARAMETER, key, echo, now)
        if params.get("timestamp", "0") not in ("0", "1"):
            return self._answer(MISSING_PARAMETER, key, echo, now)
        try:
            public, ciphertext = split_otp(otp)
        except DecodeError:
            return self._answer(BAD_OTP, key, echo, now)
        if otp != otp.strip():  # the signed value must be the OTP itself
            return self._answer(BAD_OTP, key, echo, now)

        try:
            if not self.store.put_once(
                f"ykval:nonce:{client_id}:{nonce}", b"1", self.nonce_ttl, now
            ):
                return self._answer(REPLAYED_REQUEST, key, echo, now)
        except StoreUnavailable:
            return self._answer(BACKEND_ERROR, key, echo, now)

        verdict = self.verifier.verify(None, otp, now)
        if verdict.reason == REPLAYED:
            return self._answer(REPLAYED_OTP, key, echo, now)
        if verdict.reason == STORE_UNAVAILABLE:
            return self._answer(BACKEND_ERROR, key, echo, now)
        if verdict.reason != VERDICT_OK or verdict.step is None:
            return self._answer(BAD_OTP, key, echo, now)

        status, percent = self._sync(public, verdict.step, level, timeout)
        extra = {"sl": str(percent)}
        if status == OK and params.get("timestamp") == "1":
            extra.update(self._token_fields(public, ciphertext, verdict.step, now))
        return self._answer(status, key, echo, now, extra)

    # -- pieces of handle --------------------------------------------------------------

    def _sync_level(self, value: str | None) -> int | None:
        if value is None:
            return self.levels.default
        if value == "fast":
            return self.levels.fast
        if value == "secure":
            return self.levels.secure
        if value.isdigit() and value.isascii() and len(value) <= 3 and int(value) <= 100:
            return int(value)
        return None

    def _timeout(self, value: str | None) -> float | None:
        if value is None:
            return self.levels.timeout
        if value.isdigit() and value.isascii() and len(value) <= 4:
            return float(value)
        return None

    def _sync(self, public: str, pair: int, level: int, timeout: float) -> tuple[str, int]:
        """Advance the pair on our own sync counter and the peers' until ``timeout``:
        (status, percentage of peers that answered)."""
        key = f"ykval:sync:{public}"
        try:
            if not self.store.advance(key, pair):
                return REPLAYED_OTP, 100  # accepted with another enrollment: seen before
        except StoreUnavailable:
            return BACKEND_ERROR, 0
        if not self.peers:
            return OK, 100
        start = self._clock()
        answers = 0
        seen_elsewhere = False
        for peer in self.peers:
            if self._clock() - start > timeout:
                break
            try:
                ok = peer.advance(key, pair)
            except StoreUnavailable:
                continue
            if self._clock() - start > timeout:
                break  # answered too late: does not count
            answers += 1
            seen_elsewhere |= not ok
        percent = round(100 * answers / len(self.peers))
        if seen_elsewhere:
            return REPLAYED_OTP, percent
        needed = math.ceil(len(self.peers) * level / 100)
        return (OK if answers >= needed else NOT_ENOUGH_ANSWERS), percent

    def _token_fields(
        self, public: str, ciphertext: bytes, pair: int, now: float
    ) -> dict[str, str]:
        """``timestamp=1``: the key's internal timestamp and counters (the token is
        decrypted again through the verifier's cached cipher)."""
        fields = {"sessioncounter": str(pair >> 8), "sessionuse": str(pair & 0xFF)}
        try:
            prepared = self.verifier._load(public, now)  # same package: reuse its cached cipher
        except StoreUnavailable:
            prepared = None
        if prepared is not None:
            with prepared.lock:
                block = prepared.decrypt(ciphertext)
            fields["timestamp"] = str(int.from_bytes(block[8:11], "little"))
        return fields

    def _answer(
        self,
        status: str,
        key: bytes | None,
        echo: Mapping[str, str],
        now: float,
        extra: Mapping[str, str] | None = None,
    ) -> ValidationResponse:
        params = dict(echo)
        params.update(extra or {})
        params["status"] = status
        stamp = datetime.fromtimestamp(now, UTC)
        # YubiCloud's format: seconds, "Z", then the milliseconds.
        params["t"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ") + f"{stamp.microsecond // 1000:04d}"
        if key is not None:  # an unknown client has no key to sign with
            params["h"] = sign(params, key)
        order = ["h", *sorted(k for k in params if k != "h")] if "h" in params else sorted(params)
        body = "".join(f"{k}={params[k]}\r\n" for k in order) + "\r\n"
        return ValidationResponse(status, params, body)
