"""The stateful WebAuthn verifier against the software authenticator: every reason code.

Each refusal test changes one thing in an otherwise good ceremony, so a verifier that
skipped that check would accept and the test would fail.  python-fido2's
``Fido2Server`` serves as an independent oracle for the signatures.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fido2 import cbor
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestedCredentialData,
    PublicKeyCredentialRpEntity,
    UserVerificationRequirement,
)

from eapkit.errors import ConfigError, DecodeError
from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore, SqliteStore, StoreUnavailable
from eapkit.store.base import Store
from eapkit.testing.soft_authenticator import (
    SoftAuthenticator,
    make_attestation_chain,
)
from eapkit.verify import webauthn as w
from eapkit.verify.webauthn import (
    StoredCredential,
    WebAuthnVerifier,
    b64url_decode,
    b64url_encode,
    cose,
)

RP = "example.org"
ORIGIN = "https://login.example.org"
T0 = 1_800_000_000.0


class FlakyStore(MemoryStore):
    """A MemoryStore whose named operations fail as an unreachable backend would."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    def _maybe(self, op: str) -> None:
        if op in self.failing:
            raise StoreUnavailable(f"test backend: {op} failed")

    def get(self, key: str) -> bytes | None:
        self._maybe("get")
        return super().get(key)

    def put(self, key: str, value: bytes) -> None:
        self._maybe("put")
        super().put(key, value)

    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        self._maybe("put_once")
        return super().put_once(key, value, ttl, now)

    def take(self, key: str, now: float) -> bytes | None:
        self._maybe("take")
        return super().take(key, now)

    def advance(self, key: str, value: int) -> bool:
        self._maybe("advance")
        return super().advance(key, value)

    def counter(self, key: str) -> int | None:
        self._maybe("counter")
        return super().counter(key)


def make_verifier(store: Store | None = None, **kw: Any) -> WebAuthnVerifier:
    kw.setdefault("rand", DeterministicRandom("rp"))
    kw.setdefault("origins", [ORIGIN])
    return WebAuthnVerifier(store if store is not None else MemoryStore(), rp_id=RP, **kw)


def register(
    v: WebAuthnVerifier,
    a: SoftAuthenticator,
    user: str = "alice",
    *,
    at: float = T0,
    begin: dict[str, Any] | None = None,
    **kw: Any,
) -> w.RegistrationVerdict:
    opts = v.begin_registration(user, now=at, **(begin or {}))
    kw.setdefault("origin", ORIGIN)
    return v.finish_registration(a.create(opts, **kw), now=at + 1)


def login(
    v: WebAuthnVerifier,
    a: SoftAuthenticator,
    user: str | None = "alice",
    *,
    at: float = T0 + 10,
    begin: dict[str, Any] | None = None,
    **kw: Any,
) -> w.WebAuthnVerdict:
    opts = v.begin_authentication(user, now=at, **(begin or {}))
    kw.setdefault("origin", ORIGIN)
    return v.finish_authentication(a.get(opts, **kw), now=at + 1)


@pytest.fixture
def rp() -> WebAuthnVerifier:
    return make_verifier()


@pytest.fixture
def key() -> SoftAuthenticator:
    return SoftAuthenticator(rand=DeterministicRandom("key"))


@pytest.fixture
def enrolled(rp: WebAuthnVerifier, key: SoftAuthenticator) -> SoftAuthenticator:
    assert register(rp, key).ok
    return key


# -- happy paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("alg", [-7, -8, -257, -35, -36, -53])
@pytest.mark.parametrize("attestation", ["none", "packed-self"])
def test_register_and_login_every_algorithm(alg: int, attestation: str) -> None:
    rp = make_verifier(attestation="self" if attestation != "none" else "none")
    a = SoftAuthenticator(rand=DeterministicRandom(alg), attestation=attestation)  # type: ignore[arg-type]
    reg = register(rp, a, alg=alg)
    assert reg.ok, reg
    assert reg.stored is not None and reg.stored.algorithm == alg
    assert reg.stored.attestation_type == ("self" if attestation != "none" else "unverified")
    for n in (1, 2, 3):
        v = login(rp, a)
        assert (v.ok, v.reason, v.sign_count, v.user) == (True, "ok", n, "alice"), v
    assert rp.credentials("alice")[0].sign_count == 3


