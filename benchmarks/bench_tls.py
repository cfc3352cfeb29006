"""EAP-TLS handshakes per second, both roles in one process, against the bare TLS floor.

- eapkit: a whole EAP-TLS conversation through :func:`eapkit.loopback.converse`
  (Identity round, Start, every fragment and ACK at the default 1398-byte fragment
  size, the EAP session layer on both sides, key export, Success), mutual
  certificate authentication, for TLS 1.2 and 1.3 with ECDSA P-256 and RSA-2048
  certificates; full handshakes (resumption off) and resumed ones.
- floor: two pyOpenSSL ``Connection`` objects on memory BIOs shuttling bytes until
  both finish, with the very same ``SSL.Context`` objects (same certificates, same
  verification, same suites): the cost of TLS itself.

The ratio eapkit/floor is the price of eapkit's framing, state machines and session
layer.  There is no anchor library for EAP-TLS in Python, so ``anchor`` is empty.

Run: ``.venv/bin/python -m benchmarks.bench_tls`` (``--quick`` for a short run).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

from OpenSSL import SSL

from eapkit.loopback import converse
from eapkit.methods.base import MethodFactory
from eapkit.methods.tls import TLS, TlsAuthenticator, TlsPeer, bind_identity
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.tlsio import SessionCache, TlsContext, TlsRole, TlsVersion
from tests.certs import IDENTITY, lab, peer_config, server_config


def _contexts(
    version: TlsVersion, key_type: str, resumption: bool
) -> tuple[TlsContext, TlsContext]:
    lb = lab(key_type)
    server = TlsContext(
        server_config(lb, max_version=version, resumption=resumption), TlsRole.SERVER
    )
    peer = TlsContext(peer_config(lb, resumption=resumption), TlsRole.PEER)
    return server, peer


def _eapkit(server: TlsContext, peer: TlsContext, resumption: bool) -> Callable[[], None]:
    cache = SessionCache() if resumption else None
    auth = MethodFactory(TLS, lambda ctx: TlsAuthenticator(ctx, server, bind_identity))
    client = MethodFactory(TLS, lambda ctx: TlsPeer(ctx, peer, cache))

    def once() -> None:
        conv = converse(AuthenticatorSession([auth]), PeerSession([client], IDENTITY))
        assert conv.authenticator is not None and conv.authenticator.success

    return once


class _Owner:
    """Stands in for the engine in the verify callback: accepts every leaf."""

    def note_verify_error(self, code: int, depth: int) -> None:
        raise AssertionError("the floor's handshake must verify")

    def check_leaf(self, cert: object) -> int:
        return 0

    def note_alert(self, written: bool, description: int, level: int) -> None:
        return None


def _floor(server: TlsContext, peer: TlsContext, resumption: bool) -> Callable[[], None]:
    owner = _Owner()
    saved: list[SSL.Session] = []

    def once() -> None:
        s = SSL.Connection(server.ssl_context, None)
        c = SSL.Connection(peer.ssl_context, None)
        s.set_app_data(owner)
        c.set_app_data(owner)
        s.set_accept_state()
        c.set_connect_state()
        if resumption and saved:
            c.set_session(saved[-1])
        done = [False, False]
        for _ in range(20):
            for i, (a, b) in enumerate(((c, s), (s, c))):
                if not done[i]:
                    try:
                        a.do_handshake()
                        done[i] = True
                    except SSL.WantReadError:
                        pass
                with contextlib.suppress(SSL.WantReadError):
                    b.bio_write(a.bio_read(1 << 16))
            if all(done):
                break
        # the TLS 1.3 client reads the tickets, as the EAP peer does
        with contextlib.suppress(SSL.WantReadError):
            c.recv(1)
        assert all(done)
        for conn in (c, s):  # a clean end keeps the session resumable, as eapkit does
            conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        session = c.get_session()
        if resumption and session is not None:
            saved[:] = [session]

    return once


def _best(fn: Callable[[], None], rounds: int, number: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def run(quick: bool = False) -> list[dict[str, object]]:
    rounds, number = (3, 10) if quick else (7, 40)
    rows: list[dict[str, object]] = []
    for resumption in (False, True):
        for version in (TlsVersion.TLS1_2, TlsVersion.TLS1_3):
            for key_type in ("ec", "rsa"):
                server, peer = _contexts(version, key_type, resumption)
                eap, floor = _eapkit(server, peer, resumption), _floor(server, peer, resumption)
                # interleave so machine load hits both alike
                eap_us = floor_us = float("inf")
                for _ in range(2):
                    eap_us = min(eap_us, _best(eap, rounds, number))
                    floor_us = min(floor_us, _best(floor, rounds, number))
                kind = "resumed" if resumption else "full"
                cert = "ECDSA P-256" if key_type == "ec" else "RSA-2048"
                rows.append(
                    {
                        "op": f"EAP-TLS {kind} handshake {version.label} {cert}",
                        "eapkit_us": eap_us,
                        "anchor": None,
                        "anchor_us": None,
                        "floor_us": floor_us,
                    }
                )
    return rows


def main() -> None:
    rows = run("--quick" in sys.argv)
    print(
        f"{'operation':<50} {'eapkit us':>10} {'per s':>7} {'floor us':>10} {'per s':>7} "
        f"{'eapkit/floor':>12}"
    )
    for row in rows:
        eap_us, floor_us = row["eapkit_us"], row["floor_us"]
        assert isinstance(eap_us, float) and isinstance(floor_us, float)
        print(
            f"{row['op']:<50} {eap_us:10.1f} {1e6 / eap_us:7.0f} {floor_us:10.1f} "
            f"{1e6 / floor_us:7.0f} {eap_us / floor_us:11.2f}x"
        )
    print("floor: bare pyOpenSSL memory-BIO handshake, same SSL.Context objects")


if __name__ == "__main__":
    main()
