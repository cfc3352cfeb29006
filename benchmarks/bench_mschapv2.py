"""MS-CHAPv2 verification from a stored NT hash: eapkit vs a straightforward RFC 2759
transcription vs the floor.

- eapkit: :func:`eapkit.crypto.mschap.nt_hash_keys` (the per-user DES key schedules and
  ``MD4(NT hash)``, cached) and what :class:`~eapkit.methods.mschapv2.MsChapV2Authenticator`
  does with them.
- anchor ("RFC 2759 transcription"): the RFC's pseudo-code written out as most
  implementations do, a new DES cipher object per block and ``HashNtPasswordHash``
  recomputed per call (MD4 through ``hashlib`` when OpenSSL offers it, else the pure
  Python MD4 such implementations fall back to on OpenSSL 3).
- floor: the same SHA-1 and DES calls with encryptors created once and nothing else.

Run: ``.venv/bin/python -m benchmarks.bench_mschapv2`` (``--quick`` for a short run).
"""

from __future__ import annotations

import hashlib
import hmac
import timeit
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from benchmarks.runner import standalone
from eapkit.crypto.md4 import md4
from eapkit.crypto.mschap import (
    authenticator_response_digest,
    generate_nt_response,
    get_master_key,
    mschapv2_msk,
    nt_hash_keys,
    nt_password_hash,
)
from eapkit.methods.base import MethodContext
from eapkit.methods.mschapv2 import (
    MsChapV2Authenticator,
    MsChapV2Challenge,
    MsChapV2Response,
    decode_request,
)
from eapkit.rand import DeterministicRandom
from eapkit.testing import StaticNtHashes

USER = "alice"
PASSWORD = "correct horse battery staple"
NT_HASH = nt_password_hash(PASSWORD)
AUTH_CHALLENGE = bytes(range(16))
PEER_CHALLENGE = bytes(range(16, 32))
NT_RESPONSE = generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, password=PASSWORD)

# -- the anchor: RFC 2759 §8 as pseudo-code, transcribed --------------------------------

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_MPPE_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)


def rfc_des_key(key7: bytes) -> bytes:
    """§8.6: 56 key bits spread over 8 bytes, with parity bits."""
    bits = int.from_bytes(key7, "big")
    key = bytearray()
    for i in range(8):
        b = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        key.append(b | (bin(b).count("1") % 2 == 0))
    return bytes(key)


def rfc_des_encrypt(clear: bytes, key7: bytes) -> bytes:
    return Cipher(TripleDES(rfc_des_key(key7) * 3), modes.ECB()).encryptor().update(clear)


def rfc_challenge_hash(peer: bytes, auth: bytes, user: str) -> bytes:
    name = user.split("\\", 1)[-1].encode()
    return hashlib.sha1(peer + auth + name).digest()[:8]


def rfc_challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    z = password_hash + bytes(5)
    return (
        rfc_des_encrypt(challenge, z[0:7])
        + rfc_des_encrypt(challenge, z[7:14])
        + rfc_des_encrypt(challenge, z[14:21])
    )


def rfc_verify(nt_hash: bytes, auth: bytes, peer: bytes, user: str, nt_response: bytes) -> bool:
    expected = rfc_challenge_response(rfc_challenge_hash(peer, auth, user), nt_hash)
    return hmac.compare_digest(expected, nt_response)


def rfc_success(nt_hash: bytes, auth: bytes, peer: bytes, user: str, nt_response: bytes) -> bytes:
    """Verify, then the authenticator response and both MPPE keys, as the RFCs spell it."""
    if not rfc_verify(nt_hash, auth, peer, user, nt_response):
        raise AssertionError("the benchmark's NT-Response must verify")
    hash_hash = md4(nt_hash)
    digest = hashlib.sha1(hash_hash + nt_response + _MAGIC1).digest()
    digest = hashlib.sha1(digest + rfc_challenge_hash(peer, auth, user) + _MAGIC2).digest()
    master = hashlib.sha1(hash_hash + nt_response + _MPPE_MAGIC1).digest()[:16]
    pad1, pad2 = bytes(40), b"\xf2" * 40
    recv = hashlib.sha1(master + pad1 + _MPPE_MAGIC2 + pad2).digest()[:16]
    send = hashlib.sha1(master + pad1 + _MPPE_MAGIC3 + pad2).digest()[:16]
    return digest + recv + send


# -- the floor ---------------------------------------------------------------------------

_Z = NT_HASH + bytes(5)
# the same three DES keys, expanded and scheduled once
_FLOOR_DES = tuple(
    Cipher(TripleDES(rfc_des_key(_Z[i : i + 7]) * 3), modes.ECB()).encryptor() for i in (0, 7, 14)
)
_FLOOR_HASH_HASH = md4(NT_HASH)
_NAME = USER.encode()


