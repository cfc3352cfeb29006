"""PEAPv0 with inner EAP-MSCHAPv2, both roles in one process, against the floor: the bare
TLS handshake those bytes ride on.

- eapkit: :class:`~eapkit.methods.peap.PeapAuthenticator` and
  :class:`~eapkit.methods.peap.PeapPeer` talking to each other: Start, the handshake in
  EAP fragments, the acknowledgement, the inner Identity, MS-CHAPv2 (Challenge, Response,
  Success, acknowledgement), the Result TLV exchange with crypto-binding, and the keys on
  both sides.  A second row runs the same through the EAP session layer
  (:func:`eapkit.loopback.converse`) to show what EAP framing adds.
- floor: a pyOpenSSL client and server on memory BIOs doing only the TLS handshake, with
  the very same ``SSL.Context`` objects (certificates, groups, suites, verification), so
  the difference is what PEAP and the inner method cost on top of TLS.
- anchor: none; there is no Python PEAP implementation a server would use instead.

Run: ``.venv/bin/python -m benchmarks.bench_peap`` (``--quick`` for a short run).
"""

from __future__ import annotations

import datetime as dt
import timeit
from collections.abc import Callable

from OpenSSL import SSL

from benchmarks.runner import standalone
from eapkit import pki
from eapkit.loopback import converse
from eapkit.methods.base import Done, MethodContext, MethodFactory, Reply
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.peap import PEAP, PeapAuthenticator, PeapPeer
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.testing import StaticNtHashes
from eapkit.tlsio import TlsConfig, TlsContext, TlsRole, TlsVersion

SERVER_NAME = "radius.bench.test"
PASSWORD = "correct horse battery staple"


class Setup:
    """Certificates, TLS contexts and inner factories, made once (as a server has them)."""

    def __init__(self, version: TlsVersion) -> None:
        now = dt.datetime.now(dt.UTC)
        ca = pki.make_ca("bench CA", now=now)
        server = pki.make_server(ca, [SERVER_NAME], now=now)
        self.version = version
        self.server = TlsContext(
            TlsConfig(
                certificate=server.chain_pem,
                private_key=server.key_pem,
                verify_peer=False,
                max_version=version,
                resumption=False,
            ),
            TlsRole.SERVER,
        )
        self.peer = TlsContext(
            TlsConfig(
                ca_certificates=ca.cert_pem,
                domain_match=(SERVER_NAME,),
                server_name=SERVER_NAME,
                max_version=version,
                resumption=False,
            ),
            TlsRole.PEER,
        )
        self.inner_auth = [
            mschapv2_authenticator(StaticNtHashes.from_passwords({"alice": PASSWORD}))
        ]
        self.inner_peer = [mschapv2_peer(PASSWORD)]

    # -- eapkit --------------------------------------------------------------------------

    def methods(self) -> bytes:
        """One whole PEAP conversation at the method level; returns the MSK."""
        auth = PeapAuthenticator(MethodContext(b"anonymous"), self.server, self.inner_auth)
        peer = PeapPeer(MethodContext(b"anonymous"), self.peer, self.inner_peer, b"alice")
        message = auth.start()
        while True:
            step = peer.receive(message)
            assert step.type_data is not None
            reply = auth.receive(step.type_data)
            if isinstance(reply, Done):
                assert reply.outcome.success and isinstance(step, Done)
                assert reply.outcome.keys is not None and step.outcome.keys is not None
                assert reply.outcome.keys.msk == step.outcome.keys.msk
                return reply.outcome.keys.msk
            assert isinstance(reply, Reply)
            message = reply.type_data

    def sessions(self) -> bytes:
        """The same through AuthenticatorSession / PeerSession (EAP headers, identity)."""
        auth_factory = MethodFactory(
            PEAP, lambda ctx: PeapAuthenticator(ctx, self.server, self.inner_auth), "peap"
        )
        peer_factory = MethodFactory(
            PEAP, lambda ctx: PeapPeer(ctx, self.peer, self.inner_peer, b"alice"), "peap"
        )
        conv = converse(
            AuthenticatorSession([auth_factory]), PeerSession([peer_factory], "anonymous")
        )
        assert conv.authenticator is not None and conv.authenticator.success
        assert conv.authenticator.keys is not None
        return conv.authenticator.keys.msk

    # -- the floor ------------------------------------------------------------------------

    def handshake(self) -> None:
        """The TLS handshake alone, same contexts, memory BIOs, no EAP."""
        client = SSL.Connection(self.peer.ssl_context, None)
        client.set_connect_state()
        client.set_tlsext_host_name(SERVER_NAME.encode())
        server = SSL.Connection(self.server.ssl_context, None)
        server.set_accept_state()
        done = [False, False]
        for _ in range(10):
            for i, (me, other) in enumerate(((client, server), (server, client))):
                if not done[i]:
                    try:
                        me.do_handshake()
                        done[i] = True
                    except SSL.WantReadError:
                        pass
                while True:
                    try:
                        chunk = me.bio_read(65536)
                    except SSL.WantReadError:
                        break
                    other.bio_write(chunk)
            if all(done):
                return
        raise AssertionError("handshake did not finish")


def _measure(fns: list[Callable[[], object]], quick: bool) -> list[float]:
    """Best per-call time of each function in microseconds, timed in interleaved rounds
    so that load from elsewhere on the machine hits them alike."""
    timers = []
    for fn in fns:
        fn()
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        timers.append((timer, max(1, number // 4) if quick else number * 2))
    best = [float("inf")] * len(fns)
    for _ in range(3 if quick else 7):
        for i, (timer, number) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / number * 1e6)
    return best


def run(quick: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for version in (TlsVersion.TLS1_2, TlsVersion.TLS1_3):
        setup = Setup(version)
        assert setup.methods() and setup.sessions()  # both work before they are timed
        methods_us, sessions_us, floor_us = _measure(
            [setup.methods, setup.sessions, setup.handshake], quick
        )
        label = version.label
        rows.append(
            {
                "op": f"PEAP/MSCHAPv2, both roles, methods only ({label})",
                "eapkit_us": methods_us,
                "anchor": None,
                "anchor_us": None,
                "floor_us": floor_us,
            }
        )
        rows.append(
            {
                "op": f"PEAP/MSCHAPv2, both roles, through the sessions ({label})",
                "eapkit_us": sessions_us,
                "anchor": None,
                "anchor_us": None,
                "floor_us": floor_us,
            }
        )
    return rows


def main() -> None:
    standalone("peap", run)


if __name__ == "__main__":
    main()