def test_registration_stores_what_the_issue_lists(rp: WebAuthnVerifier) -> None:
    a = SoftAuthenticator(
        rand=DeterministicRandom(5), transports=("usb", "nfc"), backup_eligible=True
    )
    reg = register(rp, a, sign_count=7)
    assert reg.ok and reg.stored is not None
    (cred,) = rp.credentials("alice")
    assert cred == reg.stored
    assert cred.public_key == next(iter(a.credentials.values())).public_key
    assert (cred.aaguid, cred.transports) == (a.aaguid, ("usb", "nfc"))
    assert (cred.backup_eligible, cred.backup_state, cred.sign_count) == (True, False, 7)
    assert StoredCredential.from_record(cred.to_record()) == replace(cred, sign_count=0)


def test_options_name_existing_credentials(
    rp: WebAuthnVerifier, enrolled: SoftAuthenticator
) -> None:
    (cid,) = enrolled.credentials
    reg_opts = rp.begin_registration("alice", now=T0)
    assert [b64url_decode(c["id"]) for c in reg_opts["excludeCredentials"]] == [cid]
    assert reg_opts["rp"] == {"id": RP, "name": RP}
    assert reg_opts["attestation"] == "none"
    auth_opts = rp.begin_authentication("alice", now=T0)
    assert auth_opts["allowCredentials"] == [
        {"type": "public-key", "id": b64url_encode(cid), "transports": ["usb"]}
    ]
    assert rp.begin_authentication(None, now=T0)["allowCredentials"] == []
    # the user handle is random and stays the user's
    h1 = reg_opts["user"]["id"]
    assert h1 == rp.begin_registration("alice", now=T0)["user"]["id"]
    assert h1 != rp.begin_registration("bob", now=T0)["user"]["id"]


def test_usernameless_login_finds_the_user(rp: WebAuthnVerifier) -> None:
    alice = SoftAuthenticator(rand=DeterministicRandom("a"))
    bob = SoftAuthenticator(rand=DeterministicRandom("b"))
    assert register(rp, alice, "alice").ok
    assert register(rp, bob, "bob").ok
    assert login(rp, alice, None).user == "alice"
    assert login(rp, bob, None).user == "bob"


def test_two_credentials_per_user_and_removal(rp: WebAuthnVerifier) -> None:
    k1 = SoftAuthenticator(rand=DeterministicRandom(1))
    k2 = SoftAuthenticator(rand=DeterministicRandom(2))
    assert register(rp, k1).ok and register(rp, k2).ok
    assert len(rp.credentials("alice")) == 2
    assert login(rp, k1).ok and login(rp, k2).ok
    (c1,) = k1.credentials
    assert not rp.remove_credential("bob", c1)
    assert rp.remove_credential("alice", c1)
    assert not rp.remove_credential("alice", c1)
    assert [c.credential_id for c in rp.credentials("alice")] == list(k2.credentials)
    assert login(rp, k1, credential_id=c1).reason == "unknown_credential"
    assert login(rp, k2).ok


def test_zero_counter_authenticators_are_accepted_repeatedly(rp: WebAuthnVerifier) -> None:
    passkey = SoftAuthenticator(rand=DeterministicRandom(9), counter="zero")
    assert register(rp, passkey).ok
    for _ in range(3):
        v = login(rp, passkey)
        assert (v.ok, v.sign_count) == (True, 0)


def test_backup_state_and_uv_are_kept_current(rp: WebAuthnVerifier) -> None:
    a = SoftAuthenticator(
        rand=DeterministicRandom(3), backup_eligible=True, user_verification=False
    )
    assert register(rp, a).ok
    (c,) = rp.credentials("alice")
    assert (c.backup_state, c.uv_initialized) == (False, False)
    a.backup_state = True
    assert login(rp, a, user_verified=True).ok
    (c,) = rp.credentials("alice")
    assert (c.backup_state, c.uv_initialized) == (True, True)


