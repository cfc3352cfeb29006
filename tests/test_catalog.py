"""The method catalog (:mod:`eapkit.catalog`): one row per method, its builders, and the
factors each proves.  EAP-TTLS: the server's "ttls" accepts every probe TTLS method,
and the outer identity stays anonymous."""

from __future__ import annotations

from pathlib import Path

import pytest

from eapkit.catalog import lookup
from eapkit.errors import ConfigError
from eapkit.loopback import converse
from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.methods.ttls import TTLS
from eapkit.probe import ProbeOptions, build_peer_methods
from eapkit.serve import ServeConfig, TlsFiles, ensure_demo_pki, server_context
from eapkit.session import AuthenticatorSession, PeerSession
from eapkit.users import UserDirectory

PROBE_INNER = {
    "ttls-pap": "pap",
    "ttls-mschapv2": "mschapv2",
    "ttls-gtc": "eap-gtc",
    "ttls-eap-mschapv2": "eap-mschapv2",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ensure_demo_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> MethodFactory[Authenticator]:
    users = UserDirectory(":memory:")
    users.add("alice", "wonderland", iterations=1000)
    cfg = ServeConfig(tls=TlsFiles(cert=pki["cert"], key=pki["key"]))
    factory = lookup("ttls").server(server_context(cfg, users))
    assert factory.method == TTLS
    return factory


def _peer(pki: dict[str, Path], method: str, password: str | None) -> list[MethodFactory[Peer]]:
    assert set(lookup("ttls").peer_names()) == set(PROBE_INNER)
    opts = ProbeOptions(
        server=("127.0.0.1", 1812),
        secret=b"testing123",
        method=method,
        identity="alice",
        anonymous_identity="anonymous",
        password=password,
        ca=pki["ca"],
        server_name="radius.eapkit.test",
    )
    return build_peer_methods(opts)


@pytest.mark.parametrize("method", sorted(PROBE_INNER))
def test_serve_accepts_every_probe_method(
    pki: dict[str, Path], server: MethodFactory[Authenticator], method: str
) -> None:
    conv = converse(
        AuthenticatorSession([server]), PeerSession(_peer(pki, method, "wonderland"), "anonymous")
    )
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None and a.success and p.success
    assert (a.identity, a.user) == ("anonymous", "alice")
    assert a.keys == p.keys
    assert a.outcome is not None
    assert a.outcome.attributes["inner_method"] == PROBE_INNER[method]


@pytest.mark.parametrize("method", sorted(PROBE_INNER))
def test_wrong_password_through_the_catalog(
    pki: dict[str, Path], server: MethodFactory[Authenticator], method: str
) -> None:
    conv = converse(
        AuthenticatorSession([server]), PeerSession(_peer(pki, method, "guess"), "anonymous")
    )
    assert conv.authenticator is not None and not conv.authenticator.success
    assert conv.authenticator.reason == "bad_password"


def test_probe_methods_need_a_password(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError):
        _peer(pki, "ttls-pap", None)
