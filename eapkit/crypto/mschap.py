"""MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079), as plain functions on bytes.

The story of one MS-CHAPv2 authentication, with the function for each step:

1. The authenticator sends a 16-byte ``AuthenticatorChallenge``; the peer picks a 16-byte
   ``PeerChallenge``.
2. Both hash them with the user name into an 8-byte challenge,
   :func:`challenge_hash` (§8.2): ``SHA1(PeerChallenge | AuthenticatorChallenge |
   UserName)[:8]``, where ``UserName`` has any ``DOMAIN\\`` prefix removed.
3. The NT hash of the password, :func:`nt_password_hash` (§8.3): ``MD4(UTF-16LE(password))``,
   padded with zeros to 21 bytes, gives three 7-byte DES keys; each encrypts the 8-byte
   challenge, and the three blocks are the 24-byte ``NT-Response``
   (:func:`challenge_response`, §8.5; :func:`generate_nt_response`, §8.1).
4. The authenticator, which stores only the NT hash, checks the NT-Response and proves
   it knew the hash too: :func:`generate_authenticator_response` (§8.7) is the
   ``S=<40 hex>`` string, which the peer checks with :func:`check_authenticator_response`
   (§8.8).
5. Both derive the MPPE keys of RFC 3079 §3: :func:`get_master_key` from
   ``MD4(NT hash)`` (:func:`hash_nt_password_hash`, §8.4) and the NT-Response, then
   :func:`get_asymmetric_start_key` for each direction.  :func:`get_new_key_from_sha` and
   :func:`reduce_session_key` give the session keys of RFC 3079 §3.4 / §3.5 (40, 56 and
   128 bits), for completeness and the RFC's examples.

Change-Password (§8.9-8.12, for an expired password):
:func:`new_password_encrypted_with_old_nt_password_hash` (RC4 over a 516-byte block),
:func:`old_nt_password_hash_encrypted_with_new_nt_password_hash` (DES), and the
authenticator's inverse :func:`decrypt_pw_block_with_password_hash`.

The server's hot path is checking an NT-Response against a stored NT hash.  What is fixed
per user (the three DES key schedules and ``MD4(NT hash)``) lives in :class:`NtHashKeys`,
kept in a bounded cache by :func:`nt_hash_keys`, so a check costs one SHA-1 and three DES
block encryptions.

DES comes from ``cryptography`` as TripleDES with the key repeated (K|K|K), which is
single DES; MD4 from :mod:`eapkit.crypto.md4`.  Length errors raise ``ValueError`` with
the name of the argument: these functions take values the caller has already parsed.
Only :func:`decrypt_pw_block_with_password_hash` reads untrusted bytes, and it raises
:class:`~eapkit.errors.DecodeError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, TripleDES
except ImportError:  # cryptography < 43 (Debian 12's, inside FreeRADIUS's rlm_python3)
    from cryptography.hazmat.primitives.ciphers.algorithms import ARC4, TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

from eapkit.crypto.md4 import md4
from eapkit.errors import DecodeError

__all__ = [
    "CHALLENGE_LEN",
    "MASTER_KEY_LEN",
    "NT_HASH_LEN",
    "NT_RESPONSE_LEN",
    "PW_BLOCK_LEN",
    "NtHashKeys",
    "authenticator_response_digest",
    "challenge_hash",
    "challenge_response",
    "check_authenticator_response",
    "decrypt_pw_block_with_password_hash",
    "des_encrypt",
    "encrypt_pw_block_with_password_hash",
    "generate_authenticator_response",
    "generate_nt_response",
    "get_asymmetric_start_key",
    "get_master_key",
    "get_new_key_from_sha",
    "hash_nt_password_hash",
    "mschapv2_msk",
    "new_password_encrypted_with_old_nt_password_hash",
    "nt_hash_keys",
    "nt_password_hash",
    "nt_password_hash_encrypted_with_block",
    "old_nt_password_hash_encrypted_with_new_nt_password_hash",
    "reduce_session_key",
    "strip_domain",
]

CHALLENGE_LEN = 16
NT_HASH_LEN = 16
NT_RESPONSE_LEN = 24
MASTER_KEY_LEN = 16
MAX_PASSWORD_BYTES = 512  # §8.3: 0-to-256 Unicode characters, UTF-16LE
MAX_USERNAME_BYTES = 256  # §4: UserName is 0-to-256 characters
PW_BLOCK_LEN = 516  # §8.10: 512 bytes of password area + a 4-byte length

# RFC 2759 §8.7
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
# RFC 3079 §3.4
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_MPPE_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = b"\x00" * 40
_SHS_PAD2 = b"\xf2" * 40


def _check_len(value: bytes, length: int, name: str) -> bytes:
    if type(value) is bytes and len(value) == length:  # the hot path's case, cheaply
        return value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, not {len(value)}")
    return value


def _password_bytes(password: str | bytes) -> bytes:
    """§8.3: the password as UTF-16LE; bytes are taken as UTF-8 text."""
    if isinstance(password, bytes | bytearray):
        try:
            password = bytes(password).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("password bytes are not UTF-8") from None
    encoded = password.encode("utf-16-le", "surrogatepass")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValueError(
            f"password of {len(encoded) // 2} UTF-16 units: RFC 2759 allows at most 256"
        )
    return encoded


def strip_domain(username: str | bytes) -> bytes:
    """The user name as RFC 2759 §8.2 hashes it: bytes after the first ``\\``, if any
    (``DOMAIN\\user`` -> ``user``); text is UTF-8 encoded."""
    raw = username.encode("utf-8") if isinstance(username, str) else bytes(username)
    if b"\\" in raw:
        raw = raw.partition(b"\\")[2]
    if len(raw) > MAX_USERNAME_BYTES:
        raise ValueError(f"user name of {len(raw)} bytes: RFC 2759 allows at most 256")
    return raw


# -- DES ---------------------------------------------------------------------------------


def _expand_des_key(key7: bytes) -> bytes:
    """7 key bytes -> the 8-byte DES key: 7 bits per byte, odd parity in the low bit
    (RFC 2759 §8.6 asks us to insert the parity bits; DES ignores them)."""
    bits = int.from_bytes(key7, "big")
    out = bytearray(8)
    for i in range(8):
        b = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        even = bin(b).count("1") % 2 == 0
        out[i] = b | int(even)
    return bytes(out)


def _des_encryptor(key7: bytes) -> CipherContext:
    key8 = _expand_des_key(key7)
    # Single DES: TripleDES with K1 = K2 = K3 (8-byte keys are deprecated there).
    return Cipher(TripleDES(key8 * 3), modes.ECB()).encryptor()  # noqa: S305 - the RFC's DES


def des_encrypt(clear: bytes, key7: bytes) -> bytes:
    """RFC 2759 §8.6 DesEncrypt: one DES-ECB block under a 7-byte key."""
    clear = _check_len(clear, 8, "clear")
    key7 = _check_len(key7, 7, "key")
    return _des_encryptor(key7).update(clear)


# -- per-user, fixed: the hot path's cache -----------------------------------------------


class NtHashKeys:
    """What is fixed for one NT hash: the three DES encryptors of §8.5 and
    ``MD4(NT hash)`` (§8.4).  One object serves any number of checks; a lock keeps the
    reusable ECB contexts safe across threads."""

    __slots__ = ("_ciphers", "_lock", "nt_hash", "nt_hash_hash")

    def __init__(self, nt_hash: bytes) -> None:
        self.nt_hash = _check_len(nt_hash, NT_HASH_LEN, "nt_hash")
        z = self.nt_hash + b"\x00" * 5  # §8.5: ZPasswordHash, 21 bytes
        self._ciphers = (
            _des_encryptor(z[0:7]),
            _des_encryptor(z[7:14]),
            _des_encryptor(z[14:21]),
        )
        self._lock = threading.Lock()
        self.nt_hash_hash = md4(self.nt_hash)

    def __repr__(self) -> str:
        return "NtHashKeys(<secret>)"

    def challenge_response(self, challenge: bytes) -> bytes:
        """§8.5 ChallengeResponse with the cached key schedules."""
        challenge = _check_len(challenge, 8, "challenge")
        a, b, c = self._ciphers
        with self._lock:
            return a.update(challenge) + b.update(challenge) + c.update(challenge)

    def verify_nt_response(
        self,
        authenticator_challenge: bytes,
        peer_challenge: bytes,
        username: str | bytes,
        nt_response: bytes,
    ) -> bool:
        """The authenticator's check of a received NT-Response (§8.1), in constant time.

        The server's hot path, so §8.2 and §8.5 are inlined here, and the argument checks
        of :func:`_check_len` and :func:`strip_domain` run only when the cheap test of
        the usual case (bytes of the right length, a plain user name) fails."""
        if (
            type(peer_challenge) is bytes
            and len(peer_challenge) == CHALLENGE_LEN
            and type(authenticator_challenge) is bytes
            and len(authenticator_challenge) == CHALLENGE_LEN
            and type(nt_response) is bytes
            and len(nt_response) == NT_RESPONSE_LEN
            and type(username) is str
            and username.isascii()  # so its length in UTF-8 is len(username)
            and "\\" not in username  # str's ``in``: much cheaper than bytes'
            and len(username) <= MAX_USERNAME_BYTES
        ):
            name = username.encode()
        else:
            peer_challenge = _check_len(peer_challenge, CHALLENGE_LEN, "peer_challenge")
            authenticator_challenge = _check_len(
                authenticator_challenge, CHALLENGE_LEN, "authenticator_challenge"
            )
            name = strip_domain(username)
            nt_response = _check_len(nt_response, NT_RESPONSE_LEN, "nt_response")
        challenge = _sha1(peer_challenge + authenticator_challenge + name).digest()[:8]
        a, b, c = self._ciphers
        lock = self._lock
        lock.acquire()  # cheaper than ``with`` on CPython 3.11
        try:
            expected = a.update(challenge) + b.update(challenge) + c.update(challenge)
        finally:
            lock.release()
        return _compare(expected, nt_response)


_sha1 = hashlib.sha1
_compare = hmac.compare_digest

_CACHE_SIZE = 4096
# Reads take no lock (a dict lookup is atomic); inserts evict the oldest entries, so the
# cache stays bounded whatever names and hashes come and go.
_cache: dict[bytes, NtHashKeys] = {}
_cache_lock = threading.Lock()


def nt_hash_keys(nt_hash: bytes) -> NtHashKeys:
    """The :class:`NtHashKeys` of ``nt_hash``, from a bounded cache."""
    if type(nt_hash) is not bytes:
        nt_hash = _check_len(nt_hash, NT_HASH_LEN, "nt_hash")
    keys = _cache.get(nt_hash)
    if keys is not None:
        return keys
    nt_hash = _check_len(nt_hash, NT_HASH_LEN, "nt_hash")
    keys = NtHashKeys(nt_hash)
    with _cache_lock:
        keys = _cache.setdefault(nt_hash, keys)
        while len(_cache) > _CACHE_SIZE:
            del _cache[next(iter(_cache))]
    return keys


# -- RFC 2759 §8 ---------------------------------------------------------------------


def nt_password_hash(password: str | bytes) -> bytes:
    """§8.3 NtPasswordHash: MD4 of the password in UTF-16LE (16 bytes)."""
    return md4(_password_bytes(password))


def hash_nt_password_hash(nt_hash: bytes) -> bytes:
    """§8.4 HashNtPasswordHash: MD4 of the NT hash (16 bytes)."""
    return md4(_check_len(nt_hash, NT_HASH_LEN, "nt_hash"))


def challenge_hash(
    peer_challenge: bytes, authenticator_challenge: bytes, username: str | bytes
) -> bytes:
    """§8.2 ChallengeHash: ``SHA1(PeerChallenge | AuthenticatorChallenge | UserName)[:8]``,
    the user name without its domain."""
    peer_challenge = _check_len(peer_challenge, CHALLENGE_LEN, "peer_challenge")
    authenticator_challenge = _check_len(
        authenticator_challenge, CHALLENGE_LEN, "authenticator_challenge"
    )
    return hashlib.sha1(  # noqa: S324 - the RFC's hash
        peer_challenge + authenticator_challenge + strip_domain(username)
    ).digest()[:8]


def challenge_response(challenge: bytes, nt_hash: bytes) -> bytes:
    """§8.5 ChallengeResponse: three DES encryptions of the 8-byte challenge (24 bytes)."""
    return nt_hash_keys(nt_hash).challenge_response(challenge)


def _nt_hash_of(password: str | bytes | None, nt_hash: bytes | None) -> bytes:
    if (password is None) == (nt_hash is None):
        raise ValueError("give exactly one of password and nt_hash")
    if nt_hash is not None:
        return _check_len(nt_hash, NT_HASH_LEN, "nt_hash")
    assert password is not None
    return nt_password_hash(password)


def generate_nt_response(
    authenticator_challenge: bytes,
    peer_challenge: bytes,
    username: str | bytes,
    password: str | bytes | None = None,
    nt_hash: bytes | None = None,
) -> bytes:
    """§8.1 GenerateNTResponse (24 bytes), from the password or its NT hash."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, _nt_hash_of(password, nt_hash))


