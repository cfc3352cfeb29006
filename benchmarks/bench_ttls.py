"""EAP-TTLS conversations, both roles in one process, against the floor of a bare TLS
handshake.

- eapkit: a whole EAP-TTLS conversation through :func:`eapkit.loopback.converse`
  (sessions, EAP framing, the TLS engine, phase-2 AVPs, key export on both sides), with
  inner PAP and inner EAP-MSCHAPv2, over TLS 1.2 and 1.3.
- floor: pyOpenSSL alone, two ``Connection`` objects on memory BIOs with the same
  certificate, CA, versions and default groups, shuttling bytes until both handshakes are
  done, then one application-data record each way (what phase 2 needs at least).  No
  anchor library runs TTLS in Python, so the anchor column is empty.

The difference is what eapkit adds to TLS: EAP framing, the state machines, AVP coding,
the inner method and both sides' key derivation.

Run: ``.venv/bin/python -m benchmarks.bench_ttls`` (``--quick`` for a short run).
"""

from __future__ import annotations

import datetime as dt
import sys
import timeit
from collections.abc import Callable

from OpenSSL import SSL, crypto

from eapkit import pki
from eapkit.loopback import converse
from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.ttls import InnerEap, InnerMethod, InnerPap, ttls_authenticator, ttls_peer
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.testing import InMemoryPasswords, StaticNtHashes
from eapkit.tlsio import TlsConfig, TlsVersion

SERVER_NAME = "radius.bench.test"
USER = "alice"
PASSWORD = "correct horse battery staple"

_NOW = dt.datetime.now(dt.UTC)
_CA = pki.make_ca("bench CA", now=_NOW)
_SERVER = pki.make_server(_CA, [SERVER_NAME], now=_NOW)


def _factories(
    version: TlsVersion, inner: InnerMethod
) -> tuple[MethodFactory[Authenticator], MethodFactory[Peer]]:
    server_cfg = TlsConfig(
        certificate=_SERVER.chain_pem,
        private_key=_SERVER.key_pem,
        verify_peer=False,
        max_version=version,
        min_version=version,
    )
    peer_cfg = TlsConfig(
        ca_certificates=_CA.cert_pem,
        domain_match=(SERVER_NAME,),
        max_version=version,
        min_version=version,
    )
    nt = StaticNtHashes.from_passwords({USER: PASSWORD})
    auth = ttls_authenticator(
        server_cfg, pap=InMemoryPasswords({USER: PASSWORD}), eap=[mschapv2_authenticator(nt)]
    )
    return auth, ttls_peer(peer_cfg, inner, identity=USER)


def eapkit_conversation(version: TlsVersion, inner: InnerMethod) -> Callable[[], None]:
    auth, peer = _factories(version, inner)

    def once() -> None:
        conv = converse(AuthenticatorSession([auth]), PeerSession([peer], "anonymous"))
        result = conv.authenticator
        if result is None or not result.success:
            raise RuntimeError(f"benchmark conversation failed: {result}")

    return once


def floor_handshake(version: TlsVersion) -> Callable[[], None]:
    """Both sides of a bare TLS handshake on memory BIOs, then one record each way."""
    server_ctx = SSL.Context(SSL.TLS_METHOD)
    server_ctx.set_min_proto_version(int(version))
    server_ctx.set_max_proto_version(int(version))
    server_ctx.use_certificate(crypto.X509.from_cryptography(_SERVER.certificate))
    server_ctx.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, _SERVER.key_pem))
    client_ctx = SSL.Context(SSL.TLS_METHOD)
    client_ctx.set_min_proto_version(int(version))
    client_ctx.set_max_proto_version(int(version))
    client_ctx.get_cert_store().add_cert(crypto.X509.from_cryptography(_CA.certificate))  # type: ignore[union-attr]
    client_ctx.set_verify(SSL.VERIFY_PEER, None)

    def pump(src: SSL.Connection, dst: SSL.Connection) -> None:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return
        dst.bio_write(data)

    def step(conn: SSL.Connection) -> bool:
        try:
            conn.do_handshake()
            return True
        except SSL.WantReadError:
            return False

    def once() -> None:
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        client = SSL.Connection(client_ctx, None)
        client.set_connect_state()
        client_done = server_done = False
        for _ in range(10):
            client_done = step(client)
            pump(client, server)
            server_done = step(server)
            pump(server, client)
            if client_done and server_done:
                break
        client.send(b"x" * 64)
        pump(client, server)
        server.recv(65536)
        server.send(b"y" * 64)
        pump(server, client)
        client.recv(65536)

    return once


def _measure(fns: list[Callable[[], object]], quick: bool) -> list[float]:
    """Best per-call time of each function in microseconds, timed in interleaved rounds
    so that load from elsewhere on the machine hits them alike."""
    timers = []
    for fn in fns:
        fn()
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        timers.append((timer, max(1, number // 4 if quick else number * 2)))
    best = [float("inf")] * len(fns)
    for _ in range(3 if quick else 7):
        for i, (timer, number) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e6)
    return best


def run(quick: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    inners: list[tuple[str, InnerMethod]] = [
        ("PAP", InnerPap(PASSWORD)),
        ("EAP-MSCHAPv2", InnerEap([mschapv2_peer(PASSWORD)])),
    ]
    for version in (TlsVersion.TLS1_2, TlsVersion.TLS1_3):
        floor = floor_handshake(version)
        for name, inner in inners:
            eapkit_us, floor_us = _measure([eapkit_conversation(version, inner), floor], quick)
            rows.append(
                {
                    "op": f"TTLS/{name} {version.label}, both roles",
                    "eapkit_us": eapkit_us,
                    "anchor": None,
                    "anchor_us": None,
                    "floor_us": floor_us,
                }
            )
    return rows


def main() -> None:
    quick = "--quick" in sys.argv
    rows = run(quick)
    print(f"{'operation':<44} {'eapkit us':>10} {'floor us':>10} {'eapkit/floor':>12}")
    for row in rows:
        eapkit_us, floor_us = row["eapkit_us"], row["floor_us"]
        assert isinstance(eapkit_us, float) and isinstance(floor_us, float)
        print(f"{row['op']:<44} {eapkit_us:10.1f} {floor_us:10.1f} {eapkit_us / floor_us:11.2f}x")


if __name__ == "__main__":
    main()
