"""WebAuthn assertion verification: eapkit vs python-fido2 vs one bare signature verify.

The hot path of a FIDO2 login is the assertion a browser posts as JSON.  For each
algorithm this measures, in the same run and on the same assertions:

- eapkit: ``WebAuthnVerifier.finish_authentication(json)`` on a memory store: parse the
  JSON, consume the single-use challenge, look up the credential, check client and
  authenticator data, verify the signature, advance the signature counter;
- eapkit stateless: ``verify_assertion(...)`` on the decoded fields;
- the anchor: python-fido2 ``Fido2Server.authenticate_complete(state, [cred], json)``
  (no challenge store, no counter);
- the floor: one bare signature verification through ``cryptography`` with a key object
  loaded once (ECDSA P-256, Ed25519, RSA-2048 PKCS#1 v1.5).

Run: ``.venv/bin/python -m benchmarks.bench_webauthn [--quick]``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from fido2 import cbor
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestedCredentialData,
    PublicKeyCredentialRpEntity,
    UserVerificationRequirement,
)

from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore
from eapkit.testing.soft_authenticator import SoftAuthenticator
from eapkit.verify.webauthn import WebAuthnVerifier, b64url_decode, verify_assertion

RP = "example.org"
ORIGIN = "https://example.org"
NAMES = {-7: "ES256", -8: "EdDSA/Ed25519", -257: "RS256"}
FLOORS = {-7: "ECDSA P-256 verify", -8: "Ed25519 verify", -257: "RSA-2048 verify"}


def _interleaved(
    contenders: dict[str, tuple[Callable[[Any], object], Sequence[Sequence[Any]]]],
) -> dict[str, float]:
    """Best per-operation time (µs) of each contender.  Repeats are interleaved (A B C,
    A B C, ...) so that load from other processes hits every contender alike; each item
    of each batch is used once (challenges are single-use, counters must rise)."""
    best = dict.fromkeys(contenders, float("inf"))
    repeats = max(len(batches) for _, batches in contenders.values())
    for r in range(repeats):
        for name, (fn, batches) in contenders.items():
            batch = batches[r % len(batches)]
            t0 = time.perf_counter()
            for item in batch:
                fn(item)
            best[name] = min(best[name], (time.perf_counter() - t0) / len(batch))
    return {name: t * 1e6 for name, t in best.items()}


def _floor_fn(alg: int, key: Any, sig: bytes, data: bytes) -> Callable[[object], None]:
    if alg == -7:
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda _: key.verify(sig, data, ecdsa)
    if alg == -8:
        return lambda _: key.verify(sig, data)
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    return lambda _: key.verify(sig, data, pad, sha)


def _bench_alg(alg: int, n: int, repeats: int) -> list[dict[str, Any]]:
    store = MemoryStore()
    rp = WebAuthnVerifier(store, rp_id=RP, origins=[ORIGIN], rand=DeterministicRandom(alg))
    auth = SoftAuthenticator(rand=DeterministicRandom(alg + 1))
    now = 1_800_000_000.0
    reg = rp.finish_registration(
        auth.create(rp.begin_registration("alice", now=now), origin=ORIGIN, alg=alg), now=now
    )
    assert reg.ok and reg.stored is not None, reg
    stored = reg.stored
    acd = AttestedCredentialData.create(
        stored.aaguid,
        stored.credential_id,
        CoseKey.parse(cbor.decode(stored.public_key)),  # type: ignore[arg-type]
    )
    server = Fido2Server(PublicKeyCredentialRpEntity(name="bench", id=RP))

    # one batch per repeat, for each contender: challenges are single-use and counters
    # must rise, so every measured call sees a fresh, valid assertion
    def batch() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for _ in range(n):
            opts = rp.begin_authentication("alice", now=now)
            out.append((opts, auth.get(opts, origin=ORIGIN)))
        return out

    warm = batch()  # first: eapkit's counter check wants rising counters, in this order
    ours = [batch() for _ in range(repeats)]
    anchor = [batch() for _ in range(repeats)]
    stateless = [batch() for _ in range(repeats)]

    def eapkit_one(item: tuple[dict[str, Any], dict[str, Any]]) -> None:
        v = rp.finish_authentication(item[1], now=now)
        assert v.ok, v

    def fido2_one(item: tuple[dict[str, Any], dict[str, Any]]) -> None:
        state = {
            "challenge": item[0]["challenge"],
            "user_verification": UserVerificationRequirement.PREFERRED,
        }
        server.authenticate_complete(state, [acd], item[1])

    challenge_of = {}
    for b in stateless:
        for opts, resp in b:
            challenge_of[id(resp)] = b64url_decode(opts["challenge"])

    def stateless_one(item: tuple[dict[str, Any], dict[str, Any]]) -> None:
        r = item[1]["response"]
        v = verify_assertion(
            credential_public_key=stored.public_key,
            authenticator_data=b64url_decode(r["authenticatorData"]),
            client_data_json=b64url_decode(r["clientDataJSON"]),
            signature=b64url_decode(r["signature"]),
            rp_id=RP,
            origin=ORIGIN,
            challenge=challenge_of[id(item[1])],
        )
        assert v.ok, v

    for item in warm[: n // 4]:
        eapkit_one(item)
        fido2_one(item)

    opts, resp = warm[-1]
    r = resp["response"]
    data = (
        b64url_decode(r["authenticatorData"])
        + hashlib.sha256(b64url_decode(r["clientDataJSON"])).digest()
    )
    sig = b64url_decode(r["signature"])
    priv = auth.credentials[stored.credential_id].private_key
    pub: Any
    if isinstance(priv, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        pub = priv.public_key()
    else:  # pragma: no cover - the algorithms above only
        raise TypeError(type(priv))
    t = _interleaved(
        {
            "eapkit": (eapkit_one, ours),
            "fido2": (fido2_one, anchor),
            "stateless": (stateless_one, stateless),
            "floor": (_floor_fn(alg, pub, sig, data), [range(n)]),
        }
    )
    eapkit_us, fido2_us, stateless_us, floor_us = (
        t["eapkit"],
        t["fido2"],
        t["stateless"],
        t["floor"],
    )
    name = NAMES[alg]
    anchor_name = "python-fido2 Fido2Server.authenticate_complete"
    return [
        {
            "op": f"assertion {name} from browser JSON (stateful, memory store)",
            "eapkit_us": eapkit_us,
            "anchor": anchor_name,
            "anchor_us": fido2_us,
            "floor_us": floor_us,
            "floor": FLOORS[alg],
        },
        {
            "op": f"assertion {name} verify_assertion (stateless)",
            "eapkit_us": stateless_us,
            "anchor": anchor_name,
            "anchor_us": fido2_us,
            "floor_us": floor_us,
            "floor": FLOORS[alg],
        },
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    n, repeats = (150, 5) if quick else (400, 9)
    rows: list[dict[str, Any]] = []
    for alg in (-7, -8, -257):
        rows += _bench_alg(alg, n if alg != -257 else n // 3, repeats)
    return rows


def main(argv: Sequence[str] = ()) -> None:
    rows = run(quick="--quick" in argv)
    print(
        f"{'operation':<62} {'eapkit µs':>10} {'fido2 µs':>10} {'fido2/eapkit':>12} "
        f"{'floor µs':>9} {'eapkit/floor':>12}"
    )
    for r in rows:
        print(
            f"{r['op']:<62} {r['eapkit_us']:>10.1f} {r['anchor_us']:>10.1f} "
            f"{r['anchor_us'] / r['eapkit_us']:>11.2f}x {r['floor_us']:>9.1f} "
            f"{r['eapkit_us'] / r['floor_us']:>11.2f}x"
        )
    print(
        "anchor: python-fido2 Fido2Server.authenticate_complete; floor: "
        + ", ".join(f"{NAMES[a]} -> {FLOORS[a]}" for a in FLOORS)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
