"""PEAP properties: arbitrary bytes at every state of both roles, arbitrary plaintext inside
the tunnel at every phase-2 state, and the Extensions (EAP-TLV) parser on arbitrary input.

Whatever arrives, a method returns a step and never raises; a conversation that goes on
after a substitution either fails or ends with both sides agreeing on success and keys.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.eap_tlv import CryptoBinding, Tlv, TlvType, encode_tlvs
from eapkit.errors import DecodeError
from eapkit.methods.base import Done, Step
from eapkit.methods.peap import PeapAuthenticator, PeapPeer
from eapkit.methods.peap_framing import parse_extensions as _parse_extensions
from eapkit.tlsio import TlsVersion
from tests.methods.test_peap_helpers import (
    Run,
    drive,
    inner_authenticators,
    inner_peer,
    make_authenticator,
    make_peer,
    through_tunnel,
    tls_peer,
    tls_server,
)

PHASE2_STATES = ("phase2", "result")
versions = st.sampled_from([TlsVersion.TLS1_2, TlsVersion.TLS1_3])
inners = st.sampled_from(["mschapv2", "gtc"])


def _pair(version: TlsVersion, inner: str) -> tuple[PeapAuthenticator, PeapPeer]:
    return (
        make_authenticator(tls_server(version), inner_authenticators()),
        make_peer(tls_peer(version), [inner_peer(inner)]),
    )


def _consistent(run: Run) -> None:
    """An authenticator's success is the peer's success too, with the same keys.  (A peer
    may be done and willing while the server still refuses: its EAP-Failure decides.)"""
    auth_step: Step | None = run.auth_step
    peer_step: Step | None = run.peer_step
    if isinstance(auth_step, Done) and auth_step.outcome.success:
        assert isinstance(peer_step, Done) and peer_step.outcome.success
        assert auth_step.outcome.keys == peer_step.outcome.keys


@settings(max_examples=60)
@given(versions, inners, st.integers(0, 12), st.binary(max_size=200))
def test_arbitrary_bytes_to_the_authenticator(
    version: TlsVersion, inner: str, at: int, garbage: bytes
) -> None:
    auth, peer = _pair(version, inner)
    run = drive(auth, peer, to_auth=lambda n, data: garbage if n == at else data)
    _consistent(run)


@settings(max_examples=60)
@given(versions, inners, st.integers(0, 12), st.binary(max_size=200))
def test_arbitrary_bytes_to_the_peer(
    version: TlsVersion, inner: str, at: int, garbage: bytes
) -> None:
    auth, peer = _pair(version, inner)
    run = drive(auth, peer, to_peer=lambda n, data: garbage if n == at else data)
    _consistent(run)


@settings(max_examples=80)
@given(versions, inners, st.integers(0, 5), st.binary(max_size=300))
def test_arbitrary_plaintext_in_the_tunnel_to_the_authenticator(
    version: TlsVersion, inner: str, which: int, plaintext: bytes
) -> None:
    auth, peer = _pair(version, inner)
    seen = 0

    def to_auth(n: int, data: bytes) -> bytes:
        nonlocal seen
        if auth.state not in PHASE2_STATES:
            return data
        seen += 1
        if seen != which + 1:
            return data
        auth.engine.receive(data)  # the real Response, read past by the record layer
        return through_tunnel(peer.engine, plaintext)

    _consistent(drive(auth, peer, to_auth=to_auth))


@settings(max_examples=80)
@given(versions, inners, st.integers(0, 5), st.binary(max_size=300))
def test_arbitrary_plaintext_in_the_tunnel_to_the_peer(
    version: TlsVersion, inner: str, which: int, plaintext: bytes
) -> None:
    auth, peer = _pair(version, inner)
    seen = 0

    def to_peer(n: int, data: bytes) -> bytes:
        nonlocal seen
        if auth.state not in PHASE2_STATES:
            return data
        seen += 1
        if seen != which + 1:
            return data
        peer.engine.receive(data)  # the real Request, read past by the record layer
        return through_tunnel(auth.engine, plaintext)

    _consistent(drive(auth, peer, to_peer=to_peer))


# -- the Extensions parser --------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_extensions_parser_on_arbitrary_bytes(data: bytes) -> None:
    try:
        parsed = _parse_extensions(data)
    except DecodeError:
        return
    assert parsed.result is None or 0 <= parsed.result <= 0xFFFF


optional_tlvs = st.lists(
    st.builds(
        Tlv,
        st.sampled_from([TlvType.VENDOR_SPECIFIC, 20, 0x3FFF]),
        st.binary(max_size=40),
        st.just(False),
    ),
    max_size=3,
)


@given(
    st.none() | st.integers(0, 0xFFFF),
    st.none()
    | st.builds(
        CryptoBinding,
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(min_size=32, max_size=32),
        st.binary(min_size=20, max_size=20),
    ),
    st.booleans(),
    optional_tlvs,
)
def test_extensions_round_trip(
    result: int | None, binding: CryptoBinding | None, mandatory: bool, extra: list[Tlv]
) -> None:
    tlvs = list(extra)
    if result is not None:
        tlvs.append(Tlv(TlvType.RESULT, result.to_bytes(2, "big")))
    if binding is not None:
        tlvs.append(Tlv(TlvType.CRYPTO_BINDING, binding.encode(), mandatory))
    parsed = _parse_extensions(encode_tlvs(tlvs))
    assert parsed.result == result
    assert parsed.binding == binding
    if binding is not None:
        assert parsed.binding_mandatory is mandatory
