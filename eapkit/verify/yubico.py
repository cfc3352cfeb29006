"""YubiKey OTP ("Yubico OTP"): the token format and local validation.

A YubiKey types ``public id || token``: the public id is 0 to 16 modhex characters
(12 in practice) naming the key, the token 32 modhex characters, one AES-128 block::

    private id (6) | usage counter (2, LE) | timestamp (3, LE) | session counter (1)
    | random (2) | CRC-16 (2, LE)

(Yubico, "YubiKey OTP" and libyubikey's test-vectors.txt.)  Modhex writes a nibble as
one of ``cbdefghijklnrtuv``, letters that sit at the same place on most keyboard
layouts.  The CRC is the ISO 13239 CRC-16 (reflected 0x8408, initial 0xffff) of the
first 14 bytes, inverted; over all 16 bytes the register must end at 0xf0b8.  The top
bit of the usage counter is a flag, not part of the count.

Validation: the public id selects the credential; the block must decrypt under its AES
key with a good CRC and the right private id; and (usage counter, session counter) must
be strictly above the pair last accepted, through the store's atomic ``advance`` so that
exactly one node of a cluster accepts an OTP (else ``replayed``).  The pair is one
integer, ``usage << 8 | session``, which orders the same way.

A forged OTP must get a 48-bit private id and a 16-bit CRC right under an unknown AES
key, so there is no lockout here (compare RFC 4226 §7.3 for six-digit codes).
"""

from __future__ import annotations

import binascii
import hmac
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from eapkit.errors import DecodeError
from eapkit.rand import SYSTEM_RANDOM, RandomSource
from eapkit.store.base import Store, StoreUnavailable
from eapkit.store.records import RecordNotSealed, SealedRecords
from eapkit.store.sealing import Sealer, SealError
from eapkit.verify.otp import AuditSink
from eapkit.verify.verdict import (
    BAD_CODE,
    MALFORMED,
    OK,
    REPLAYED,
    UNKNOWN_USER,
    OtpVerdict,
    UnsealedRecord,
    store_refusal,
)

__all__ = [
    "MODHEX",
    "YubicoVerifier",
    "YubikeyCredential",
    "YubikeyToken",
    "crc16",
    "decode_otp",
    "encode_otp",
    "modhex_decode",
    "modhex_encode",
    "parse_token",
    "split_otp",
]

MODHEX = "cbdefghijklnrtuv"
TOKEN_CHARS = 32
MAX_PUBLIC_ID = 16
CRC_RESIDUE = 0xF0B8
USAGE_FLAG = 0x8000

# Modhex (either case, Caps Lock happens) to hex; every other byte to "x", which
# unhexlify refuses: one C pass validates and translates.
_table = bytearray(b"x" * 256)
for _m, _h in zip(MODHEX, "0123456789abcdef", strict=True):
    _table[ord(_m)] = _table[ord(_m.upper())] = ord(_h)
_MODHEX_TO_HEX = bytes(_table)
_HEX_TO_MODHEX = str.maketrans("0123456789abcdef", MODHEX)
# The reflected CRC equals the plain CCITT CRC (binascii.crc_hqx) of the bit-reversed
# bytes, bit-reversed: two C calls instead of a Python loop over 16 bytes.
_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_RESIDUE_REVERSED = int(f"{CRC_RESIDUE:016b}"[::-1], 2)  # 0x1d0f
_LAYOUT = struct.Struct("<6sHHBBHH")
_new = tuple.__new__  # builds an OtpVerdict without NamedTuple's Python-level __new__
# private id, usage counter, session counter of a decrypted token: one C call
_ID_COUNTERS = struct.Struct("<6sH3xB4x").unpack
_crc = binascii.crc_hqx
_compare = hmac.compare_digest


