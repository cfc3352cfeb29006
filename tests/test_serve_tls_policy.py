"""``eapkit serve``'s ``[tls]`` policy keys and the decision log of TLS-based logins:
every accept and reject of EAP-TLS, TTLS and PEAP names the negotiated TLS version and
cipher, and a failed handshake the alert that ended it, through the RADIUS core."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from eapkit.directory import LocalDirectory
from eapkit.errors import ConfigError
from eapkit.methods.base import MethodFactory, Peer
from eapkit.methods.mschapv2 import mschapv2_peer
from eapkit.methods.peap import peap_peer
from eapkit.methods.tls import tls_peer
from eapkit.methods.ttls import InnerPap, ttls_peer
from eapkit.packet import Code as EapCode
from eapkit.packet import Identity
from eapkit.radius.core import RadiusCore
from eapkit.radius.dictionary import Attr
from eapkit.radius.packet import (
    Code,
    decode,
    eap_message_attributes,
    encode_request,
    new_request_authenticator,
)
from eapkit.serve import ServeConfig, build_core, server_tls_config
from eapkit.session import Finished, PeerSession, Send
from eapkit.tlsio import TlsVersion
from tests.certs import lab, peer_config
from tests.radius.helpers import datagram

SECRET = b"s3cr3t-shared"
ADDR = ("127.0.0.1", 4000)


def _config(tmp_path: Path, **tls: Any) -> ServeConfig:
    lb = lab("rsa")
    (tmp_path / "server.pem").write_bytes(lb.server.chain_pem)
    (tmp_path / "server.key").write_bytes(lb.server.key_pem)
    (tmp_path / "ca.pem").write_bytes(lb.ca.cert_pem)
    lines = ["[tls]", 'cert = "server.pem"', 'key = "server.key"', 'ca = "ca.pem"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in tls.items()]
    lines += ["[[clients]]", 'address = "127.0.0.1/32"', f'secret = "{SECRET.decode()}"']
    (tmp_path / "serve.toml").write_text("\n".join(lines) + "\n")
    cfg = ServeConfig.from_toml(tmp_path / "serve.toml")
    cfg.db = tmp_path / "eapkit.db"
    cfg.methods = ["tls", "ttls", "peap"]
    return cfg


def _core(cfg: ServeConfig) -> tuple[RadiusCore, io.StringIO]:
    users = LocalDirectory(cfg.db)
    users.add("alice", "wonderland", iterations=1000)
    log = io.StringIO()
    return build_core(cfg, users, log_stream=log), log


def _login(core: RadiusCore, peer: PeerSession) -> int:
    first = peer.receive(Identity(EapCode.REQUEST, 0).encode())
    assert isinstance(first, Send)
    eap, state, ident = first.packet, None, 0
    while True:
        ident += 1
        attrs = [(Attr.USER_NAME, b"alice"), *eap_message_attributes(eap)]
        if state is not None:
            attrs.append((Attr.STATE, state))
        data = encode_request(
            Code.ACCESS_REQUEST,
            ident,
            attrs,
            SECRET,
            authenticator=new_request_authenticator(),
            message_authenticator=True,
        )
        reply = decode(datagram(core, data, ADDR, time.time()) or b"")
        if reply.code != Code.ACCESS_CHALLENGE:
            return reply.code
        state = reply.get(Attr.STATE)
        action = peer.receive(reply.eap_message() or b"")
        if isinstance(action, Finished):
            assert action.packet is not None, "the peer fell silent before the server decided"
            eap = action.packet
            continue
        assert isinstance(action, Send)
        eap = action.packet


def _decision(log: io.StringIO) -> dict[str, Any]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.strip()]
    decisions = [line for line in lines if line.get("result") in ("accept", "reject")]
    assert len(decisions) == 1, lines
    line: dict[str, Any] = decisions[0]
    return line


def _peer(method: str, password: str = "wonderland", **tls: Any) -> MethodFactory[Peer]:
    lb = lab("rsa")
    if method == "tls":
        return tls_peer(peer_config(lb, resumption=False, **tls))
    cfg = peer_config(lb, certificate=None, private_key=None, **tls)
    if method == "ttls":
        return ttls_peer(cfg, InnerPap(password), identity="alice")
    return peap_peer(cfg, [mschapv2_peer(password)], "alice")


@pytest.mark.parametrize("method", ["tls", "ttls", "peap"])
def test_accept_logs_the_tls_version_and_cipher(tmp_path: Path, method: str) -> None:
    core, log = _core(_config(tmp_path))
    peer = _peer(method, max_version=TlsVersion.TLS1_2)
    assert _login(core, PeerSession([peer], "alice")) == Code.ACCESS_ACCEPT
    line = _decision(log)
    assert line["result"] == "accept"
    assert line["tls_version"] == "TLSv1.2"
    assert line["tls_cipher"].startswith("ECDHE-")


@pytest.mark.parametrize("method", ["ttls", "peap"])
def test_wrong_password_reject_logs_the_tls_version_and_cipher(tmp_path: Path, method: str) -> None:
    core, log = _core(_config(tmp_path))
    peer = _peer(method, "guess")
    assert _login(core, PeerSession([peer], "alice")) == Code.ACCESS_REJECT
    line = _decision(log)
    assert line["result"] == "reject" and line["reason"] == "bad_password"
    assert line["tls_version"] == "TLSv1.3" and line["tls_cipher"].startswith("TLS_")


@pytest.mark.parametrize("method", ["tls", "ttls", "peap"])
def test_no_shared_cipher_is_a_logged_reject(tmp_path: Path, method: str) -> None:
    core, log = _core(_config(tmp_path))
    peer = _peer(method, max_version=TlsVersion.TLS1_2, tls12_ciphers="AES128-SHA")
    assert _login(core, PeerSession([peer], "alice")) == Code.ACCESS_REJECT
    line = _decision(log)
    assert line["result"] == "reject" and line["reason"] == "handshake_failure"
    assert line["tls_alert_sent"] == "handshake_failure"


@pytest.mark.parametrize("method", ["tls", "ttls", "peap"])
def test_legacy_profile_from_the_toml_file(tmp_path: Path, method: str) -> None:
    core, log = _core(_config(tmp_path, profile="legacy"))
    peer = _peer(method, max_version=TlsVersion.TLS1_2, tls12_ciphers="AES128-SHA")
    assert _login(core, PeerSession([peer], "alice")) == Code.ACCESS_ACCEPT
    line = _decision(log)
    assert (line["tls_version"], line["tls_cipher"]) == ("TLSv1.2", "AES128-SHA")


def test_tls_keys_reach_the_tls_config(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        profile="legacy",
        ciphers="ECDHE+AESGCM",
        groups="P-256",
        signature_algorithms="ECDSA+SHA256:RSA-PSS+SHA256",
        security_level=1,
        peap_version=0,
    )
    tls = server_tls_config(cfg)
    assert tls.profile == "legacy" and tls.tls12_ciphers == "ECDHE+AESGCM"
    assert tls.groups == "P-256" and tls.security_level == 1
    assert tls.signature_algorithms == "ECDSA+SHA256:RSA-PSS+SHA256"
    assert cfg.tls.peap_version == 0


@pytest.mark.parametrize(("key", "value"), [("profile", "ancient"), ("peap_version", 2)])
def test_bad_tls_keys_are_config_errors(tmp_path: Path, key: str, value: object) -> None:
    with pytest.raises(ConfigError):
        server_tls_config(_config(tmp_path, **{key: value}))
