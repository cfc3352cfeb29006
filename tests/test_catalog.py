"""The method catalog (:mod:`eapkit.catalog`): one row per method, its builders, and the
factors each proves.  EAP-TTLS: the server's "ttls" accepts every probe TTLS method,
and the outer identity stays anonymous."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from eapkit.catalog import CATALOG, DEFAULT_METHODS, PEER_METHODS, lookup, peer_method
from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.loopback import converse
from eapkit.methods.base import Authenticator, Factor, MethodFactory, Peer
from eapkit.methods.ttls import TTLS
from eapkit.probe import ProbeOptions, build_peer_methods, tls_config
from eapkit.serve import ServeConfig, TlsFiles, ensure_demo_pki, server_context
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
    users = LocalDirectory(":memory:")
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


# -- ``--method teap``: the inner methods follow the credentials given -----------------------


def _teap_opts(pki: dict[str, Path], **kw: object) -> ProbeOptions:
    return ProbeOptions(
        ("127.0.0.1", 1812),
        b"s",
        "teap",
        "alice",
        ca=pki["ca"],
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("creds", "ran"),
    [
        ({"password": "wonderland"}, [("user", "alice", "eap-mschapv2")]),
        ({"cert": "client_cert", "key": "client_key"}, [("user", "alice", "eap-tls")]),
        (
            {"password": "wonderland", "machine_password": "kiosk", "machine_identity": "host/k"},
            [("user", "alice", "eap-mschapv2"), ("machine", "host/k", "eap-mschapv2")],
        ),
        (
            {"machine_cert": "client_cert", "machine_key": "client_key"},
            [("machine", "host/laptop", "eap-tls")],
        ),
    ],
    ids=["password", "certificate", "user-and-machine-passwords", "machine-certificate-only"],
)
def test_bare_teap_runs_what_the_credentials_name(
    pki: dict[str, Path], creds: dict[str, str], ran: list[tuple[str, str, str]]
) -> None:
    """Against serve's TEAP built from the catalog: ``--password`` gives inner
    EAP-MSCHAPv2, ``--cert``/``--key`` inner EAP-TLS, machine credentials alone a
    machine-only peer (the server asks for what ``ran`` lists: eap_teap_id 5, 1 or 2)."""
    users = LocalDirectory(":memory:")
    users.add("alice", "wonderland", iterations=1000)
    users.add("host/k", "kiosk", iterations=1000)
    cfg = ServeConfig(tls=TlsFiles(cert=pki["cert"], key=pki["key"], ca=pki["ca"]))
    kinds = [kind for kind, _, _ in ran]
    identity = 5 if len(ran) == 2 else 2 if kinds == ["machine"] else 1
    methods = {kind: method for kind, _, method in ran}
    ctx = replace(
        server_context(cfg, users),
        teap_identity=identity,
        teap_user_inner=methods.get("user", "eap-mschapv2"),
        teap_machine_inner=methods.get("machine", "eap-tls"),
    )
    files = {
        k: (pki[v] if k in ("cert", "key", "machine_cert", "machine_key") else v)
        for k, v in creds.items()
    }
    if "machine_cert" in files:
        files["machine_identity"] = "host/laptop"
    peer = build_peer_methods(_teap_opts(pki, **files))
    conv = converse(
        AuthenticatorSession([lookup("teap").server(ctx)]), PeerSession(peer, "anonymous")
    )
    a, p = conv.authenticator, conv.peer
    assert a is not None and p is not None
    assert a.success and p.success, (a.reason, a.detail)
    assert a.outcome is not None and a.keys == p.keys
    assert [(x.identity_type, x.identity, x.method) for x in a.outcome.inner] == ran


@pytest.mark.parametrize(
    ("creds", "complaint"),
    [
        ({"password": "pw", "cert": "client_cert", "key": "client_key"}, "not both"),
        ({"password": "pw", "otp": "123456"}, "teap-password"),
        ({}, "needs the user's credentials"),
        ({"machine_identity": "host/k"}, "needs the user's credentials"),
    ],
    ids=["password-and-certificate", "otp", "nothing", "machine-name-alone"],
)
def test_bare_teap_refuses_what_it_cannot_choose_from(
    pki: dict[str, Path], creds: dict[str, str], complaint: str
) -> None:
    files = {k: (pki[v] if k in ("cert", "key") else v) for k, v in creds.items()}
    with pytest.raises(ConfigError, match=complaint):
        build_peer_methods(_teap_opts(pki, **files))


# -- the table -------------------------------------------------------------------------------


def test_every_row_builds_its_own_method(pki: dict[str, Path]) -> None:
    """A row's builders make factories of its wire type, named as the row (the tunnels
    name their inner methods by the factory's name)."""
    users = LocalDirectory(":memory:")
    cfg = ServeConfig(tls=TlsFiles(cert=pki["cert"], key=pki["key"], ca=pki["ca"]))
    ctx = server_context(cfg, users)
    for entry in CATALOG:
        factory = entry.server(ctx)
        assert (factory.method, factory.name) == (entry.method, entry.name)
        assert lookup(entry.method) is entry and lookup(entry.name.upper()) is entry
        for name in entry.peer_names():
            bare_tunnel = bool(entry.inner) and name == entry.name  # ``teap``: one credential
            opts = ProbeOptions(
                ("127.0.0.1", 1812),
                b"s",
                name,
                "alice",
                password=None if bare_tunnel else "pw",
                cert=pki["client_cert"],
                key=pki["client_key"],
            )
            assert [(f.method, f.name) for f in build_peer_methods(opts)] == [
                (entry.method, entry.name)
            ]