def modhex_decode(text: str) -> bytes:
    """Modhex (either case) to bytes; DecodeError for anything else."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise DecodeError("modhex is not ASCII", offset=exc.start, expected="modhex") from None
    if len(raw) % 2:
        raise DecodeError("odd number of modhex characters", offset=len(raw), expected="pairs")
    try:
        return binascii.unhexlify(raw.translate(_MODHEX_TO_HEX))
    except binascii.Error:
        bad = raw.translate(_MODHEX_TO_HEX).find(b"x")
        raise DecodeError("not modhex", offset=max(bad, 0), expected=MODHEX) from None


def modhex_encode(data: bytes) -> str:
    return data.hex().translate(_HEX_TO_MODHEX)


def _bitrev16(value: int) -> int:
    return (_BITREV[value & 0xFF] << 8) | _BITREV[value >> 8]


def crc16(data: bytes) -> int:
    """CRC-16 of ISO 13239 as YubiKeys use it: reflected 0x8408, initial 0xffff, no xor."""
    return _bitrev16(binascii.crc_hqx(data.translate(_BITREV), 0xFFFF))


@dataclass(frozen=True, slots=True)
class YubikeyToken:
    """The decrypted 16-byte block of a Yubico OTP."""

    private_id: bytes = field(repr=False)
    usage_counter: int  # 15 bits; counts power-ups (non-volatile)
    timestamp: int  # 24 bits, 8 Hz since power-up
    session_counter: int  # 8 bits; counts OTPs since power-up
    random: int = 0
    flag: bool = False  # the top bit of the stored usage counter

    @property
    def counter_pair(self) -> int:
        """(usage, session) as one integer that orders the same way."""
        return self.usage_counter << 8 | self.session_counter


def parse_token(block: bytes) -> YubikeyToken:
    """The fields of a decrypted block; DecodeError unless 16 bytes with a good CRC."""
    if len(block) != 16:
        raise DecodeError("a Yubico OTP block is 16 bytes", offset=len(block), expected="16")
    if binascii.crc_hqx(block.translate(_BITREV), 0xFFFF) != _RESIDUE_REVERSED:
        raise DecodeError("CRC-16 residue mismatch (wrong key or corrupt)", offset=14)
    uid, usage, ts_low, ts_high, session, rnd, _crc = _LAYOUT.unpack(block)
    return YubikeyToken(
        uid, usage & 0x7FFF, ts_high << 16 | ts_low, session, rnd, bool(usage & USAGE_FLAG)
    )


def split_otp(text: str) -> tuple[str, bytes]:
    """(public id in lowercase modhex, 16-byte ciphertext); DecodeError if not an OTP.

    Surrounding whitespace is dropped (a key types Enter after the OTP).
    """
    otp = text.strip()
    if not TOKEN_CHARS <= len(otp) <= TOKEN_CHARS + MAX_PUBLIC_ID:
        raise DecodeError(
            f"a Yubico OTP has 32 to 48 characters, not {len(otp)}",
            offset=0,
            expected="32..48 modhex characters",
        )
    raw = modhex_decode(otp)  # validates the public id too
    return otp[:-TOKEN_CHARS].lower(), raw[-16:]


def _ecb(key: bytes) -> Cipher[modes.ECB]:
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - one block, by design


def decode_otp(text: str, aes_key: bytes) -> tuple[str, YubikeyToken]:
    """Split, decrypt and parse an OTP; DecodeError for any malformed or foreign input."""
    if len(aes_key) != 16:
        raise ValueError("a YubiKey AES key is 16 bytes")
    public, ciphertext = split_otp(text)
    return public, parse_token(_ecb(aes_key).decryptor().update(ciphertext))


def encode_otp(token: YubikeyToken, aes_key: bytes, public_id: str = "") -> str:
    """The OTP a YubiKey would type for ``token``: for tests and simulated tokens."""
    if len(token.private_id) != 6:
        raise ValueError("private id is 6 bytes")
    if len(public_id) > MAX_PUBLIC_ID or len(public_id) % 2:
        raise ValueError("public id is 0..16 modhex characters, an even number")
    modhex_decode(public_id)
    usage = token.usage_counter | (USAGE_FLAG if token.flag else 0)
    body = _LAYOUT.pack(
        token.private_id,
        usage,
        token.timestamp & 0xFFFF,
        token.timestamp >> 16,
        token.session_counter,
        token.random,
        0,
    )[:14]
    block = body + (~crc16(body) & 0xFFFF).to_bytes(2, "little")
    return public_id.lower() + modhex_encode(_ecb(aes_key).encryptor().update(block))


@dataclass(frozen=True)
class YubikeyCredential:
    """A YubiKey slot programmed for Yubico OTP: public id, private id, AES key."""

    public_id: str
    private_id: bytes = field(repr=False)
    aes_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.private_id) != 6 or len(self.aes_key) != 16:
            raise ValueError("private id is 6 bytes and the AES key 16")
        if len(self.public_id) > MAX_PUBLIC_ID or len(self.public_id) % 2:
            raise ValueError("public id is 0..16 modhex characters, an even number")
        try:
            modhex_decode(self.public_id)
        except DecodeError as exc:
            raise ValueError("public id is not modhex") from exc
        object.__setattr__(self, "public_id", self.public_id.lower())

    @classmethod
    def from_otp(cls, otp: str, aes_key: bytes) -> tuple[YubikeyCredential, YubikeyToken]:
        """Learn the public and private ids from one OTP of the key (DecodeError if the
        OTP does not decrypt under ``aes_key``)."""
        public, token = decode_otp(otp, aes_key)
        return cls(public, token.private_id, aes_key), token


class _Prepared:
    __slots__ = (
        "cid",
        "counter_key",
        "decrypt",
        "loaded_at",
        "lock",
        "private_id",
        "raw",
        "user",
    )

    def __init__(
        self, user: str, cid: str, private_id: bytes, aes_key: bytes, now: float, raw: bytes
    ) -> None:
        self.raw = raw  # the stored record, to tell cheaply whether it changed
        self.user = user
        self.cid = cid
        self.private_id = private_id
        # One decryptor per key, reused: ECB keeps no state between blocks.  Contexts
        # are not safe for concurrent use, hence the lock.
        self.decrypt = _ecb(aes_key).decryptor().update
        self.lock = threading.Lock()
        self.counter_key = f"yk:ctr:{cid}"
        self.loaded_at = now


def _record_key(public_id: str) -> str:
    return f"yk:cred:{public_id}"


class YubicoVerifier:
    """Validates Yubico OTPs locally against keys enrolled in a store.

    ``sealer`` encrypts AES keys and private ids at rest; it may be omitted only with a
    :class:`~eapkit.store.memory.MemoryStore`.  Credentials are cached per process for
    ``cache_ttl`` seconds of the ``now`` the caller passes.
    """

    def __init__(
        self,
        store: Store,
        sealer: Sealer | None = None,
        *,
        cache_ttl: float = 30.0,
        rand: RandomSource = SYSTEM_RANDOM,
        audit: AuditSink | None = None,
    ) -> None:
        self._records = SealedRecords(store, sealer, what="YubiKey AES keys")
        self.store = store
        self._cache_ttl = cache_ttl
        self._rand = rand
        self._audit = audit
        self._cache: dict[str, _Prepared] = {}

    def enroll(
        self,
        user: str,
        credential: YubikeyCredential,
        now: float,
        *,
        seen: YubikeyToken | None = None,
    ) -> str:
        """Store the key for ``user`` (replacing one with the same public id).

        ``seen``: a token already typed (for example the OTP given at enrollment), so
        that it cannot be replayed afterwards.
        """
        cid = self._rand.random_bytes(12).hex()
        record = {"v": 1, "cid": cid, "user": user, "enrolled": now}
        if seen is not None:
            self.store.advance(f"yk:ctr:{cid}", seen.counter_pair)
        self._records.write(
            _record_key(credential.public_id), record, credential.aes_key + credential.private_id
        )
        self._cache.pop(credential.public_id, None)
        if self._audit is not None:
            self._audit(
                {
                    "event": "yubikey_enrolled",
                    "user": user,
                    "public_id": credential.public_id,
                    "cid": cid,
                }
            )
        return cid

    def remove(self, public_id: str) -> bool:
        self._cache.pop(public_id.lower(), None)
        return self.store.delete(_record_key(public_id.lower()))

    def forget(self) -> None:
        self._cache.clear()

    def _load(self, public: str, now: float) -> _Prepared | None:
        key = _record_key(public)
        raw = self.store.get(key)
        if raw is None:
            self._cache.pop(public, None)
            return None
        cached = self._cache.get(public)
        if cached is not None and cached.raw == raw:
            cached.loaded_at = now  # unchanged: keep the prepared cipher
            return cached
        try:
            record, secret = self._records.open(key, raw)
            if len(secret) != 22:
                raise ValueError("bad secret length")
            user, cid = str(record["user"]), str(record["cid"])
            prepared = _Prepared(user, cid, secret[16:], secret[:16], now, raw)
        except RecordNotSealed:
            raise UnsealedRecord("YubiKey record is not sealed (record_not_sealed)") from None
        except (SealError, ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"YubiKey record does not load ({_why(exc)})") from None
        self._cache[public] = prepared
        return prepared

    def verify(self, user: str | None, otp: str, now: float) -> OtpVerdict:
        """Validate one OTP; ``user`` None accepts any enrolled key (the verdict names
        its user), else the key must be enrolled for ``user``."""
        text = otp.strip()
        try:
            # split_otp inlined (one call less on the hot path); it explains failures
            if not TOKEN_CHARS <= len(text) <= TOKEN_CHARS + MAX_PUBLIC_ID:
                raise ValueError
            ciphertext = binascii.unhexlify(text.encode("ascii").translate(_MODHEX_TO_HEX))[-16:]
            public = text[:-TOKEN_CHARS].lower()
        except ValueError:  # UnicodeEncodeError and binascii.Error are ValueErrors
            try:
                public, ciphertext = split_otp(text)
            except DecodeError as exc:
                return OtpVerdict(False, MALFORMED, user=user, detail=exc.reason)
        try:
            p = self._cache.get(public)
            if p is None or not 0.0 <= now - p.loaded_at < self._cache_ttl:
                p = self._load(public, now)
                if p is None:
                    return OtpVerdict(False, UNKNOWN_USER, user=user, detail="unknown public id")
            if user is not None and user != p.user:
                return OtpVerdict(False, BAD_CODE, user=user, detail="key enrolled to another user")
            lock = p.lock
            lock.acquire()  # cheaper than ``with`` on CPython 3.11
            try:
                block = p.decrypt(ciphertext)
            finally:
                lock.release()
            if _crc(block.translate(_BITREV), 0xFFFF) != _RESIDUE_REVERSED:
                return OtpVerdict(False, BAD_CODE, user=p.user, detail="CRC mismatch")
            private_id, usage, session = _ID_COUNTERS(block)
            if not _compare(private_id, p.private_id):
                return OtpVerdict(False, BAD_CODE, user=p.user, detail="private id mismatch")
            pair = (usage & 0x7FFF) << 8 | session
            if self.store.advance(p.counter_key, pair):
                return _new(OtpVerdict, (True, OK, pair, p.user, None, None, ""))
            return OtpVerdict(False, REPLAYED, pair, p.user)
        except StoreUnavailable as exc:
            return OtpVerdict(False, store_refusal(exc), user=user, detail=str(exc))

    def verify_many(self, items: Iterable[tuple[str | None, str]], now: float) -> list[OtpVerdict]:
        """Validate many (user, OTP) pairs at one time ``now``, in order."""
        verify = self.verify
        return [verify(user, otp, now) for user, otp in items]


def _why(exc: Exception) -> str:
    """What a record that does not load says: its reason code or its type, no text."""
    return str(getattr(exc, "reason", type(exc).__name__))
