"""Issue 15's authorization findings against a running ``eapkit serve`` (real sockets):
one authorization step for every method (eapkit.authz), EAP-TLS included."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.crypto.mschap import generate_nt_response
from eapkit.probe import ProbeOptions, probe
from eapkit.radius.dictionary import VENDOR_MICROSOFT, Attr, MsAttr, vsa
from eapkit.radius.nas import ProbeResult
from eapkit.radius.packet import Code, Packet, new_request_authenticator
from tests.security.serving import SECRET, Serve

NO_THROTTLE = "[policy]\nmax_password_failures = 1000000\nmax_nas_password_failures = 1000000\n"


def tls_login(serve: Serve, identity: str) -> ProbeResult:
    pki = serve.pki
    opts = ProbeOptions(
        server=("127.0.0.1", serve.port),
        secret=SECRET.encode(),
        method="tls",
        identity=identity,
        cert=pki.client_cert,
        key=pki.client_key,
        ca=pki.ca,
        timeout=5.0,
        retries=1,
    )
    return asyncio.run(probe(opts))


def eap_login(serve: Serve, method: str, user: str, password: str) -> ProbeResult:
    opts = ProbeOptions(
        server=("127.0.0.1", serve.port),
        secret=SECRET.encode(),
        method=method,
        identity=user,
        anonymous_identity="anonymous" if "-" in method else None,
        password=password,
        ca=serve.pki.ca,
        timeout=5.0,
        retries=1,
    )
    return asyncio.run(probe(opts))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Serve]:
    users = (("alice", "wonderland", "none"), ("tom", "pencil", "totp"))
    with Serve(tmp_path / "serve", 'methods = ["tls"]\n', users) as serve:
        yield serve


def test_deleted_user_with_a_valid_certificate_is_rejected(tls_server: Serve) -> None:
    assert tls_login(tls_server, "alice").accepted
    tls_server.eapkit("user", "del", "alice")
    result = tls_login(tls_server, "alice")
    assert not result.accepted
    assert result.reply is not None and result.reply.code == Code.ACCESS_REJECT
    assert tls_server.decisions()[-1]["reason"] == "unknown_user"


def test_disabled_user_is_rejected_and_enabled_again(tls_server: Serve) -> None:
    tls_server.eapkit("user", "disable", "alice")
    assert not tls_login(tls_server, "alice").accepted
    assert tls_server.decisions()[-1]["reason"] == "user_disabled"
    tls_server.eapkit("user", "enable", "alice")
    assert tls_login(tls_server, "alice").accepted


@pytest.mark.parametrize("identity", ["anonymous@example.org", "@example.org", "", "host/ws1"])
def test_any_eap_identity_logs_in_as_the_certificates_user(
    tls_server: Serve, identity: str
) -> None:
    """RFC 9190 §2.1.4 identity privacy: the EAP Identity is a hint; the certificate
    (CN alice; its e-mail's realm is not configured) names the user."""
    result = tls_login(tls_server, identity)
    assert result.accepted, result
    assert result.reply_attributes.get("USER_NAME") == "alice"
    assert tls_server.decisions()[-1]["user"] == "alice"


def test_totp_user_with_a_certificate_alone_is_rejected(tmp_path: Path) -> None:
    users = (("alice", "wonderland", "totp"),)
    with Serve(tmp_path / "serve", 'methods = ["tls"]\n', users) as serve:
        assert not tls_login(serve, "alice").accepted
        assert serve.decisions()[-1]["reason"] == "second_factor_required"


def test_certificate_counts_as_possession_when_configured(tmp_path: Path) -> None:
    users = (("alice", "wonderland", "totp"),)
    config = 'methods = ["tls"]\n[policy]\ncertificate_is_possession = true\n'
    with Serve(tmp_path / "serve", config, users) as serve:
        assert tls_login(serve, "anonymous").accepted


def test_certificate_email_maps_through_a_configured_realm(tmp_path: Path) -> None:
    """The demo certificate's e-mail alice@eapkit.test names alice for a configured
    realm (the demo PKI's by default), and the whole address for any other."""
    users = (("alice", "wonderland", "none"), ("alice@eapkit.test", "unused", "none"))
    mapped = 'methods = ["tls"]\n[tls]\nidentity = ["san_email"]\nrealms = ["EAPKIT.test"]\n'
    with Serve(tmp_path / "a", mapped, users) as serve:
        assert tls_login(serve, "x").reply_attributes.get("USER_NAME") == "alice"
    whole = 'methods = ["tls"]\n[tls]\nidentity = ["san_email"]\nrealms = ["corp.example"]\n'
    with Serve(tmp_path / "b", whole, users) as serve:
        result = tls_login(serve, "alice")
        assert result.reply_attributes.get("USER_NAME") == "alice@eapkit.test"
        serve.eapkit("user", "del", "alice@eapkit.test")
        assert not tls_login(serve, "alice").accepted
        assert serve.decisions()[-1]["reason"] == "unknown_user"


@pytest.mark.parametrize("method", ["mschapv2", "ttls-mschapv2", "peap-mschapv2"])
def test_mschapv2_outcome_does_not_tell_a_2fa_users_password(tmp_path: Path, method: str) -> None:
    """The right and a wrong password of a TOTP user end the same way on the wire: no
    MS-CHAPv2 Success (which would prove the password) for either."""
    users = (("tom", "pencil", "totp"), ("nora", "pencil", "none"))
    config = 'methods = ["mschapv2", "ttls", "peap"]\n'
    with Serve(tmp_path / "serve", config, users) as serve:
        right = eap_login(serve, method, "tom", "pencil")
        wrong = eap_login(serve, method, "tom", "pencil!")
        assert eap_login(serve, method, "nora", "pencil").accepted  # the method works
        reasons = [d["reason"] for d in serve.decisions()]
    assert not right.accepted and not wrong.accepted
    assert right.peer is not None and wrong.peer is not None
    assert (right.peer.success, right.peer.reason) == (wrong.peer.success, wrong.peer.reason)
    assert right.rounds == wrong.rounds
    assert reasons[:2] == ["second_factor_required", "second_factor_required"]


def test_passwords_are_throttled_per_nas_and_user(tmp_path: Path) -> None:
    users = (("nora", "pencil", "none"),)
    config = 'methods = ["mschapv2"]\n[policy]\nmax_password_failures = 3\n'
    with Serve(tmp_path / "serve", config, users) as serve:
        for _ in range(3):
            assert serve.pap("nora", "wrong").code == Code.ACCESS_REJECT
        # past the limit on gw-a: the right password is refused unchecked
        assert serve.pap("nora", "pencil").code == Code.ACCESS_REJECT
        assert serve.decisions()[-1]["reason"] == "throttled"
        # MS-CHAPv2 from gw-a too
        assert not eap_login(serve, "mschapv2", "nora", "pencil").accepted
        assert serve.decisions()[-1]["reason"] == "throttled"
        # another NAS is not locked out by gw-a's failures, and its success does not
        # reset gw-a's count
        assert serve.pap("nora", "pencil", source="127.0.0.2").code == Code.ACCESS_ACCEPT
        assert serve.pap("nora", "pencil").code == Code.ACCESS_REJECT
        assert serve.decisions()[-1]["reason"] == "throttled"


def mschapv2_plain(serve: Serve, user: str, password: str, source: str = "127.0.0.1") -> Packet:
    """MS-CHAP-V2 over plain RADIUS (RFC 2548 §2.3), as an L2TP/PPTP NAS sends it."""
    challenge, peer_challenge = os.urandom(16), os.urandom(16)
    nt_response = generate_nt_response(challenge, peer_challenge, user, password)
    attrs = [
        (Attr.USER_NAME, user.encode()),
        vsa(VENDOR_MICROSOFT, MsAttr.MS_CHAP_CHALLENGE, challenge),
        vsa(
            VENDOR_MICROSOFT,
            MsAttr.MS_CHAP2_RESPONSE,
            bytes((1, 0)) + peer_challenge + bytes(8) + nt_response,
        ),
    ]
    return serve.access(attrs, new_request_authenticator(), source=source)


def shape(reply: Packet) -> tuple[int, list[int], list[int]]:
    ms = sorted(t for t, _ in reply.vendor_attributes(VENDOR_MICROSOFT))
    return reply.code, sorted(t for t, _ in reply.attributes), ms


def test_mschapv2_over_plain_radius_passes_the_authorization_step(tmp_path: Path) -> None:
    """MS-CHAP-V2 from a NAS (no EAP): deleted, disabled and throttled users are
    refused with the right password, and a TOTP user gets the same Reject whatever the
    password (issue 15; issue 23's second-factor rule)."""
    users = (
        ("nora", "pencil", "none"),
        ("dora", "pencil", "none"),
        ("gone", "pencil", "none"),
        ("tom", "pencil", "totp"),
    )
    config = "[policy]\nmax_password_failures = 3\n"
    with Serve(tmp_path / "serve", config, users) as serve:
        assert mschapv2_plain(serve, "gone", "pencil").code == Code.ACCESS_ACCEPT
        serve.eapkit("user", "del", "gone")
        serve.eapkit("user", "disable", "dora")
        wrong = mschapv2_plain(serve, "nora", "crayon")
        gone = mschapv2_plain(serve, "gone", "pencil")
        dora = mschapv2_plain(serve, "dora", "pencil")
        right = mschapv2_plain(serve, "tom", "pencil")
        tom_wrong = mschapv2_plain(serve, "tom", "crayon")
        assert shape(wrong) == shape(gone) == shape(dora) == shape(right) == shape(tom_wrong)
        assert wrong.code == Code.ACCESS_REJECT
        reasons = [d["reason"] for d in serve.decisions()][1:]
        assert reasons == [
            "bad_password",
            "unknown_user",
            "user_disabled",
            "second_factor_required",
            "second_factor_required",
        ]
        for _ in range(2):  # three failed MS-CHAP passwords in all, then throttled
            assert mschapv2_plain(serve, "nora", "crayon").code == Code.ACCESS_REJECT
        assert mschapv2_plain(serve, "nora", "pencil").code == Code.ACCESS_REJECT
        assert serve.decisions()[-1]["reason"] == "throttled"
        assert serve.pap("nora", "pencil").code == Code.ACCESS_REJECT  # PAP shares the count
        assert serve.decisions()[-1]["reason"] == "throttled"
        # another NAS is not locked out by gw-a's failures
        assert mschapv2_plain(serve, "nora", "pencil", "127.0.0.2").code == Code.ACCESS_ACCEPT