def test_names_serve_and_probe_know() -> None:
    assert DEFAULT_METHODS == ("tls", "ttls", "peap", "mschapv2", "gtc")
    assert set(PEER_METHODS) == {
        "tls",
        "ttls-pap",
        "ttls-mschapv2",
        "ttls-gtc",
        "ttls-eap-mschapv2",
        "peap-mschapv2",
        "peap-gtc",
        "gtc",
        "mschapv2",
        "teap",
        "teap-mschapv2",
        "teap-tls",
        "teap-password",
    }
    assert peer_method("teap") == (lookup("teap"), None)
    assert peer_method("teap-tls") == (lookup("teap"), "tls")
    assert lookup("teap").method.vendor_type == 55
    with pytest.raises(KeyError):
        lookup("md5")
    with pytest.raises(ConfigError, match="--method is one of"):
        peer_method("ttls-chap")


def test_tls_methods_need_the_server_certificate() -> None:
    users = LocalDirectory(":memory:")
    ctx = server_context(ServeConfig(methods=["gtc"]), users)
    assert ctx.tls is None  # not read when no configured method needs it
    for name in ("tls", "ttls", "peap"):
        with pytest.raises(ConfigError, match=r"\[tls\] cert and key"):
            lookup(name).server(ctx)


def test_methods_import_nothing_of_the_application() -> None:
    """DESIGN.md: methods know nothing of serve, probe, users or the store."""
    forbidden = ("serve", "probe", "users", "cli", "radius", "store", "catalog")
    package = Path(__file__).parents[1] / "eapkit" / "methods"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[:2] not in (["eapkit", f] for f in forbidden), (
                    f"{path.name} imports {name}"
                )
                assert name != "importlib", f"{path.name} loads modules by name"


# -- factors ---------------------------------------------------------------------------------


def _login(
    factory: MethodFactory[Authenticator], peer: MethodFactory[Peer], user: str
) -> frozenset[Factor]:
    conv = converse(AuthenticatorSession([factory], now=time.time()), PeerSession([peer], user))
    assert conv.authenticator is not None and conv.authenticator.success
    return conv.authenticator.factors


