"""PEAPv1 properties (draft-josefsson-pppext-eap-tls-eap-05): arbitrary bytes at every
round of both roles, arbitrary plaintext inside the tunnel in phase 2, and any version
bits in the first messages.  Whatever arrives, a method returns a step and never
raises.  Version 1 has no protected result acknowledgement (the peer answers the
tunnelled Success with a bare TLS ACK, as wpa_supplicant does and hostapd accepts), so
unlike PEAPv0 a tampered last message can leave the peer failed while the server
succeeds; what must hold is that the server succeeds only after the inner method did,
and that when both succeed their keys agree."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.methods.base import Done, MethodContext, Step
from eapkit.methods.peap import PeapAuthenticator, PeapPeer
from eapkit.tlsio import TlsContext, TlsRole, TlsVersion
from tests.methods.test_peap_helpers import (
    OUTER,
    Run,
    drive,
    inner_authenticators,
    inner_peer,
    through_tunnel,
    tls_peer,
    tls_server,
)

versions = st.sampled_from([TlsVersion.TLS1_2, TlsVersion.TLS1_3])
inners = st.sampled_from(["mschapv2", "gtc"])
SERVER = {v: TlsContext(tls_server(v), TlsRole.SERVER) for v in TlsVersion if v >= 0x303}
PEER = {v: TlsContext(tls_peer(v, resumption=False), TlsRole.PEER) for v in SERVER}


def _pair(
    version: TlsVersion, inner: str, server_max: int = 1, peer_max: int = 1
) -> tuple[PeapAuthenticator, PeapPeer]:
    ctx = MethodContext(identity=OUTER.encode())
    auth = PeapAuthenticator(ctx, SERVER[version], inner_authenticators(), max_version=server_max)
    peer = PeapPeer(ctx, PEER[version], [inner_peer(inner)], b"alice", max_version=peer_max)
    return auth, peer


def _consistent(run: Run, auth: PeapAuthenticator) -> None:
    auth_step: Step | None = run.auth_step
    peer_step: Step | None = run.peer_step
    if isinstance(auth_step, Done) and auth_step.outcome.success:
        inner = auth._inner_result
        assert inner is not None and inner.success  # the credentials were checked
        if isinstance(peer_step, Done) and peer_step.outcome.success:
            assert auth_step.outcome.keys == peer_step.outcome.keys


@settings(max_examples=60, deadline=None)
@given(versions, inners, st.integers(0, 12), st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_to_either_role(
    version: TlsVersion, inner: str, at: int, garbage: bytes, to_server: bool
) -> None:
    auth, peer = _pair(version, inner)

    def swap(n: int, data: bytes) -> bytes:
        return garbage if n == at else data

    run = drive(auth, peer, to_auth=swap) if to_server else drive(auth, peer, to_peer=swap)
    _consistent(run, auth)


@settings(max_examples=80, deadline=None)
@given(versions, inners, st.integers(0, 5), st.binary(max_size=300), st.booleans())
def test_arbitrary_plaintext_in_the_tunnel(
    version: TlsVersion, inner: str, which: int, plaintext: bytes, to_server: bool
) -> None:
    auth, peer = _pair(version, inner)
    seen = 0

    def tamper(n: int, data: bytes) -> bytes:
        nonlocal seen
        if auth.state not in ("phase2", "result"):
            return data
        seen += 1
        if seen != which + 1:
            return data
        if to_server:
            auth.engine.receive(data)  # the real Response, read past by the record layer
            return through_tunnel(peer.engine, plaintext)
        peer.engine.receive(data)
        return through_tunnel(auth.engine, plaintext)

    run = drive(auth, peer, to_auth=tamper) if to_server else drive(auth, peer, to_peer=tamper)
    _consistent(run, auth)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1), st.integers(0, 1), st.integers(0, 7), st.booleans())
def test_the_version_in_use_is_never_above_either_sides(
    server_max: int, peer_max: int, bits: int, rewrite_start: bool
) -> None:
    """Any version bits in the Start (or the peer's first answer): the version each side
    uses is at most its own maximum, and a success is both sides' success."""
    auth, peer = _pair(TlsVersion.TLS1_2, "mschapv2", server_max, peer_max)

    def set_bits(n: int, data: bytes) -> bytes:
        return bytes([data[0] & 0xF8 | bits]) + data[1:] if n == 0 and data else data

    if rewrite_start:
        run = drive(auth, peer, to_peer=set_bits)
    else:
        run = drive(auth, peer, to_auth=set_bits)
    assert peer.version is None or peer.version <= peer_max
    assert auth.version is None or auth.version <= server_max
    _consistent(run, auth)
