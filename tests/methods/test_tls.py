"""EAP-TLS, both roles against each other (RFC 5216, RFC 9190)."""

from __future__ import annotations

import gc
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from OpenSSL import SSL

from eapkit import pki
from eapkit.catalog import lookup
from eapkit.credentials import Verdict
from eapkit.methods.base import KeyMaterial, MethodContext, MethodFactory
from eapkit.methods.tls import (
    TLS,
    TlsAuthenticator,
    accept_any_certificate,
    bind_identity,
    tls_authenticator,
    tls_peer,
)
from eapkit.packet import Code, MethodData, decode
from eapkit.tlsio import FramingConfig, PeerCertificate, TlsContext, TlsRole, TlsVersion
from tests.certs import IDENTITY, Lab, lab, peer_config, run, server_config

VERSIONS = [TlsVersion.TLS1_2, TlsVersion.TLS1_3]


def _vid(v: TlsVersion) -> str:
    return v.label


# -- an independent computation of the keys, from the secrets OpenSSL logs ---------------


def _p_hash(algo: str, secret: bytes, seed: bytes, size: int) -> bytes:
    """RFC 5246 §5 P_hash."""
    out = b""
    a = seed
    while len(out) < size:
        a = hmac.digest(secret, a, algo)
        out += hmac.digest(secret, a + seed, algo)
    return out[:size]