def test_each_method_says_what_it_proved(pki: dict[str, Path], tmp_path: Path) -> None:
    from eapkit.methods.gtc import gtc_peer
    from eapkit.methods.mschapv2 import mschapv2_peer
    from eapkit.methods.peap import peap_peer
    from eapkit.methods.tls import tls_peer
    from eapkit.methods.ttls import (
        InnerChap,
        InnerEap,
        InnerMethod,
        InnerMsChapV2,
        InnerPap,
        ttls_authenticator,
        ttls_peer,
    )
    from eapkit.second_factor import SecondFactors
    from eapkit.store.memory import MemoryStore
    from eapkit.store.sealing import Sealer

    users = LocalDirectory(tmp_path / "u.db")
    users.add("alice", "wonderland", iterations=1000)
    users.add("tom", "pencil", second_factor="totp", iterations=1000)
    second = SecondFactors(users, MemoryStore(), Sealer({"k": bytes(32)}))
    codes = iter(second.recovery.issue("tom", time.time()))  # one code per login
    cfg = ServeConfig(tls=TlsFiles(cert=pki["cert"], key=pki["key"], ca=pki["ca"]))
    plain = server_context(cfg, users)
    two = server_context(cfg, users, pap=second.pap(users.check_password), code=second.check_code)
    server_only = ProbeOptions(("127.0.0.1", 1812), b"s", "ttls-pap", "alice", ca=pki["ca"])
    tls = tls_config(server_only)
    client = tls_config(replace(server_only, cert=pki["client_cert"], key=pki["client_key"]))
    password, both = {Factor.PASSWORD}, {Factor.PASSWORD, Factor.OTP_DEVICE}

    def twice(first: str) -> Callable[[str], str]:
        answers = iter([first, next(codes)])  # the code in a second round
        return lambda _prompt: next(answers)

    tls_server = lookup("tls").server(plain)
    assert _login(tls_server, tls_peer(client), "alice@eapkit.test") == {Factor.CERTIFICATE}
    assert _login(lookup("mschapv2").server(two), mschapv2_peer("wonderland"), "alice") == password
    assert (
        _login(lookup("gtc").server(plain), gtc_peer(lambda _p: "wonderland"), "alice") == password
    )
    gtc = lookup("gtc").server(two)
    one_round = "pencil" + next(codes)
    assert _login(gtc, gtc_peer(lambda _p: one_round), "tom") == both
    assert _login(gtc, gtc_peer(twice("pencil")), "tom") == both
    only_code = lookup("gtc").server(replace(two, gtc="code"))
    code = next(codes)
    assert _login(only_code, gtc_peer(lambda _p: code), "tom") == {Factor.OTP_DEVICE}

    ttls = lookup("ttls").server(two)
    reply_code = next(codes)
    inners: list[tuple[str, InnerMethod, set[Factor]]] = [
        ("alice", InnerPap("wonderland"), password),
        ("alice", InnerMsChapV2("wonderland"), password),
        ("alice", InnerEap([mschapv2_peer("wonderland")]), password),
        ("tom", InnerEap([gtc_peer(twice("pencil"))]), both),
        ("tom", InnerPap("pencil" + next(codes)), both),
        ("tom", InnerPap("pencil", challenge=lambda _p: reply_code), both),  # Reply-Message
    ]
    for user, inner, expected in inners:
        assert _login(ttls, ttls_peer(tls, inner, user), "anonymous") == expected, inner
    chap = ttls_authenticator(two.tunnel_tls(), chap=lambda _u: "cleartext")
    assert _login(chap, ttls_peer(tls, InnerChap("cleartext"), "alice"), "anonymous") == password

    peap = lookup("peap").server(two)
    assert _login(peap, peap_peer(tls, [mschapv2_peer("wonderland")], "alice"), "x") == password
    assert _login(peap, peap_peer(tls, [gtc_peer(twice("pencil"))], "tom"), "x") == both
