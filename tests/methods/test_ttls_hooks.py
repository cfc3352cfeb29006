"""The EAP-TTLS hooks of ``eapkit serve`` and ``eapkit probe``: the server's "ttls"
accepts every probe TTLS method, and the outer identity stays anonymous."""

from __future__ import annotations

from pathlib import Path

import pytest

from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.loopback import converse
from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.methods.ttls import TTLS, register_probe_builders, register_serve_builders
from eapkit.probe import PeerBuilder, ProbeOptions
from eapkit.serve import MethodBuilder, ServeConfig, TlsFiles, ensure_demo_pki
from eapkit.session import AuthenticatorSession, PeerSession

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
    builders: dict[str, MethodBuilder] = {}
    register_serve_builders(builders.__setitem__)
    users = LocalDirectory(":memory:")
    users.add("alice", "wonderland", iterations=1000)
    cfg = ServeConfig(tls=TlsFiles(cert=pki["cert"], key=pki["key"]))
    factory = builders["ttls"](cfg, users)
    assert factory.method == TTLS
    return factory


def _peer(pki: dict[str, Path], method: str, password: str | None) -> list[MethodFactory[Peer]]:
    builders: dict[str, PeerBuilder] = {}
    register_probe_builders(builders.__setitem__)
    assert set(builders) == set(PROBE_INNER)
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
    return builders[method](opts)


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
def test_wrong_password_through_the_hooks(
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