def test_sqlite_store(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    try:
        rp = make_verifier(store)
        a = SoftAuthenticator(rand=DeterministicRandom(4))
        assert register(rp, a).ok
        assert login(rp, a).ok
        # a second verifier (another process or node) on the same file sees it all
        rp2 = make_verifier(SqliteStore(str(tmp_path / "s.db")), rand=DeterministicRandom(8))
        assert login(rp2, a, None).user == "alice"
        assert login(rp2, a, sign_count=1).reason == "counter_regressed"
    finally:
        store.close()


def test_python_fido2_agrees() -> None:
    """Fido2Server.authenticate_complete accepts the assertions we accept and refuses the
    forged ones we refuse: an implementation no one here wrote."""
    origin = f"https://{RP}"
    rp = make_verifier(origins=[origin])
    server = Fido2Server(PublicKeyCredentialRpEntity(name="x", id=RP))
    for alg in (-7, -8, -257):
        a = SoftAuthenticator(rand=DeterministicRandom(alg))
        reg = register(rp, a, f"user{alg}", alg=alg, origin=origin)
        assert reg.stored is not None
        acd = AttestedCredentialData.create(
            reg.stored.aaguid,
            reg.stored.credential_id,
            CoseKey.parse(cbor.decode(reg.stored.public_key)),  # type: ignore[arg-type]
        )
        for forge in (False, True):
            opts = rp.begin_authentication(f"user{alg}", now=T0)
            resp = a.get(opts, origin=origin)
            if forge:
                sig = bytearray(b64url_decode(resp["response"]["signature"]))
                sig[-1] ^= 1
                resp["response"]["signature"] = b64url_encode(bytes(sig))
            state = {
                "challenge": opts["challenge"],
                "user_verification": UserVerificationRequirement.PREFERRED,
            }
            ours = rp.finish_authentication(resp, now=T0 + 1)
            if forge:
                with pytest.raises(ValueError, match="signature"):
                    server.authenticate_complete(state, [acd], resp)
                assert ours.reason == "bad_signature"
            else:
                assert server.authenticate_complete(state, [acd], resp) == acd
                assert ours.ok


# -- authentication refusals: one change each -----------------------------------------------
def _tamper(resp: dict[str, Any], field: str, fn: Callable[[bytes], bytes]) -> dict[str, Any]:
    out = dict(resp, response=dict(resp["response"]))
    out["response"][field] = b64url_encode(fn(b64url_decode(resp["response"][field])))
    return out


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 1])


