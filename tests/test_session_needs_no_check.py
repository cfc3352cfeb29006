"""``AuthenticatorSession.needs_no_check`` (issue 21): whenever it says a Response
needs no check, ``receive`` of that Response answers with the next Request (``Send``),
never ends the conversation; it changes nothing; and it says so of the rounds it is
meant for (the Identity round, EAP-TLS fragment acknowledgements, RFC 5216 §2.1.5),
never of a round that checks a credential."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.tls import tls_authenticator, tls_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.session import AuthenticatorSession, Finished, PeerSession, Send, SessionConfig
from eapkit.tlsio import FramingConfig, TlsVersion
from tests.certs import IDENTITY, Lab, lab, peer_config, server_config

NT_HASH = bytes.fromhex("8846f7eaee8fb117ad06bdd830b7586c")  # "password" (RFC 2759 §9.2)


@cache
def _lab() -> Lab:
    return lab()


def _tls(version: TlsVersion) -> tuple[MethodFactory[Authenticator], MethodFactory[Peer]]:
    lb, framing = _lab(), FramingConfig(fragment_size=300, max_rounds=400)
    return (
        tls_authenticator(server_config(lb, max_version=version, framing=framing)),
        tls_peer(peer_config(lb, framing=framing)),
    )


def _mschapv2() -> tuple[MethodFactory[Authenticator], MethodFactory[Peer]]:
    return mschapv2_authenticator(lambda _user: NT_HASH), mschapv2_peer("password")


def _drive(
    methods: tuple[MethodFactory[Authenticator], MethodFactory[Peer]],
    corrupt: dict[int, tuple[int, int]] | None = None,
) -> list[tuple[bool, object]]:
    """Run a conversation; before each Response the authenticator gets, ask
    ``needs_no_check``.  ``corrupt``: Response number -> (offset, xor) to damage it."""
    auth_factory, peer_factory = methods
    cfg = SessionConfig(max_rounds=400, identity_round=False)
    auth = AuthenticatorSession([auth_factory], config=cfg)
    peer = PeerSession([peer_factory], IDENTITY, config=cfg)
    action = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    seen: list[tuple[bool, object]] = []
    for n in range(400):
        if not isinstance(action, Send):
            break
        data = bytearray(action.packet)
        if corrupt and n in corrupt:
            offset, flip = corrupt[n]
            data[offset % len(data)] ^= flip
        asked = auth.needs_no_check(bytes(data))
        assert auth.needs_no_check(bytes(data)) is asked  # asking changes nothing
        answer = auth.receive(bytes(data))
        seen.append((asked, answer))
        if not isinstance(answer, Send):
            break
        action = peer.receive(answer.packet)
    return seen


def test_eap_tls_fragment_acks_need_no_check_and_the_rest_do() -> None:
    for version in (TlsVersion.TLS1_2, TlsVersion.TLS1_3):
        seen = _drive(_tls(version))
        assert isinstance(seen[-1][1], Finished) and seen[-1][1].result.success
        quick = [asked for asked, _ in seen]
        assert quick[0]  # the Identity round: starts EAP-TLS
        assert sum(quick) >= 3  # the server's flight in 300-octet fragments: acks
        assert not quick[1]  # the ClientHello: a resumption record may be looked up
        assert not quick[-1]  # the round that ends the method


def test_mschapv2_only_the_identity_round_needs_no_check() -> None:
    seen = _drive(_mschapv2())
    assert isinstance(seen[-1][1], Finished) and seen[-1][1].result.success
    assert [asked for asked, _ in seen] == [True] + [False] * (len(seen) - 1)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["tls12", "tls13", "mschapv2"]),
    st.dictionaries(
        st.integers(0, 12), st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=3
    ),
)
def test_needs_no_check_never_precedes_an_end(
    method: str, corrupt: dict[int, tuple[int, int]]
) -> None:
    """Damaged Responses included: a round said to need no check is answered by a
    Request, never a Failure or Success (those are authorized: a directory read)."""
    methods = {
        "tls12": lambda: _tls(TlsVersion.TLS1_2),
        "tls13": lambda: _tls(TlsVersion.TLS1_3),
        "mschapv2": _mschapv2,
    }[method]()
    for asked, answer in _drive(methods, corrupt):
        if asked:
            assert isinstance(answer, Send)
