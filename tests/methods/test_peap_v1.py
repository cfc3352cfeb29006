"""PEAPv1 (draft-josefsson-pppext-eap-tls-eap-05; hostapd ``eap_server_peap.c``,
wpa_supplicant ``eap_peap.c``), both roles in one process: version negotiation in the
flags, whole inner EAP packets, the tunnelled Success/Failure, the two key labels."""

from __future__ import annotations

import pytest

from eapkit.loopback import Conversation, converse
from eapkit.methods.base import MethodFactory, Step
from eapkit.methods.peap import (
    PEAP,
    PEAP_VERSION_1,
    PeapAuthenticator,
    peap_authenticator,
    peap_peer,
)
from eapkit.packet import Code, EapType, decode
from eapkit.session import AuthenticatorSession, PeerSession, SessionConfig
from eapkit.session import Result as SessionResult
from eapkit.tlsio import TlsContext, TlsRole, TlsVersion
from eapkit.tlsio.keys import EAP_TLS_LABEL
from tests.methods.test_peap_helpers import (
    OUTER,
    inner_authenticators,
    inner_peer,
    tls_peer,
    tls_server,
)

TLS12 = TlsVersion.TLS1_2


def _run(
    server_max: int,
    peer_max: int,
    *,
    inner: str = "mschapv2",
    password: str = "wonderland",
    server_label: bool = False,
    peer_label: bool = False,
    version: TlsVersion = TLS12,
) -> Conversation:
    auth = peap_authenticator(
        tls_server(version), inner_authenticators(), max_version=server_max, new_label=server_label
    )
    peer = peap_peer(
        tls_peer(version),
        [inner_peer(inner, password)],
        "alice",
        max_version=peer_max,
        new_label=peer_label,
    )
    cfg = SessionConfig(max_rounds=200)
    return converse(
        AuthenticatorSession([auth], config=cfg), PeerSession([peer], OUTER, config=cfg)
    )


def _peap_flags(conv: Conversation) -> list[tuple[str, int]]:
    """(who, version bits) of every PEAP message of the conversation."""
    out = []
    for who, packet in conv.transcript:
        frame = decode(packet)
        if frame.code in (Code.REQUEST, Code.RESPONSE) and packet[4] == EapType.PEAP:
            out.append((who, packet[5] & 0x07))
    return out


@pytest.mark.parametrize("inner", ["mschapv2", "gtc"])
@pytest.mark.parametrize("version", [TlsVersion.TLS1_2, TlsVersion.TLS1_3], ids=lambda v: v.label)
def test_v1_both_roles_agree(inner: str, version: TlsVersion) -> None:
    conv = _run(1, 1, inner=inner, version=version)
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success and p.success, (a, p)
    assert a.keys is not None and a.keys == p.keys
    assert a.user == "alice"
    attrs = a.outcome.attributes if a.outcome else {}
    assert attrs["peap_version"] == "1" and attrs["crypto_binding"] == "no"
    # the Start offers 1, every later message of both sides carries 1
    flags = _peap_flags(conv)
    assert flags[0] == ("authenticator", 1)
    assert {bits for _, bits in flags} == {1}


def test_v1_keys_use_the_old_label_by_default_and_the_new_one_when_both_agree() -> None:
    old = _run(1, 1)
    new = _run(1, 1, server_label=True, peer_label=True)
    for conv in (old, new):
        assert conv.authenticator is not None and conv.authenticator.success
        assert conv.peer is not None and conv.authenticator.keys == conv.peer.keys
    assert old.authenticator is not None and new.authenticator is not None
    assert old.authenticator.keys is not None and new.authenticator.keys is not None
    assert old.authenticator.keys.msk != new.authenticator.keys.msk
    # peaplabel=1 against a server with the old label: the keys differ (hostapd 2.10's
    # outcome with wpa_supplicant peaplabel=1: "MPPE keys" mismatch)
    mixed = _run(1, 1, peer_label=True)
    assert mixed.authenticator is not None and mixed.peer is not None
    assert mixed.authenticator.success and mixed.peer.success
    assert mixed.authenticator.keys != mixed.peer.keys
    assert EAP_TLS_LABEL == b"client EAP encryption"