def _hkdf_expand_label(algo: str, secret: bytes, label: bytes, context: bytes, size: int) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label."""
    full = b"tls13 " + label
    info = size.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    hash_cls = hashes.SHA384() if algo == "sha384" else hashes.SHA256()
    return HKDFExpand(hash_cls, size, info).derive(secret)


def _tls13_exporter(
    algo: str, exporter_secret: bytes, label: bytes, ctx: bytes, size: int
) -> bytes:
    """RFC 8446 §7.5."""
    empty = hashlib.new(algo, b"").digest()
    derived = _hkdf_expand_label(algo, exporter_secret, label, empty, len(empty))
    return _hkdf_expand_label(algo, derived, b"exporter", hashlib.new(algo, ctx).digest(), size)


def _hash_of(cipher: str) -> str:
    return "sha384" if cipher.endswith("SHA384") else "sha256"


def _tls13_keys(keylog: list[bytes], cipher: str) -> KeyMaterial:
    """RFC 9190 §2.3 from the logged exporter_master_secret."""
    algo = _hash_of(cipher)
    lines = [line.split() for line in keylog]
    secret = bytes.fromhex(next(p[2] for p in lines if p[0] == b"EXPORTER_SECRET").decode())
    material = _tls13_exporter(algo, secret, b"EXPORTER_EAP_TLS_Key_Material", b"\x0d", 128)
    method_id = _tls13_exporter(algo, secret, b"EXPORTER_EAP_TLS_Method-Id", b"\x0d", 64)
    return KeyMaterial(material[:64], material[64:], b"\x0d" + method_id)


def _tls12_keys(keylog: list[bytes], cipher: str, server_random: bytes) -> KeyMaterial:
    """RFC 5216 §2.3 from the logged master secret: PRF(ms, label, cr || sr)."""
    entry = next(p for p in (line.split() for line in keylog) if p[0] == b"CLIENT_RANDOM")
    client_random = bytes.fromhex(entry[1].decode())
    master = bytes.fromhex(entry[2].decode())
    seed = client_random + server_random
    material = _p_hash(_hash_of(cipher), master, b"client EAP encryption" + seed, 128)
    return KeyMaterial(material[:64], material[64:], b"\x0d" + seed)


def _logged_server(
    cfg_lab: Lab, keylog: list[bytes], **changes: object
) -> tuple[MethodFactory[TlsAuthenticator], list[TlsAuthenticator]]:
    context = TlsContext(server_config(cfg_lab, **changes), TlsRole.SERVER)
    context.ssl_context.set_keylog_callback(lambda _conn, line: keylog.append(line))
    made: list[TlsAuthenticator] = []

    def create(ctx: object) -> TlsAuthenticator:
        auth = TlsAuthenticator(ctx, context, bind_identity)  # type: ignore[arg-type]
        made.append(auth)
        return auth

    return MethodFactory(TLS, create, "tls"), made


# -- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
@pytest.mark.parametrize("fragment_size", [64, 300, 1398])
def test_both_roles_agree_on_keys(
    version: TlsVersion, key_type: pki.KeyType, fragment_size: int
) -> None:
    lb = lab(key_type)
    framing = FramingConfig(fragment_size=fragment_size, max_rounds=400)
    keylog: list[bytes] = []
    auth, made = _logged_server(lb, keylog, max_version=version, framing=framing)
    conv = run(auth, tls_peer(peer_config(lb, framing=framing)))
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert (a.success, a.reason, p.success, p.reason) == (True, "ok", True, "ok")
    assert a.keys is not None and a.keys == p.keys
    assert len(a.keys.msk) == 64 and len(a.keys.emsk) == 64 and len(a.keys.session_id) == 65
    assert a.user == IDENTITY
    assert a.outcome is not None
    assert a.outcome.attributes["tls_version"] == version.label
    assert a.outcome.attributes["certificate_subject"] == "CN=alice"
    engine = made[0].engine
    cipher = engine.cipher
    assert cipher is not None
    if version is TlsVersion.TLS1_3:
        assert a.keys == _tls13_keys(keylog, cipher)
    else:
        assert a.keys == _tls12_keys(keylog, cipher, engine.server_random)
    # every EAP message honours the fragment size: 4 header + 1 type + 1 flags + 4 length
    for _, packet in conv.transcript:
        assert len(packet) <= fragment_size + 10


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_fragments_carry_l_and_m_as_rfc_5216_says(version: TlsVersion) -> None:
    lb = lab()
    framing = FramingConfig(fragment_size=200)
    conv = run(
        tls_authenticator(server_config(lb, max_version=version, framing=framing)),
        tls_peer(peer_config(lb, framing=framing)),
    )
    assert conv.authenticator is not None and conv.authenticator.success
    start = decode(conv.transcript[2][1])
    assert isinstance(start, MethodData) and start.type_data == b"\x20"
    saw_fragmented = False
    for _, packet in conv.transcript[2:]:
        msg = decode(packet)
        if not isinstance(msg, MethodData):
            assert msg.code in (Code.SUCCESS,)
            continue
        flags = msg.type_data[0]
        if flags & 0x40:  # M: a fragment, and if it is the first one it announces the length
            saw_fragmented = True
        if flags & 0x80:
            assert len(msg.type_data) >= 5
    assert saw_fragmented


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_resumption_in_both_roles_exports_fresh_keys(version: TlsVersion) -> None:
    lb = lab()
    auth = tls_authenticator(server_config(lb, max_version=version))
    peer = tls_peer(peer_config(lb))
    first = run(auth, peer)
    gc.collect()  # freeing the first connection must not spoil its session
    second = run(auth, peer)
    for conv, resumed in ((first, "no"), (second, "yes")):
        a, p = conv.authenticator, conv.peer
        assert a is not None and p is not None and a.success and p.success
        assert a.keys == p.keys
        assert a.outcome is not None and p.outcome is not None
        assert a.outcome.attributes["tls_resumed"] == resumed
        assert p.outcome.attributes["tls_resumed"] == resumed
        assert a.user == IDENTITY
    assert first.authenticator is not None and second.authenticator is not None
    assert first.authenticator.keys != second.authenticator.keys
    assert len(second.transcript) < len(first.transcript)


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
@pytest.mark.parametrize("side", ["server", "peer"])
def test_resumption_can_be_switched_off(version: TlsVersion, side: str) -> None:
    lb = lab()
    auth = tls_authenticator(server_config(lb, max_version=version, resumption=side != "server"))
    peer = tls_peer(peer_config(lb, resumption=side != "peer"))
    run(auth, peer)
    second = run(auth, peer)
    assert second.authenticator is not None and second.authenticator.success
    assert second.authenticator.outcome is not None
    assert second.authenticator.outcome.attributes["tls_resumed"] == "no"


def test_resumed_session_is_checked_against_the_crl_again() -> None:
    lb = lab()
    context = TlsContext(server_config(lb, max_version=TlsVersion.TLS1_2), TlsRole.SERVER)
    auth = MethodFactory(TLS, lambda ctx: TlsAuthenticator(ctx, context, bind_identity))
    peer = tls_peer(peer_config(lb, lb.revoked_client))
    first = run(auth, peer)
    assert first.authenticator is not None and first.authenticator.success
    # The CRL arrives later: the ticket must not let the revoked client back in, although
    # OpenSSL does not verify the certificate of a resumed session.
    context.crls = TlsContext(server_config(lb, crls=(lb.crl_pem,)), TlsRole.SERVER).crls
    conv = run(auth, peer)
    assert conv.authenticator is not None and not conv.authenticator.success
    assert conv.authenticator.reason == "certificate_revoked"
    assert conv.peer is not None and not conv.peer.success


def test_registry_knows_tls() -> None:
    assert lookup("tls").method == TLS
    assert lookup(13).module == "eapkit.methods.tls"


def test_rsa_server_with_ecdsa_client_and_suffix_match() -> None:
    rsa_lab, ec_lab = lab("rsa"), lab("ec")
    cfg = peer_config(
        rsa_lab,
        ec_lab.client,
        ca_certificates=rsa_lab.ca.cert_pem,
        domain_match=(),
        domain_suffix_match=("example.org",),
        server_name="radius.example.org",
    )
    conv = run(
        tls_authenticator(server_config(rsa_lab, ca_certificates=ec_lab.ca.cert_pem)),
        tls_peer(cfg),
    )
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.peer is not None and conv.peer.success


def test_accept_any_policy_names_the_user_by_cn() -> None:
    lb = lab()
    conv = run(
        tls_authenticator(server_config(lb), accept_any_certificate),
        tls_peer(peer_config(lb)),
        identity="anonymous",
    )
    assert conv.authenticator is not None and conv.authenticator.success
    assert conv.authenticator.user == "alice"


# -- failures: each ends in a Failure carrying the alert's name --------------------------


def _fail_case(
    version: TlsVersion,
    *,
    server: dict[str, object] | None = None,
    peer: dict[str, object] | None = None,
    client: str = "client",
    identity: str = IDENTITY,
    policy: Callable[[PeerCertificate, str], Verdict] = bind_identity,
) -> tuple[str, str, str, str]:
    lb = lab()
    auth = tls_authenticator(server_config(lb, max_version=version, **(server or {})), policy)
    pcfg = peer_config(lb, getattr(lb, client), **(peer or {}))
    conv = run(auth, tls_peer(pcfg), identity=identity)
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert not a.success and not p.success and a.keys is None and p.keys is None
    # the last packet is the authenticator's EAP-Failure
    assert decode(conv.transcript[-1][1]).code is Code.FAILURE
    return a.reason, p.reason, a.detail, p.detail


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_client_certificate_from_an_untrusted_ca(version: TlsVersion) -> None:
    a, p, detail, _ = _fail_case(version, client="rogue_client")
    assert (a, p) == ("unknown_ca", "unknown_ca")
    assert "issuer certificate" in detail


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_server_certificate_from_an_untrusted_ca(version: TlsVersion) -> None:
    lb = lab()
    a, p, _, _ = _fail_case(version, peer={"ca_certificates": lb.other_ca.cert_pem})
    assert (a, p) == ("unknown_ca", "unknown_ca")


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_expired_client_certificate(version: TlsVersion) -> None:
    a, p, _, _ = _fail_case(version, client="expired_client")
    assert (a, p) == ("certificate_expired", "certificate_expired")


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_revoked_client_certificate(version: TlsVersion) -> None:
    lb = lab()
    a, p, _, _ = _fail_case(version, client="revoked_client", server={"crls": (lb.crl_pem,)})
    assert (a, p) == ("certificate_revoked", "certificate_revoked")


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_good_client_passes_the_crl_check(version: TlsVersion) -> None:
    lb = lab()
    conv = run(
        tls_authenticator(server_config(lb, max_version=version, crls=(lb.crl_pem,))),
        tls_peer(peer_config(lb)),
    )
    assert conv.authenticator is not None and conv.authenticator.success


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_wrong_server_name(version: TlsVersion) -> None:
    a, p, _, detail = _fail_case(version, peer={"domain_match": ("other.example.org",)})
    assert (a, p) == ("bad_certificate", "bad_certificate")
    assert "domain" in detail


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_no_client_certificate(version: TlsVersion) -> None:
    a, p, _, _ = _fail_case(version, peer={"certificate": None, "private_key": None})
    expected = "certificate_required" if version is TlsVersion.TLS1_3 else "handshake_failure"
    assert (a, p) == (expected, expected)


def test_tls_1_1_offered_is_refused() -> None:
    a, p, _, _ = _fail_case(
        TlsVersion.TLS1_3,
        peer={
            "min_version": TlsVersion.TLS1_1,
            "max_version": TlsVersion.TLS1_1,
            "allow_legacy_versions": True,
        },
    )
    assert (a, p) == ("protocol_version", "protocol_version")


@pytest.mark.parametrize("version", VERSIONS, ids=_vid)
def test_policy_refuses_an_identity_the_certificate_does_not_name(version: TlsVersion) -> None:
    a, p, _, _ = _fail_case(version, identity="bob@example.org")
    assert (a, p) == ("identity_mismatch", "bad_certificate")


def test_certificate_without_client_auth_eku() -> None:
    a, p, _, _ = _fail_case(TlsVersion.TLS1_3, client="email_only_client")
    # OpenSSL's purpose check ("ssl_client") refuses it before our policy runs
    assert (a, p) == ("unsupported_certificate", "unsupported_certificate")


def test_policy_unit() -> None:
    lb = lab()
    cert = PeerCertificate.from_x509(lb.client.certificate)
    assert bind_identity(cert, "ALICE@example.org").ok
    assert bind_identity(cert, "alice").ok  # the CN
    assert bind_identity(cert, "").reason == "identity_mismatch"
    wrong = PeerCertificate.from_x509(lb.email_only_client.certificate)
    assert bind_identity(wrong, IDENTITY).reason == "certificate_purpose"


def test_alert_is_fragmented_and_acknowledged_when_the_fragment_size_is_tiny() -> None:
    lb = lab()
    framing = FramingConfig(fragment_size=16, max_rounds=1000)
    conv = run(
        tls_authenticator(server_config(lb, framing=framing)),
        tls_peer(peer_config(lb, lb.rogue_client, framing=framing)),
        max_rounds=1000,
    )
    assert conv.authenticator is not None and conv.authenticator.reason == "unknown_ca"
    assert conv.peer is not None and conv.peer.reason == "unknown_ca"


# -- the peer waits for the protected success indication (RFC 9190 §2.5) -----------------


def _server_writing(payload: bytes | None) -> MethodFactory[TlsAuthenticator]:
    """An EAP-TLS server that sends ``payload`` instead of 0x00 (nothing if None)."""
    lb = lab()
    context = TlsContext(server_config(lb), TlsRole.SERVER)

    def create(ctx: MethodContext) -> TlsAuthenticator:
        auth = TlsAuthenticator(ctx, context, bind_identity)
        real = auth.engine.write

        def write(data: bytes) -> None:
            if payload is not None:
                real(payload)

        auth.engine.write = write  # type: ignore[method-assign]
        return auth

    return MethodFactory(TLS, create)


def test_tls13_peer_refuses_success_without_the_indication() -> None:
    conv = run(_server_writing(None), tls_peer(peer_config(lab())))
    assert conv.authenticator is not None and conv.authenticator.success
    # the peer never finished the method, so it did not take the EAP-Success
    assert conv.peer is None


def test_tls13_peer_refuses_other_application_data() -> None:
    conv = run(_server_writing(b"\x01"), tls_peer(peer_config(lab())))
    assert conv.peer is not None and not conv.peer.success
    assert conv.peer.reason == "protocol_error"


def test_config_validation() -> None:
    from eapkit.errors import ConfigError
    from eapkit.tlsio import TlsConfig

    lb = lab()
    with pytest.raises(ConfigError):
        TlsConfig(min_version=TlsVersion.TLS1_1)
    with pytest.raises(ConfigError):
        TlsConfig(certificate=lb.server.chain_pem)
    with pytest.raises(ConfigError):
        TlsContext(TlsConfig(), TlsRole.SERVER)
    with pytest.raises(ConfigError):
        TlsContext(replace(server_config(lb), ca_certificates=None), TlsRole.SERVER)
    with pytest.raises(ConfigError):
        TlsContext(server_config(lb, private_key=lb.client.key_pem), TlsRole.SERVER)
    with pytest.raises(ConfigError):
        TlsContext(server_config(lb, certificate="/nonexistent/cert.pem"), TlsRole.SERVER)
    with pytest.raises(ConfigError):
        TlsContext(server_config(lb, groups="no-such-group"), TlsRole.SERVER)
    assert SSL.TLS1_3_VERSION == TlsVersion.TLS1_3