def authenticator_response_digest(
    nt_hash_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str | bytes,
) -> bytes:
    """§8.7 GenerateAuthenticatorResponse as 20 raw bytes, from ``MD4(NT hash)``."""
    nt_response = _check_len(nt_response, NT_RESPONSE_LEN, "nt_response")
    digest = hashlib.sha1(nt_hash_hash + nt_response + _AUTH_MAGIC1).digest()  # noqa: S324
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return hashlib.sha1(digest + challenge + _AUTH_MAGIC2).digest()  # noqa: S324


def generate_authenticator_response(
    nt_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str | bytes,
) -> str:
    """§8.7 GenerateAuthenticatorResponse: the 42-character ``S=<40 uppercase hex>``."""
    digest = authenticator_response_digest(
        nt_hash_keys(nt_hash).nt_hash_hash,
        nt_response,
        peer_challenge,
        authenticator_challenge,
        username,
    )
    return "S=" + digest.hex().upper()


def check_authenticator_response(
    nt_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str | bytes,
    received: str | bytes,
) -> bool:
    """§8.8 CheckAuthenticatorResponse: is ``received`` (``S=<40 hex>``, either case) the
    response this authenticator should have sent?  Compared in constant time."""
    expected = authenticator_response_digest(
        hash_nt_password_hash(nt_hash),
        nt_response,
        peer_challenge,
        authenticator_challenge,
        username,
    )
    if isinstance(received, str):
        received = received.encode("ascii", "replace")
    if len(received) != 42 or received[:2] != b"S=":
        return False
    try:
        given = bytes.fromhex(received[2:].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return hmac.compare_digest(given, expected)


# -- RFC 3079 §3 --------------------------------------------------------------------


def get_master_key(nt_hash_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey: ``SHA1(PasswordHashHash | NTResponse | Magic1)[:16]``."""
    nt_hash_hash = _check_len(nt_hash_hash, NT_HASH_LEN, "nt_hash_hash")
    nt_response = _check_len(nt_response, NT_RESPONSE_LEN, "nt_response")
    return hashlib.sha1(nt_hash_hash + nt_response + _MPPE_MAGIC1).digest()[:16]  # noqa: S324


def get_asymmetric_start_key(
    master_key: bytes, key_length: int, is_send: bool, is_server: bool
) -> bytes:
    """RFC 3079 §3.4 GetAsymmetricStartKey: the start key of one direction, 8 (40/56-bit)
    or 16 (128-bit) bytes.  The peer's send key is the server's receive key."""
    master_key = _check_len(master_key, MASTER_KEY_LEN, "master_key")
    if key_length not in (8, 16):
        raise ValueError(f"key_length must be 8 or 16, not {key_length}")
    magic = _MPPE_MAGIC3 if is_send == is_server else _MPPE_MAGIC2
    digest = hashlib.sha1(master_key + _SHS_PAD1 + magic + _SHS_PAD2).digest()  # noqa: S324
    return digest[:key_length]


def get_new_key_from_sha(start_key: bytes, session_key: bytes, key_length: int) -> bytes:
    """RFC 3079 §3.4 (and RFC 3078 §7.3) GetNewKeyFromSHA: the next session key."""
    if key_length not in (8, 16):
        raise ValueError(f"key_length must be 8 or 16, not {key_length}")
    if len(start_key) < key_length or len(session_key) < key_length:
        raise ValueError(f"start_key and session_key need {key_length} bytes")
    data = bytes(start_key[:key_length]) + _SHS_PAD1 + bytes(session_key[:key_length])
    return hashlib.sha1(data + _SHS_PAD2).digest()[:key_length]  # noqa: S324


def reduce_session_key(key: bytes, bits: int) -> bytes:
    """RFC 3079 §3.1-3.2: a 40-bit key starts D1 26 9E, a 56-bit key starts D1; a
    128-bit key is left alone."""
    if bits in (40, 56):
        key = _check_len(key, 8, "key")
        return b"\xd1\x26\x9e" + key[3:] if bits == 40 else b"\xd1" + key[1:]
    if bits == 128:
        return _check_len(key, 16, "key")
    raise ValueError(f"bits must be 40, 56 or 128, not {bits}")


def mschapv2_msk(master_key: bytes) -> bytes:
    """The 64-byte EAP-MSCHAPv2 MSK ([MS-CHAP] §3.1.5.1), the same on both sides::

        MSK = MasterReceiveKey | MasterSendKey | 32 zero bytes

    with the 16-byte keys of RFC 3079 seen from the authenticator (its receive key is the
    peer's send key).  So MSK[0:32] is what the authenticator sends as MS-MPPE-Recv-Key and
    MSK[32:64] (zeros) its MS-MPPE-Send-Key; see :mod:`eapkit.methods.mschapv2`.
    """
    recv = get_asymmetric_start_key(master_key, 16, is_send=False, is_server=True)
    send = get_asymmetric_start_key(master_key, 16, is_send=True, is_server=True)
    return recv + send + b"\x00" * 32


# -- RFC 2759 §8.9-8.13: Change-Password ---------------------------------------------


def _rc4(key: bytes, data: bytes) -> bytes:
    return Cipher(ARC4(key), mode=None).encryptor().update(data)  # noqa: S304 - MPPE is RC4


def encrypt_pw_block_with_password_hash(
    password: str | bytes, password_hash: bytes, filler: bytes | None = None
) -> bytes:
    """§8.10 EncryptPwBlockWithPasswordHash: the password (UTF-16LE) at the end of 512
    random bytes, its byte length in 4 little-endian bytes, all RC4-encrypted under
    ``password_hash`` (516 bytes).  ``filler`` (512 bytes) replaces the random bytes."""
    password_hash = _check_len(password_hash, NT_HASH_LEN, "password_hash")
    pw = _password_bytes(password)
    area = (
        os.urandom(MAX_PASSWORD_BYTES)
        if filler is None
        else _check_len(filler, MAX_PASSWORD_BYTES, "filler")
    )
    clear = area[: MAX_PASSWORD_BYTES - len(pw)] + pw + len(pw).to_bytes(4, "little")
    return _rc4(password_hash, clear)


def decrypt_pw_block_with_password_hash(block: bytes, password_hash: bytes) -> str:
    """The authenticator's inverse of :func:`encrypt_pw_block_with_password_hash`: the new
    password from an untrusted Encrypted-Password field.  Raises
    :class:`~eapkit.errors.DecodeError` when it does not decrypt to a valid block (which
    is also what a wrong old password looks like)."""
    password_hash = _check_len(password_hash, NT_HASH_LEN, "password_hash")
    if len(block) != PW_BLOCK_LEN:
        raise DecodeError(
            f"Encrypted-Password of {len(block)} bytes", expected=f"{PW_BLOCK_LEN} bytes"
        )
    clear = _rc4(password_hash, bytes(block))
    length = int.from_bytes(clear[MAX_PASSWORD_BYTES:], "little")
    if length > MAX_PASSWORD_BYTES or length % 2:
        raise DecodeError("Encrypted-Password does not decrypt to a password block")
    try:
        return clear[MAX_PASSWORD_BYTES - length : MAX_PASSWORD_BYTES].decode("utf-16-le")
    except UnicodeDecodeError:
        raise DecodeError("the new password is not UTF-16LE text") from None


def new_password_encrypted_with_old_nt_password_hash(
    new_password: str | bytes,
    old_password: str | bytes | None = None,
    *,
    old_nt_hash: bytes | None = None,
    filler: bytes | None = None,
) -> bytes:
    """§8.9 NewPasswordEncryptedWithOldNtPasswordHash (516 bytes); the old password may
    be given as its NT hash."""
    old_hash = _nt_hash_of(old_password, old_nt_hash)
    return encrypt_pw_block_with_password_hash(new_password, old_hash, filler)


def nt_password_hash_encrypted_with_block(password_hash: bytes, block: bytes) -> bytes:
    """§8.13 NtPasswordHashEncryptedWithBlock: the 16-byte hash DES-encrypted in two
    halves under the first 14 bytes of ``block``."""
    password_hash = _check_len(password_hash, NT_HASH_LEN, "password_hash")
    block = _check_len(block, NT_HASH_LEN, "block")
    return des_encrypt(password_hash[:8], block[:7]) + des_encrypt(password_hash[8:], block[7:14])


def old_nt_password_hash_encrypted_with_new_nt_password_hash(
    new_password: str | bytes | None = None,
    old_password: str | bytes | None = None,
    *,
    new_nt_hash: bytes | None = None,
    old_nt_hash: bytes | None = None,
) -> bytes:
    """§8.12 OldNtPasswordHashEncryptedWithNewNtPasswordHash (16 bytes); either password
    may be given as its NT hash."""
    new_hash = _nt_hash_of(new_password, new_nt_hash)
    old_hash = _nt_hash_of(old_password, old_nt_hash)
    return nt_password_hash_encrypted_with_block(old_hash, new_hash)
