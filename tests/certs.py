"""Certificates for the TLS tests, made once per test session (keygen is the slow part).

``lab("ec")`` / ``lab("rsa")`` return a small PKI made with :mod:`eapkit.pki`: a CA, a
second CA nobody trusts, a server certificate, good / expired / revoked / wrong-EKU
client certificates and a CRL revoking one of them.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, replace
from typing import Any

from eapkit import pki
from eapkit.loopback import Conversation, converse
from eapkit.methods.base import Authenticator, MethodFactory, Peer
from eapkit.session import AuthenticatorSession, PeerSession, SessionConfig
from eapkit.tlsio import TlsConfig

SERVER_NAME = "radius.example.org"
IDENTITY = "alice@example.org"


@dataclass(frozen=True)
class Lab:
    now: dt.datetime
    ca: pki.Issued
    other_ca: pki.Issued
    server: pki.Issued
    rogue_server: pki.Issued
    client: pki.Issued
    expired_client: pki.Issued
    revoked_client: pki.Issued
    email_only_client: pki.Issued
    rogue_client: pki.Issued
    crl_pem: bytes


@functools.cache
def lab(key_type: pki.KeyType = "ec") -> Lab:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit test CA", now=now, key_type=key_type)
    other = pki.make_ca("untrusted CA", now=now, key_type="ec")
    revoked = pki.make_client(ca, "mallory", email=IDENTITY, now=now, key_type=key_type)
    return Lab(
        now=now,
        ca=ca,
        other_ca=other,
        server=pki.make_server(ca, [SERVER_NAME], now=now, key_type=key_type),
        rogue_server=pki.make_server(ca, ["evil.example.net"], now=now, key_type="ec"),
        client=pki.make_client(ca, "alice", email=IDENTITY, now=now, key_type=key_type),
        expired_client=pki.make_client(
            ca,
            "alice",
            email=IDENTITY,
            now=now - dt.timedelta(days=400),
            days=30,
            not_before=now - dt.timedelta(days=400),
        ),
        revoked_client=revoked,
        email_only_client=pki.make_client(ca, "alice", email=IDENTITY, now=now, client_auth=False),
        rogue_client=pki.make_client(other, "alice", email=IDENTITY, now=now),
        crl_pem=pki.crl_pem(pki.make_crl(ca, [revoked.serial], now=now)),
    )


def server_config(lb: Lab, **changes: Any) -> TlsConfig:
    cfg = TlsConfig(
        certificate=lb.server.chain_pem,
        private_key=lb.server.key_pem,
        ca_certificates=lb.ca.cert_pem,
    )
    return replace(cfg, **changes)


def peer_config(lb: Lab, client: pki.Issued | None = None, **changes: Any) -> TlsConfig:
    who = client if client is not None else lb.client
    cfg = TlsConfig(
        certificate=who.chain_pem,
        private_key=who.key_pem,
        ca_certificates=lb.ca.cert_pem,
        domain_match=(SERVER_NAME,),
    )
    return replace(cfg, **changes)


def run(
    auth: MethodFactory[Authenticator],
    peer: MethodFactory[Peer],
    identity: str = IDENTITY,
    max_rounds: int = 400,
) -> Conversation:
    """Both roles in one process, to the end."""
    cfg = SessionConfig(max_rounds=max_rounds)
    return converse(
        AuthenticatorSession([auth], config=cfg),
        PeerSession([peer], identity, config=cfg),
    )