@pytest.mark.parametrize(("server_max", "peer_max"), [(1, 0), (0, 1), (0, 0)])
def test_the_lower_version_wins(server_max: int, peer_max: int) -> None:
    conv = _run(server_max, peer_max)
    a = conv.authenticator
    assert a is not None and a.success, a
    attrs = a.outcome.attributes if a.outcome else {}
    assert attrs["peap_version"] == "0"
    assert attrs["crypto_binding"] == "yes"  # version 0 keeps its Result TLV and binding
    flags = _peap_flags(conv)
    assert flags[0] == ("authenticator", server_max)
    assert {bits for _, bits in flags[1:]} == {0}


@pytest.mark.parametrize("inner", ["mschapv2", "gtc"])
def test_v1_wrong_password_ends_in_failure_on_both_sides(inner: str) -> None:
    conv = _run(1, 1, inner=inner, password="guess")
    a, p = conv.authenticator, conv.peer
    assert a is not None and not a.success and a.keys is None
    assert a.reason == "bad_password"
    assert p is None or not p.success
    assert decode(conv.transcript[-1][1]).code is Code.FAILURE


def test_v1_constants() -> None:
    assert PEAP_VERSION_1 == 1
    with pytest.raises(ValueError, match="PEAP version"):
        peap_authenticator(tls_server(), inner_authenticators(), max_version=2)


class _HostapdLikeV1(PeapAuthenticator):
    """hostapd 2.10 gives its tunnelled EAP-Success the outer Identifier, not the inner
    Request's (``eap_peap_build_phase2_term``)."""

    def _send_result(self, inner: SessionResult) -> Step:
        self._inner_id = (self._inner_id + 7) & 0xFF
        return super()._send_result(inner)


def test_v1_peer_accepts_a_tunnelled_success_with_another_identifier() -> None:
    context = TlsContext(tls_server(TLS12), TlsRole.SERVER)
    inner = inner_authenticators()
    auth = MethodFactory(PEAP, lambda ctx: _HostapdLikeV1(ctx, context, inner), "peap")
    peer = peap_peer(tls_peer(TLS12), [inner_peer("mschapv2")], "alice", max_version=1)
    conv = converse(AuthenticatorSession([auth]), PeerSession([peer], OUTER))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success and p.success, (a, p)
    assert a.keys == p.keys


@pytest.mark.parametrize("version", [TlsVersion.TLS1_2, TlsVersion.TLS1_3], ids=lambda v: v.label)
def test_v1_fast_reconnect_skips_phase2(version: TlsVersion) -> None:
    """A resumed PEAPv1 session whose first login succeeded: the server sends the
    tunnelled Success at once (hostapd's SUCCESS_REQ), the original user and factors."""
    context = TlsContext(tls_server(version), TlsRole.SERVER)
    auth = peap_authenticator(context, inner_authenticators(), max_version=1)
    peer = peap_peer(tls_peer(version), [inner_peer("mschapv2")], "alice", max_version=1)
    cfg = SessionConfig(max_rounds=200)
    convs = [
        converse(AuthenticatorSession([auth], config=cfg), PeerSession([peer], OUTER, config=cfg))
        for _ in range(2)
    ]
    (a1, p1), (a2, p2) = [(c.authenticator, c.peer) for c in convs]
    assert a1 is not None and p1 is not None and a2 is not None and p2 is not None
    assert (a1.success, p1.success, a2.success, p2.success) == (True,) * 4, (a2, p2)
    assert a2.outcome is not None and p2.outcome is not None
    assert a2.outcome.attributes["tls_resumed"] == "yes"
    assert a2.outcome.attributes["peap_version"] == "1"
    assert a2.user == a1.user == "alice"
    assert a2.keys == p2.keys and a2.keys != a1.keys
    assert len(convs[1].transcript) < len(convs[0].transcript)