def test_bad_signature(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    opts = rp.begin_authentication("alice", now=T0)
    resp = _tamper(enrolled.get(opts, origin=ORIGIN), "signature", _flip_last)
    v = rp.finish_authentication(resp, now=T0 + 1)
    assert (v.ok, v.reason, v.user) == (False, "bad_signature", "alice")
    # authenticator data is signed: a raised counter is a bad signature too
    opts = rp.begin_authentication("alice", now=T0)
    resp = _tamper(enrolled.get(opts, origin=ORIGIN), "authenticatorData", _flip_last)
    assert rp.finish_authentication(resp, now=T0 + 1).reason == "bad_signature"
    # a failed attempt does not advance the stored counter
    assert rp.credentials("alice")[0].sign_count == 0
    assert login(rp, enrolled).ok


def test_bad_origin(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    assert login(rp, enrolled, origin="https://evil.example").reason == "bad_origin"
    assert login(rp, enrolled, origin=f"http://login.{RP}").reason == "bad_origin"
    assert login(rp, enrolled, client_data={"crossOrigin": True}).reason == "bad_origin"
    top = {"crossOrigin": True, "topOrigin": "https://portal.example"}
    assert login(rp, enrolled, client_data=top).reason == "bad_origin"
    framed = make_verifier(
        rp.store, allow_cross_origin=True, top_origins=["https://portal.example"]
    )
    assert login(framed, enrolled, client_data=top).ok
    other = dict(top, topOrigin="https://evil.example")
    assert login(framed, enrolled, client_data=other).reason == "bad_origin"


def test_bad_rp_id(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    v = login(rp, enrolled, rp_id="evil.example")
    assert (v.reason, v.sign_count) == ("bad_rp_id", 1)


def test_challenge_unknown(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    forged = {"challenge": b64url_encode(b"\x00" * 32)}
    assert login(rp, enrolled, client_data=forged).reason == "challenge_unknown"
    assert login(rp, enrolled, client_data={"challenge": ""}).reason == "challenge_unknown"
    long = {"challenge": b64url_encode(b"\x00" * 65)}
    assert login(rp, enrolled, client_data=long).reason == "challenge_unknown"
    # a registration challenge does not authenticate
    reg = rp.begin_registration("alice", now=T0)
    opts = rp.begin_authentication("alice", now=T0)
    resp = enrolled.get(opts, origin=ORIGIN, client_data={"challenge": reg["challenge"]})
    assert rp.finish_authentication(resp, now=T0 + 1).reason == "challenge_unknown"


def test_challenge_expired(enrolled: SoftAuthenticator) -> None:
    rp = make_verifier(timeout=60, grace=600)
    assert register(rp, enrolled).ok
    opts = rp.begin_authentication("alice", now=T0)
    resp = enrolled.get(opts, origin=ORIGIN)
    assert rp.finish_authentication(resp, now=T0 + 61).reason == "challenge_expired"
    # and it was consumed by that attempt
    assert rp.finish_authentication(resp, now=T0 + 62).reason == "replayed"
    # beyond the grace period an expired challenge is simply unknown
    opts = rp.begin_authentication("alice", now=T0)
    resp = enrolled.get(opts, origin=ORIGIN)
    assert rp.finish_authentication(resp, now=T0 + 661).reason == "challenge_unknown"
    # at the deadline it is still good
    opts = rp.begin_authentication("alice", now=T0)
    assert rp.finish_authentication(enrolled.get(opts, origin=ORIGIN), now=T0 + 60).ok


def test_replayed(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    opts = rp.begin_authentication("alice", now=T0)
    resp = enrolled.get(opts, origin=ORIGIN)
    assert rp.finish_authentication(resp, now=T0 + 1).ok
    v = rp.finish_authentication(resp, now=T0 + 2)
    assert (v.ok, v.reason) == (False, "replayed")
    # on another node sharing the store, too
    node2 = make_verifier(rp.store, rand=DeterministicRandom("node2"))
    assert node2.finish_authentication(resp, now=T0 + 3).reason == "replayed"


def test_user_not_present(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    assert login(rp, enrolled, user_present=False).reason == "user_not_present"


def test_uv_required(enrolled: SoftAuthenticator) -> None:
    rp = make_verifier(user_verification="required")
    assert register(rp, enrolled).ok
    assert login(rp, enrolled, user_verified=False).reason == "uv_required"
    assert login(rp, enrolled, user_verified=True).user_verified
    # per ceremony, on a verifier whose default is "preferred"
    lax = make_verifier(rp.store)
    assert login(lax, enrolled, user_verified=False).ok
    strict = {"user_verification": "required"}
    assert login(lax, enrolled, begin=strict, user_verified=False).reason == "uv_required"


def test_unknown_credential(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    stranger = SoftAuthenticator(rand=DeterministicRandom("stranger"))
    stranger.create(rp.begin_registration("mallory", now=T0), origin=ORIGIN)  # never finished
    assert login(rp, stranger, None).reason == "unknown_credential"
    # bob's credential is not in alice's allowCredentials
    bob = SoftAuthenticator(rand=DeterministicRandom("bob"))
    assert register(rp, bob, "bob").ok
    (bob_id,) = bob.credentials
    v = login(rp, bob, "alice", credential_id=bob_id)
    assert (v.reason, v.detail) == ("unknown_credential", "credential not in allowCredentials")
    # usernameless: the userHandle must be there and be the owner's
    v = login(rp, enrolled, None, user_handle="omit")
    assert v.reason == "unknown_credential"
    (bob_cred,) = rp.credentials("bob")
    assert login(rp, enrolled, None, user_handle=bob_cred.user_handle).reason == (
        "unknown_credential"
    )
    # with a named user the handle may be absent (non-discoverable credential)
    assert login(rp, enrolled, "alice", user_handle="omit").ok


def test_counter_regressed_flags_a_possible_clone(
    rp: WebAuthnVerifier, enrolled: SoftAuthenticator
) -> None:
    assert login(rp, enrolled).sign_count == 1
    assert login(rp, enrolled, sign_count=5).ok
    for stale in (5, 4, 0):
        v = login(rp, enrolled, sign_count=stale)
        assert (v.ok, v.reason, v.possible_clone, v.sign_count) == (
            False,
            "counter_regressed",
            True,
            stale,
        )
        assert v.to_verdict().reason == "counter_regressed"
    assert rp.credentials("alice")[0].sign_count == 5
    assert login(rp, enrolled, sign_count=6).ok


def test_counter_from_registration_counts(rp: WebAuthnVerifier) -> None:
    a = SoftAuthenticator(rand=DeterministicRandom(11))
    assert register(rp, a, sign_count=10).ok
    assert login(rp, a, sign_count=10).reason == "counter_regressed"
    assert login(rp, a, sign_count=11).ok


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: "not json{",
        lambda r: b"\xff\xfe",
        lambda r: [],
        lambda r: {},
        lambda r: dict(r, type="password"),
        lambda r: dict(r, id=b64url_encode(b"other")),
        lambda r: dict(r, rawId="not base64url!"),
        lambda r: dict(r, rawId=""),
        lambda r: dict(r, response="x"),
        lambda r: dict(r, response=dict(r["response"], signature=None)),
        lambda r: dict(r, response=dict(r["response"], clientDataJSON="e30")),  # "{}"
        lambda r: dict(r, response=dict(r["response"], authenticatorData="AAAA")),
        lambda r: dict(r, response=dict(r["response"], userHandle=7)),
    ],
)
def test_malformed(
    rp: WebAuthnVerifier, enrolled: SoftAuthenticator, mutate: Callable[[Any], Any]
) -> None:
    opts = rp.begin_authentication("alice", now=T0)
    resp = enrolled.get(opts, origin=ORIGIN)
    v = rp.finish_authentication(mutate(resp), now=T0 + 1)
    assert (v.ok, v.reason) == (False, "malformed"), v
    # a malformed response does not consume the challenge
    assert rp.finish_authentication(resp, now=T0 + 2).ok


def test_malformed_client_data_and_flags(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    assert login(rp, enrolled, client_data={"type": "webauthn.create"}).reason == "malformed"
    assert login(rp, enrolled, client_data={"crossOrigin": "no"}).reason == "malformed"
    assert login(rp, enrolled, client_data={"origin": None}).reason == "malformed"
    # BS without BE (§6.1)
    assert login(rp, enrolled, flags=0x01 | 0x10).reason == "malformed"
    # ED set but no extension map follows
    assert login(rp, enrolled, flags=0x01 | 0x80).reason == "malformed"


@pytest.mark.parametrize("op", ["take", "get", "advance", "counter"])
def test_store_unavailable(op: str) -> None:
    store = FlakyStore()
    rp = make_verifier(store)
    a = SoftAuthenticator(rand=DeterministicRandom(12))
    assert register(rp, a).ok
    opts = rp.begin_authentication("alice", now=T0)
    store.failing.add(op)
    count = 0 if op == "counter" else None  # a zero counter is compared by reading it
    v = rp.finish_authentication(a.get(opts, origin=ORIGIN, sign_count=count), now=T0 + 1)
    assert (v.ok, v.reason) == (False, "store_unavailable"), v
    assert "test backend" in v.detail


@pytest.mark.parametrize("op", ["get", "put_once"])
def test_begin_raises_store_unavailable(op: str) -> None:
    store = FlakyStore()
    rp = make_verifier(store)
    store.failing.add(op)
    with pytest.raises(StoreUnavailable):
        rp.begin_authentication("alice", now=T0)
    with pytest.raises(StoreUnavailable):
        rp.begin_registration("alice", now=T0)


# -- registration refusals ------------------------------------------------------------------
def test_registration_refusals(rp: WebAuthnVerifier) -> None:
    def fresh() -> SoftAuthenticator:
        return SoftAuthenticator(rand=DeterministicRandom("r"))

    assert register(rp, fresh(), origin="https://evil.example").reason == "bad_origin"
    assert register(rp, fresh(), rp_id="evil.example").reason == "bad_rp_id"
    assert register(rp, fresh(), user_present=False).reason == "user_not_present"
    strict = {"user_verification": "required"}
    assert register(rp, fresh(), begin=strict, user_verified=False).reason == "uv_required"
    forged = {"challenge": b64url_encode(bytes(32))}
    assert register(rp, fresh(), client_data=forged).reason == "challenge_unknown"
    assert register(rp, fresh(), client_data={"type": "webauthn.get"}).reason == "malformed"
    assert register(rp, fresh(), flags=0x01).reason == "malformed"  # no AT
    assert register(rp, fresh(), credential_id_length=1024).reason == "malformed"
    only_es256 = make_verifier(algorithms=(-7,))
    v = register(only_es256, fresh(), alg=-8)
    assert (v.reason, v.user) == ("unsupported_algorithm", "alice")
    assert rp.credentials("alice") == []


def test_registration_challenge_single_use_and_expiry() -> None:
    rp = make_verifier(timeout=60)
    a = SoftAuthenticator(rand=DeterministicRandom(13))
    opts = rp.begin_registration("alice", now=T0)
    resp = a.create(opts, origin=ORIGIN)
    assert rp.finish_registration(resp, now=T0 + 61).reason == "challenge_expired"
    assert rp.finish_registration(resp, now=T0 + 62).reason == "replayed"
    auth = rp.begin_authentication("alice", now=T0)
    resp = a.create(dict(opts, challenge=auth["challenge"]), origin=ORIGIN)
    assert rp.finish_registration(resp, now=T0 + 1).reason == "challenge_unknown"


def test_credential_exists(rp: WebAuthnVerifier) -> None:
    # same seed, same credential ID: an authenticator replaying a registered credential
    assert register(rp, SoftAuthenticator(rand=DeterministicRandom(14))).ok
    v = register(rp, SoftAuthenticator(rand=DeterministicRandom(14)), "bob")
    assert (v.reason, v.user) == ("credential_exists", "bob")
    assert rp.credentials("bob") == []


def _reencode(resp: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    att = cbor.decode(b64url_decode(resp["response"]["attestationObject"]))
    assert isinstance(att, dict)
    fn(att)
    out = dict(resp, response=dict(resp["response"]))
    out["response"]["attestationObject"] = b64url_encode(cbor.encode(att))
    return out


def test_attestation_policies() -> None:
    chain = make_attestation_chain()
    other = make_attestation_chain()

    def run(policy: str, attestation: str, roots: list[bytes], **kw: Any) -> str:
        rp = make_verifier(attestation=policy, trusted_roots=roots)
        a = SoftAuthenticator(rand=DeterministicRandom(15), attestation=attestation, chain=chain)  # type: ignore[arg-type]
        now = kw.get("now", T0 + 1)
        opts = rp.begin_registration("alice", now=now - 1)
        resp = a.create(opts, origin=ORIGIN)
        if "edit" in kw:
            resp = _reencode(resp, kw["edit"])
        v = rp.finish_registration(resp, now=now)
        return v.reason if not v.ok else f"ok:{v.stored.attestation_type if v.stored else ''}"

    root = [chain.root_der]
    assert run("none", "none", []) == "ok:unverified"
    assert run("none", "packed", []) == "ok:unverified"
    assert run("self", "none", []) == "untrusted_attestation"
    assert run("self", "packed-self", []) == "ok:self"
    assert run("self", "packed", []) == "ok:basic"
    assert run("trusted", "packed", root) == "ok:basic"
    assert run("trusted", "packed-self", root) == "untrusted_attestation"
    assert run("trusted", "none", root) == "untrusted_attestation"
    assert run("trusted", "packed", [other.root_der]) == "untrusted_attestation"
    assert run("trusted", "packed", [other.root_der, chain.root_der]) == "ok:basic"
    assert run("trusted", "packed", root, now=2**32 * 2.0) == "untrusted_attestation"

    def break_sig(att: dict[str, Any]) -> None:
        att["attStmt"]["sig"] = _flip_last(att["attStmt"]["sig"])

    def rename(att: dict[str, Any]) -> None:
        att["fmt"] = "android-key"

    def wrong_alg(att: dict[str, Any]) -> None:
        att["attStmt"]["alg"] = -257

    assert run("self", "packed-self", [], edit=break_sig) == "bad_attestation"
    assert run("trusted", "packed", root, edit=break_sig) == "bad_attestation"
    assert run("self", "packed-self", [], edit=wrong_alg) == "bad_attestation"
    assert run("self", "none", [], edit=rename) == "unsupported_attestation"
    assert run("none", "none", [], edit=rename) == "ok:unverified"


def test_registration_store_unavailable() -> None:
    store = FlakyStore()
    rp = make_verifier(store)
    a = SoftAuthenticator(rand=DeterministicRandom(16))
    opts = rp.begin_registration("alice", now=T0)
    store.failing.add("put")
    v = rp.finish_registration(a.create(opts, origin=ORIGIN), now=T0 + 1)
    assert v.reason == "store_unavailable"
    store.failing.clear()
    opts = rp.begin_registration("alice", now=T0)
    store.failing.add("take")
    v = rp.finish_registration(a.create(opts, origin=ORIGIN), now=T0 + 1)
    assert v.reason == "store_unavailable"


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        make_verifier(attestation="trusted")
    with pytest.raises(ConfigError):
        make_verifier(origins=[])
    with pytest.raises(ConfigError):
        make_verifier(user_verification="always")


# -- caching and shared state -----------------------------------------------------------------
def test_public_key_parsed_once_per_credential(
    rp: WebAuthnVerifier, enrolled: SoftAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    w.cached_public_key.cache_clear()
    rp._cache.clear()
    calls: list[bytes] = []
    real = w.parse_credential_public_key

    def counting(cose: bytes) -> w.CredentialPublicKey:
        calls.append(cose)
        return real(cose)

    monkeypatch.setattr(cose, "parse_credential_public_key", counting)
    for _ in range(3):
        assert login(rp, enrolled).ok
    assert len(calls) == 1


def test_removal_is_seen_by_every_node(rp: WebAuthnVerifier, enrolled: SoftAuthenticator) -> None:
    node2 = make_verifier(rp.store, rand=DeterministicRandom("node2"))
    assert login(node2, enrolled).ok  # node2 has the credential cached now
    (cid,) = enrolled.credentials
    assert rp.remove_credential("alice", cid)
    assert login(node2, enrolled, credential_id=cid).reason == "unknown_credential"


@pytest.mark.interop
def test_redis_store_shared_by_two_nodes(redis_url: str) -> None:
    from eapkit.store.redis_store import RedisStore

    prefix = f"wa{uuid.uuid4().hex}:"
    s1, s2 = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
    try:
        node1 = make_verifier(s1, rand=DeterministicRandom("n1"))
        node2 = make_verifier(s2, rand=DeterministicRandom("n2"))
        a = SoftAuthenticator(rand=DeterministicRandom(21))
        assert register(node1, a).ok
        opts = node1.begin_authentication("alice", now=T0)
        resp = a.get(opts, origin=ORIGIN)
        assert node2.finish_authentication(resp, now=T0 + 1).ok  # challenge from node1
        assert node1.finish_authentication(resp, now=T0 + 2).reason == "replayed"
        assert login(node1, a, sign_count=1).reason == "counter_regressed"
        assert login(node2, a, None).user == "alice"
    finally:
        s1.close()
        s2.close()


# -- every algorithm python-fido2 supports, through the stateless core ----------------------
def _keypair(alg: int) -> tuple[Callable[[bytes], bytes], bytes]:
    """(sign, COSE public key) for ``alg``, the COSE key built by python-fido2."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    from fido2 import cose

    cls = cose.CoseKey.for_alg(alg)
    ec_algs = {
        -7: (ec.SECP256R1(), hashes.SHA256()),
        -9: (ec.SECP256R1(), hashes.SHA256()),
        -35: (ec.SECP384R1(), hashes.SHA384()),
        -51: (ec.SECP384R1(), hashes.SHA384()),
        -36: (ec.SECP521R1(), hashes.SHA512()),
        -52: (ec.SECP521R1(), hashes.SHA512()),
        -47: (ec.SECP256K1(), hashes.SHA256()),
    }
    if alg in ec_algs:
        curve, h = ec_algs[alg]
        ek = ec.generate_private_key(curve)
        return lambda d: ek.sign(d, ec.ECDSA(h)), cbor.encode(
            cls.from_cryptography_key(ek.public_key())
        )
    if alg in (-8, -19):
        k25 = ed25519.Ed25519PrivateKey.generate()
        return k25.sign, cbor.encode(cls.from_cryptography_key(k25.public_key()))
    if alg == -53:
        k448 = ed448.Ed448PrivateKey.generate()
        return k448.sign, cbor.encode(cls.from_cryptography_key(k448.public_key()))
    if alg in (-257, -37):
        rk = rsa.generate_private_key(65537, 2048)
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == -257
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        return lambda d: rk.sign(d, pad, hashes.SHA256()), cbor.encode(
            cls.from_cryptography_key(rk.public_key())
        )
    from cryptography.hazmat.primitives.asymmetric import mldsa

    private: dict[int, Any] = {
        -48: mldsa.MLDSA44PrivateKey,
        -49: mldsa.MLDSA65PrivateKey,
        -50: mldsa.MLDSA87PrivateKey,
    }
    mk = private[alg].generate()
    return mk.sign, cbor.encode(cls.from_cryptography_key(mk.public_key()))


def _fido2_algorithms() -> list[int]:
    from fido2 import cose

    algs = set(cose.CoseKey.supported_algorithms()) | {-9, -19, -51, -52, -53}
    return sorted(a for a in algs if cose.CoseKey.for_alg(a) is not cose.UnsupportedKey)


@pytest.mark.parametrize("alg", _fido2_algorithms())
def test_every_python_fido2_algorithm(alg: int) -> None:
    import hashlib

    from fido2 import cose

    sign, cose_key = _keypair(alg)
    challenge = b"\x07" * 32
    cdj = SoftAuthenticator.client_data("webauthn.get", b64url_encode(challenge), ORIGIN)
    ad = hashlib.sha256(RP.encode()).digest() + b"\x05\x00\x00\x00\x2a"
    sig = sign(ad + hashlib.sha256(cdj).digest())
    args: dict[str, Any] = {
        "credential_public_key": cose_key,
        "authenticator_data": ad,
        "client_data_json": cdj,
        "signature": sig,
        "rp_id": RP,
        "origin": ORIGIN,
        "challenge": challenge,
    }
    v = w.verify_assertion(**args)
    assert (v.ok, v.sign_count, v.user_verified) == (True, 42, True), v
    # python-fido2 agrees on the signature
    cose.CoseKey.parse(cbor.decode(cose_key)).verify(ad + hashlib.sha256(cdj).digest(), sig)  # type: ignore[arg-type]
    assert w.verify_assertion(**{**args, "signature": _flip_last(sig)}).reason == "bad_signature"


def test_eddsa_alg_with_ed448_curve() -> None:
    """COSE alg -8 (EdDSA) with crv 7 (Ed448): python-fido2's EdDSA class refuses it."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ed448
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = ed448.Ed448PrivateKey.generate()
    raw = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cose_key = cbor.encode({1: 1, 3: -8, -1: 7, -2: raw})
    key = w.parse_credential_public_key(cose_key)
    assert key.verify(k.sign(b"m"), b"m") and not key.verify(k.sign(b"m"), b"n")
    assert hashlib.sha256(cose_key).digest()  # a real COSE key, not a placeholder
    # the fully specified Ed25519 alg on an Ed448 curve is refused
    with pytest.raises(DecodeError):
        w.parse_credential_public_key(cbor.encode({1: 1, 3: -19, -1: 7, -2: raw}))


def test_refused_algorithms() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    def rsa_cose(alg: int, bits: int) -> bytes:
        pn = rsa.generate_private_key(65537, bits).public_key().public_numbers()
        return cbor.encode({1: 3, 3: alg, -1: pn.n.to_bytes(bits // 8, "big"), -2: b"\x01\x00\x01"})

    for cose_key in (rsa_cose(-65535, 2048), rsa_cose(-257, 1024), cbor.encode({1: 2, 3: -999})):
        with pytest.raises(w.UnsupportedAlgorithm):
            w.parse_credential_public_key(cose_key)
    v = w.verify_assertion(
        credential_public_key=rsa_cose(-65535, 2048),
        authenticator_data=b"",
        client_data_json=b"",
        signature=b"",
        rp_id=RP,
        origin=ORIGIN,
        challenge=b"",
    )
    assert v.reason == "unsupported_algorithm"
