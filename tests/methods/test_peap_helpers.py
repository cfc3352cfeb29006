"""Shared set-up for the PEAP tests (no tests here): credentials, factories with a key
log, a method-level driver that can stop at any round and put chosen bytes (or chosen
plaintext inside the tunnel) in place of either side's message."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from eapkit.methods.base import (
    Authenticator,
    Done,
    MethodContext,
    MethodFactory,
    Peer,
    Reply,
    Step,
)
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.peap import (
    PEAP,
    CryptoBindingPolicy,
    PeapAuthenticator,
    PeapPeer,
)
from eapkit.testing import InMemoryPasswords, StaticNtHashes
from eapkit.tlsio import TlsConfig, TlsContext, TlsEapEngine, TlsRole, TlsVersion
from tests.certs import lab, peer_config, server_config

PASSWORDS = {"alice": "wonderland", "bob": "builder"}
OUTER = "anonymous@example.org"


def inner_authenticators(
    names: Sequence[str] = ("mschapv2", "gtc"),
) -> list[MethodFactory[Authenticator]]:
    made: dict[str, MethodFactory[Authenticator]] = {
        "mschapv2": mschapv2_authenticator(StaticNtHashes.from_passwords(PASSWORDS)),
        "gtc": gtc_authenticator(InMemoryPasswords(PASSWORDS)),
    }
    return [made[n] for n in names]


def inner_peer(name: str, password: str = "wonderland") -> MethodFactory[Peer]:
    if name == "mschapv2":
        return mschapv2_peer(password)
    return gtc_peer(lambda prompt: password)


def tls_server(version: TlsVersion = TlsVersion.TLS1_3, **changes: object) -> TlsConfig:
    cfg = server_config(lab("ec"), verify_peer=False, max_version=version)
    return replace(cfg, **changes)  # type: ignore[arg-type]


def tls_peer(version: TlsVersion = TlsVersion.TLS1_3, **changes: object) -> TlsConfig:
    cfg = replace(peer_config(lab("ec")), certificate=None, private_key=None, max_version=version)
    return replace(cfg, **changes)  # type: ignore[arg-type]


@dataclass
class Logged:
    """A PEAP authenticator factory whose TLS context logs its secrets (SSLKEYLOGFILE
    lines), keeping every authenticator it made."""

    factory: MethodFactory[Authenticator]
    keylog: list[bytes] = field(default_factory=list)
    made: list[PeapAuthenticator] = field(default_factory=list)


def logged_authenticator(
    config: TlsConfig,
    inner: Sequence[MethodFactory[Authenticator]],
    crypto_binding: CryptoBindingPolicy = "optional",
) -> Logged:
    context = TlsContext(config, TlsRole.SERVER)
    keylog: list[bytes] = []
    made: list[PeapAuthenticator] = []
    context.ssl_context.set_keylog_callback(lambda _conn, line: keylog.append(line))

    def create(ctx: MethodContext) -> Authenticator:
        auth = PeapAuthenticator(ctx, context, inner, crypto_binding=crypto_binding)
        made.append(auth)
        return auth

    return Logged(MethodFactory(PEAP, create, "peap"), keylog, made)


def make_peer(
    config: TlsConfig,
    inner: Sequence[MethodFactory[Peer]],
    identity: str = "alice",
    crypto_binding: CryptoBindingPolicy = "optional",
) -> PeapPeer:
    context = TlsContext(replace(config, resumption=False), TlsRole.PEER)
    return PeapPeer(
        MethodContext(identity=OUTER.encode()),
        context,
        inner,
        identity.encode(),
        crypto_binding=crypto_binding,
    )


def make_authenticator(
    config: TlsConfig,
    inner: Sequence[MethodFactory[Authenticator]],
    crypto_binding: CryptoBindingPolicy = "optional",
) -> PeapAuthenticator:
    context = TlsContext(config, TlsRole.SERVER)
    return PeapAuthenticator(
        MethodContext(identity=OUTER.encode()), context, inner, crypto_binding=crypto_binding
    )


# -- a method-level driver ---------------------------------------------------------------------

Tamper = Callable[[int, bytes], bytes]


@dataclass
class Run:
    auth_step: Step | None = None
    peer_step: Step | None = None
    rounds: int = 0
    states: list[str] = field(default_factory=list)


def drive(
    auth: PeapAuthenticator,
    peer: PeapPeer,
    *,
    to_peer: Tamper | None = None,
    to_auth: Tamper | None = None,
    max_rounds: int = 200,
) -> Run:
    """Run both methods until one is done; ``to_peer(round, data)`` / ``to_auth`` may
    replace a message on its way."""
    run = Run()
    message = auth.start()
    for n in range(max_rounds):
        run.rounds = n
        run.states.append(auth.state)
        if to_peer is not None:
            message = to_peer(n, message)
        run.peer_step = peer.receive(message)
        reply = run.peer_step.type_data
        if reply is None:
            return run
        if to_auth is not None:
            reply = to_auth(n, reply)
        run.auth_step = auth.receive(reply)
        if isinstance(run.auth_step, Done):
            return run
        assert isinstance(run.auth_step, Reply)
        message = run.auth_step.type_data
        if isinstance(run.peer_step, Done):
            return run
    raise AssertionError("conversation did not end")


def through_tunnel(engine: TlsEapEngine, plaintext: bytes) -> bytes:
    """``plaintext`` as one TLS record sent by ``engine`` (unfragmented: fragment size is
    raised for it), as the other side will receive it."""
    engine.write(plaintext)
    saved = engine.framing
    engine.framing = replace(saved, fragment_size=1 << 20)
    try:
        return engine.next_type_data()
    finally:
        engine.framing = saved


# -- an independent computation of the keys ------------------------------------------------------


def p_hash(algo: str, secret: bytes, seed: bytes, size: int) -> bytes:
    """RFC 5246 §5 P_hash."""
    out = b""
    a = seed
    while len(out) < size:
        a = hmac.new(secret, a, algo).digest()
        out += hmac.new(secret, a + seed, algo).digest()
    return out[:size]


def _expand_label(algo: str, secret: bytes, label: bytes, context: bytes, size: int) -> bytes:
    full = b"tls13 " + label
    info = size.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    hash_cls = hashes.SHA384() if algo == "sha384" else hashes.SHA256()
    return HKDFExpand(hash_cls, size, info).derive(secret)


def tls13_export(algo: str, exporter_secret: bytes, label: bytes, ctx: bytes, size: int) -> bytes:
    """RFC 8446 §7.5."""
    empty = hashlib.new(algo, b"").digest()
    derived = _expand_label(algo, exporter_secret, label, empty, len(empty))
    return _expand_label(algo, derived, b"exporter", hashlib.new(algo, ctx).digest(), size)


def hash_of(cipher: str) -> str:
    return "sha384" if cipher.endswith("SHA384") else "sha256"


def logged(keylog: list[bytes], name: bytes) -> list[list[bytes]]:
    return [p for p in (line.split() for line in keylog) if p[0] == name]


def expected_tunnel_material(
    keylog: list[bytes], cipher: str, tls13: bool, server_random: bytes, size: int = 128
) -> tuple[bytes, bytes]:
    """(Key_Material, Session-Id) of the tunnel from the logged secrets: RFC 5216 §2.3
    with "client EAP encryption" (TLS 1.2), RFC 9427 §2 with type code 0x19 (TLS 1.3)."""
    algo = hash_of(cipher)
    if tls13:
        secret = bytes.fromhex(logged(keylog, b"EXPORTER_SECRET")[-1][2].decode())
        material = tls13_export(algo, secret, b"EXPORTER_EAP_TLS_Key_Material", b"\x19", size)
        method_id = tls13_export(algo, secret, b"EXPORTER_EAP_TLS_Method-Id", b"\x19", 64)
        return material, b"\x19" + method_id
    entry = logged(keylog, b"CLIENT_RANDOM")[-1]
    client_random = bytes.fromhex(entry[1].decode())
    master = bytes.fromhex(entry[2].decode())
    seed = client_random + server_random
    return p_hash(algo, master, b"client EAP encryption" + seed, size), b"\x19" + seed


def prf_plus(key: bytes, seed: bytes, size: int) -> bytes:
    """[MS-PEAP] §3.1.5.5.2.2, written out again for the tests."""
    blocks: list[bytes] = []
    t = b""
    i = 1
    while sum(map(len, blocks)) < size:
        t = hmac.new(key, t + seed + bytes([i]) + b"\x00\x00", hashlib.sha1).digest()
        blocks.append(t)
        i += 1
    return b"".join(blocks)[:size]


def expected_csk(tk: bytes, isk: bytes) -> bytes:
    imck = prf_plus(tk[:40], b"Inner Methods Compound Keys" + isk.ljust(32, b"\x00"), 60)
    return prf_plus(imck[:40], b"Session Key Generating Function\x00", 128)