def floor_verify() -> bool:
    c = hashlib.sha1(PEER_CHALLENGE + AUTH_CHALLENGE + _NAME).digest()[:8]
    a, b, d = _FLOOR_DES
    return hmac.compare_digest(a.update(c) + b.update(c) + d.update(c), NT_RESPONSE)


def floor_success() -> bytes:
    c = hashlib.sha1(PEER_CHALLENGE + AUTH_CHALLENGE + _NAME).digest()[:8]
    a, b, d = _FLOOR_DES
    hmac.compare_digest(a.update(c) + b.update(c) + d.update(c), NT_RESPONSE)
    digest = hashlib.sha1(_FLOOR_HASH_HASH + NT_RESPONSE + _MAGIC1).digest()
    digest = hashlib.sha1(digest + c + _MAGIC2).digest()
    master = hashlib.sha1(_FLOOR_HASH_HASH + NT_RESPONSE + _MPPE_MAGIC1).digest()[:16]
    pad1, pad2 = bytes(40), b"\xf2" * 40
    recv = hashlib.sha1(master + pad1 + _MPPE_MAGIC2 + pad2).digest()[:16]
    send = hashlib.sha1(master + pad1 + _MPPE_MAGIC3 + pad2).digest()[:16]
    return digest + recv + send


# -- eapkit ---------------------------------------------------------------------------------


def eapkit_verify() -> bool:
    return nt_hash_keys(NT_HASH).verify_nt_response(
        AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE
    )


def eapkit_success() -> bytes:
    keys = nt_hash_keys(NT_HASH)
    if not keys.verify_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE):
        raise AssertionError("the benchmark's NT-Response must verify")
    digest = authenticator_response_digest(
        keys.nt_hash_hash, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    return digest + mschapv2_msk(get_master_key(keys.nt_hash_hash, NT_RESPONSE))[:32]


_TABLE = StaticNtHashes({USER: NT_HASH})


def eapkit_method_round() -> None:
    """The authenticator method's whole job: Challenge, check the Response, Success
    Request, keys on the acknowledgement (messages encoded and decoded)."""
    auth = MsChapV2Authenticator(
        MethodContext(identity=_NAME, random=DeterministicRandom(1)), _TABLE
    )
    challenge = decode_request(auth.start())
    assert isinstance(challenge, MsChapV2Challenge)
    nt = nt_hash_keys(NT_HASH).challenge_response(
        hashlib.sha1(PEER_CHALLENGE + challenge.challenge + _NAME).digest()[:8]
    )
    auth.receive(MsChapV2Response(challenge.ms_chap_id, PEER_CHALLENGE, nt, _NAME).encode())
    auth.receive(b"\x03")


def _measure(fns: list[Callable[[], object]], quick: bool) -> list[float]:
    """Best per-call time of each function, in microseconds.  The functions are timed in
    interleaved rounds so that load from elsewhere on the machine hits them alike."""
    timers = []
    for fn in fns:
        fn()  # warm caches the way a running server has them
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        timers.append((timer, max(1, number // 4) if quick else number * 3))
    best = [float("inf")] * len(fns)
    for _ in range(3 if quick else 9):
        for i, (timer, number) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e6)
    return best


def _row(
    op: str,
    quick: bool,
    eapkit: Callable[[], object],
    anchor: str | None = None,
    anchor_fn: Callable[[], object] | None = None,
    floor: Callable[[], object] | None = None,
) -> dict[str, object]:
    fns = [eapkit] + [f for f in (anchor_fn, floor) if f is not None]
    times = iter(_measure(fns, quick))
    eapkit_us = next(times)
    return {
        "op": op,
        "eapkit_us": eapkit_us,
        "anchor": anchor,
        "anchor_us": next(times) if anchor_fn is not None else None,
        "floor_us": next(times) if floor is not None else None,
    }


def run(quick: bool = False) -> list[dict[str, object]]:
    # the three implementations must agree before they are timed
    assert eapkit_verify() and floor_verify()
    assert rfc_verify(NT_HASH, AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE)
    expected = rfc_success(NT_HASH, AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE)
    assert eapkit_success() == expected == floor_success()

    anchor = "RFC 2759 transcription (new DES cipher per block)"
    return [
        _row(
            "verify NT-Response from stored NT hash",
            quick,
            eapkit_verify,
            anchor,
            lambda: rfc_verify(NT_HASH, AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE),
            floor_verify,
        ),
        _row(
            "verify + authenticator response + MPPE keys",
            quick,
            eapkit_success,
            anchor + ", MD4 per call",
            lambda: rfc_success(NT_HASH, AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_RESPONSE),
            floor_success,
        ),
        _row("EAP-MSCHAPv2 authenticator method, whole exchange", quick, eapkit_method_round),
    ]


def main() -> None:
    standalone("mschapv2", run)


if __name__ == "__main__":
    main()
