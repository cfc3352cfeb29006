"""TLS policy (profiles, cipher lists, groups, signature algorithms) and prompt rejects:
every failed handshake of EAP-TLS, EAP-TTLS and PEAP ends in a Failure with the TLS
alert's name as its reason, at most one round trip after the alert (hostapd's
behaviour; RFC 5216 §2.1.3, RFC 9190 §2.1.3), both roles in one process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eapkit.errors import ConfigError
from eapkit.loopback import Conversation
from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.methods.mschapv2 import mschapv2_authenticator, mschapv2_peer
from eapkit.methods.peap import peap_authenticator, peap_peer
from eapkit.methods.tls import tls_authenticator, tls_peer
from eapkit.methods.ttls import InnerPap, ttls_authenticator, ttls_peer
from eapkit.packet import Code, EapType, decode
from eapkit.testing import InMemoryPasswords, StaticNtHashes
from eapkit.tlsio import Fragment, TlsConfig, TlsContext, TlsRole, TlsVersion
from eapkit.tlsio.config import DEFAULT_TLS12_CIPHERS, LEGACY_TLS12_CIPHERS
from tests.certs import lab, peer_config, run, server_config

PASSWORDS = {"alice": "wonderland"}
TLS11 = {"min_version": TlsVersion.TLS1_1, "max_version": TlsVersion.TLS1_1}
TLS11_PEER = {**TLS11, "allow_legacy_versions": True, "tls12_ciphers": "DEFAULT:@SECLEVEL=0"}
LEGACY_SUITES = ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES256-SHA256", "AES256-GCM-SHA384"]

Pair = tuple[MethodFactory[Authenticator], MethodFactory[Peer]]


def _tls(server: dict[str, Any], peer: dict[str, Any], client: str = "client") -> Pair:
    lb = lab("rsa")
    return (
        tls_authenticator(server_config(lb, **server)),
        tls_peer(peer_config(lb, getattr(lb, client), resumption=False, **peer)),
    )


def _tunnel_peer_config(peer: dict[str, Any]) -> TlsConfig:
    return peer_config(lab("rsa"), certificate=None, private_key=None, **peer)


def _ttls(server: dict[str, Any], peer: dict[str, Any], client: str = "client") -> Pair:
    cfg = server_config(lab("rsa"), verify_peer=False, **server)
    return (
        ttls_authenticator(cfg, pap=InMemoryPasswords(PASSWORDS)),
        ttls_peer(_tunnel_peer_config(peer), InnerPap("wonderland"), identity="alice"),
    )


def _peap(server: dict[str, Any], peer: dict[str, Any], client: str = "client") -> Pair:
    cfg = server_config(lab("rsa"), verify_peer=False, **server)
    nt = StaticNtHashes.from_passwords(PASSWORDS)
    return (
        peap_authenticator(cfg, [mschapv2_authenticator(nt)]),
        peap_peer(_tunnel_peer_config(peer), [mschapv2_peer("wonderland")], "alice"),
    )


METHODS: dict[str, Callable[..., Pair]] = {"tls": _tls, "ttls": _ttls, "peap": _peap}


def _alert_indices(conv: Conversation) -> list[int]:
    """Indices of the server's messages that complete a TLS alert record (type 21).

    The server's TLS bytes are read as the record stream they are (RFC 5246 §6.2): a
    continuation fragment starts mid-record, so its first octet is not a content type
    (it is 0x15 about once in 256 flights, which made this check flaky)."""
    found = []
    stream = b""
    for i, (who, packet) in enumerate(conv.transcript):
        if who != "authenticator" or decode(packet).code is not Code.REQUEST:
            continue
        if packet[4] not in (EapType.TLS, EapType.TTLS, EapType.PEAP):
            continue
        stream += Fragment.decode(packet[5:]).data
        while len(stream) >= 5 and len(stream) >= 5 + int.from_bytes(stream[3:5], "big"):
            end = 5 + int.from_bytes(stream[3:5], "big")
            if stream[0] == 0x15:
                found.append(i)
            stream = stream[end:]
    return found


def _rejected(method: str, conv: Conversation) -> dict[str, str]:
    """The server ended in a Failure; EAP-TLS after its alert and the peer's one answer,
    the tunnels at once (no alert a wpa_supplicant TTLS/PEAP peer would never answer)."""
    a = conv.authenticator
    assert a is not None, "the server never decided"
    assert not a.success and a.keys is None
    last = len(conv.transcript) - 1
    assert conv.transcript[last][0] == "authenticator"
    assert decode(conv.transcript[last][1]).code is Code.FAILURE
    alerts = _alert_indices(conv)
    if method == "tls":
        assert all(last - i <= 2 for i in alerts), (alerts, last)
    else:
        assert alerts == [], "a tunnel server ends with the Failure, not with an alert"
    assert a.outcome is not None
    return {"reason": a.reason, **a.outcome.attributes}


# -- the alert-to-Failure path ----------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_tls11_only_peer_is_rejected_with_protocol_version(method: str) -> None:
    conv = run(*METHODS[method]({}, TLS11_PEER))
    got = _rejected(method, conv)
    assert got["reason"] == "protocol_version"
    assert got["tls_alert_sent"] == "protocol_version"


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("suite", LEGACY_SUITES)
def test_legacy_only_peer_gets_no_shared_cipher_from_the_default_profile(
    method: str, suite: str
) -> None:
    peer = {"max_version": TlsVersion.TLS1_2, "tls12_ciphers": suite}
    conv = run(*METHODS[method]({}, peer))
    got = _rejected(method, conv)
    assert got["reason"] == "handshake_failure"
    assert got["tls_alert_sent"] == "handshake_failure"


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("suite", LEGACY_SUITES)
def test_legacy_profile_admits_old_suites(method: str, suite: str) -> None:
    peer = {"max_version": TlsVersion.TLS1_2, "tls12_ciphers": suite}
    conv = run(*METHODS[method]({"profile": "legacy"}, peer))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success and p.success, (a, p)
    assert a.keys == p.keys
    attrs = a.outcome.attributes if a.outcome else {}
    assert attrs["tls_version"] == "TLSv1.2" and attrs["tls_cipher"] == suite


@pytest.mark.parametrize(
    ("client", "server", "reason"),
    [
        ("rogue_client", {}, "unknown_ca"),
        ("expired_client", {}, "certificate_expired"),
        ("revoked_client", "crl", "certificate_revoked"),
    ],
)
def test_eap_tls_certificate_failures_end_one_round_trip_after_the_alert(
    client: str, server: Any, reason: str
) -> None:
    changes = {"crls": (lab("rsa").crl_pem,)} if server == "crl" else {}
    conv = run(*_tls(changes, {}, client))
    got = _rejected("tls", conv)
    assert got["reason"] == reason and got["tls_alert_sent"] == reason
    # EAP-TLS sends its alert first (RFC 9190 §2.1.3; encrypted under TLS 1.3), the
    # peer acknowledges it, the Failure follows: one round trip.
    (w1, alert), (w2, ack), (w3, _) = conv.transcript[-3:]
    assert (w1, w2, w3) == ("authenticator", "peer", "authenticator")
    assert Fragment.decode(alert[5:]).data and Fragment.decode(ack[5:]).is_ack


@pytest.mark.parametrize("method", ["ttls", "peap"])
def test_tunnel_peer_refusing_the_server_ends_at_once(method: str) -> None:
    other = {"ca_certificates": lab("rsa").other_ca.cert_pem}
    conv = run(*METHODS[method]({}, other))
    got = _rejected(method, conv)
    assert got["reason"] == "unknown_ca" and got["tls_alert_received"] == "unknown_ca"
    assert conv.peer is not None and conv.peer.reason == "unknown_ca"


# -- the policy knobs -------------------------------------------------------------------------


def test_profiles_and_their_cipher_lists() -> None:
    assert TlsConfig().cipher_list == DEFAULT_TLS12_CIPHERS
    assert TlsConfig(profile="legacy").cipher_list == LEGACY_TLS12_CIPHERS
    assert TlsConfig(profile="legacy", tls12_ciphers="AES128-SHA").cipher_list == "AES128-SHA"
    assert TlsConfig(security_level=0).cipher_list.endswith(":@SECLEVEL=0")
    for suite in LEGACY_SUITES:
        assert suite not in DEFAULT_TLS12_CIPHERS.split(":")
        assert suite in LEGACY_TLS12_CIPHERS.split(":")
    for weak in ("RC4", "DES", "NULL", "EXP", "anon"):
        assert weak not in LEGACY_TLS12_CIPHERS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"profile": "ancient"}, "profile"),
        ({"security_level": 7}, "security level"),
    ],
)
def test_bad_policy_values_are_config_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TlsConfig(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"groups": "NoSuchGroup"}, "groups"),
        ({"signature_algorithms": "ECDSA+NOHASH"}, "signature algorithms"),
        ({"tls12_ciphers": "NO-SUCH-SUITE"}, "cipher"),
    ],
)
def test_unknown_openssl_names_are_config_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TlsContext(server_config(lab("rsa"), **changes), TlsRole.SERVER)


def test_groups_and_signature_algorithms_are_applied() -> None:
    """A server limited to P-384 and RSA-PSS signatures: a peer offering only X25519
    fails, one offering P-384 passes and the server signed with RSA-PSS."""
    server = {"groups": "P-384", "signature_algorithms": "RSA-PSS+SHA256:rsa_pss_rsae_sha256"}
    conv = run(*_ttls(server, {"groups": "X25519"}))
    assert _rejected("ttls", conv)["reason"] == "handshake_failure"
    conv = run(*_ttls(server, {"groups": "P-384:X25519"}))
    assert conv.authenticator is not None and conv.authenticator.success
    conv = run(*_ttls({"signature_algorithms": "ECDSA+SHA256"}, {"max_version": TlsVersion.TLS1_2}))
    # an RSA server certificate cannot sign with ECDSA only: the handshake fails
    assert conv.authenticator is not None and not conv.authenticator.success
