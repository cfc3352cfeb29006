"""``eapkit probe``: a NAS-side RADIUS client that runs eapkit's peer methods, like
``eapol_test``, against any RADIUS server.

It prints the verdict, the MSK the peer derived and the MPPE keys the server sent, checks
that they agree (MS-MPPE-Recv-Key = MSK[0:32], MS-MPPE-Send-Key = MSK[32:64], RFC 3579
§4.2 / RFC 2548) and that EAP-Key-Name equals the Session-Id, and exits 0 only on an
Access-Accept with matching keys (or, for a method that derives none, on an Accept).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eapkit.errors import ConfigError
from eapkit.methods.base import MethodFactory, Peer
from eapkit.methods.gtc import gtc_peer
from eapkit.radius.nas import ProbeResult, RadiusClient, authenticate
from eapkit.radius.packet import Code
from eapkit.session import PeerSession

__all__ = ["METHODS", "ProbeOptions", "build_peer_methods", "probe", "run_probe"]

METHODS = (
    "tls",
    "ttls-pap",
    "ttls-mschapv2",
    "ttls-gtc",
    "ttls-eap-mschapv2",
    "peap-mschapv2",
    "peap-gtc",
    "gtc",
    "mschapv2",
)


@dataclass
class ProbeOptions:
    server: tuple[str, int]
    secret: bytes
    method: str
    identity: str
    anonymous_identity: str | None = None
    password: str | None = None
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    tls: str | None = None
    fragment_size: int | None = None
    timeout: float = 3.0
    retries: int = 3
    server_name: str | None = None


def tls_config(opts: ProbeOptions) -> Any:
    """The peer's TLS settings: verify the server against ``--ca`` (and its name when
    given), present ``--cert``/``--key``, pin the version with ``--tls``."""
    from eapkit.tlsio.config import TlsConfig, TlsVersion
    from eapkit.tlsio.framing import DEFAULT_FRAGMENT_SIZE, FramingConfig

    versions = {"1.2": TlsVersion.TLS1_2, "1.3": TlsVersion.TLS1_3}
    if opts.tls is not None and opts.tls not in versions:
        raise ConfigError("--tls is 1.2 or 1.3")
    lo = versions[opts.tls] if opts.tls else TlsVersion.TLS1_2
    hi = versions[opts.tls] if opts.tls else TlsVersion.TLS1_3
    framing = FramingConfig(fragment_size=opts.fragment_size or DEFAULT_FRAGMENT_SIZE)
    return TlsConfig(
        certificate=opts.cert.read_bytes() if opts.cert else None,
        private_key=opts.key.read_bytes() if opts.key else None,
        ca_certificates=opts.ca.read_bytes() if opts.ca else None,
        verify_peer=opts.ca is not None,
        require_peer_certificate=True,
        min_version=lo,
        max_version=hi,
        domain_match=[opts.server_name] if opts.server_name else [],
        resumption=False,
        framing=framing,
    )


def _need_password(opts: ProbeOptions) -> str:
    if opts.password is None:
        raise ConfigError(f"--method {opts.method} needs --password")
    return opts.password


PeerBuilder = Callable[[ProbeOptions], list[MethodFactory[Peer]]]


def _gtc(opts: ProbeOptions) -> list[MethodFactory[Peer]]:
    password = _need_password(opts)
    return [gtc_peer(lambda prompt: password)]


def _mschapv2(opts: ProbeOptions) -> list[MethodFactory[Peer]]:
    from eapkit.methods.mschapv2 import mschapv2_peer

    return [mschapv2_peer(_need_password(opts))]


def _tls(opts: ProbeOptions) -> list[MethodFactory[Peer]]:
    from eapkit.methods.tls import tls_peer

    if opts.cert is None or opts.key is None:
        raise ConfigError("--method tls needs --cert and --key")
    return [tls_peer(tls_config(opts))]


BUILDERS: dict[str, PeerBuilder] = {"gtc": _gtc, "mschapv2": _mschapv2, "tls": _tls}


def register_builder(name: str, builder: PeerBuilder) -> None:
    BUILDERS[name] = builder


def build_peer_methods(opts: ProbeOptions) -> list[MethodFactory[Peer]]:
    for module in ("eapkit.methods.ttls", "eapkit.methods.peap"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        hook = getattr(mod, "register_probe_builders", None)
        if hook is not None:
            hook(register_builder)
    if opts.method not in METHODS:
        raise ConfigError(f"--method is one of {', '.join(METHODS)}")
    builder = BUILDERS.get(opts.method)
    if builder is None:
        raise ConfigError(f"method {opts.method} is not available in this eapkit yet")
    return builder(opts)


async def probe(opts: ProbeOptions) -> ProbeResult:
    methods = build_peer_methods(opts)
    outer = opts.anonymous_identity or opts.identity
    peer = PeerSession(methods, outer)
    async with RadiusClient(
        opts.server, opts.secret, timeout=opts.timeout, retries=opts.retries
    ) as client:
        return await authenticate(client, peer)


def report(result: ProbeResult) -> list[str]:
    """Lines for the terminal; keys are shown because checking them is the point of a
    probe (run it with test accounts)."""
    lines = []
    reply = result.reply
    code = _code_name(reply.code) if reply is not None else "no reply"
    lines.append(
        f"RADIUS reply: {code} after {result.rounds} rounds, {result.duration * 1000:.1f} ms"
    )
    if result.peer is not None:
        lines.append(
            f"EAP: {'SUCCESS' if result.peer.success else 'FAILURE'} "
            f"method={result.peer.method} reason={result.peer.reason}"
        )
        if result.peer.keys is not None:
            lines.append(f"MSK: {result.peer.keys.msk.hex()}")
            lines.append(f"EMSK: {result.peer.keys.emsk.hex()}")
            lines.append(f"Session-Id: {result.peer.keys.session_id.hex()}")
    if result.mppe is not None:
        lines.append(f"MS-MPPE-Recv-Key: {result.mppe.recv.hex()}")
        lines.append(f"MS-MPPE-Send-Key: {result.mppe.send.hex()}")
    if result.eap_key_name is not None:
        lines.append(f"EAP-Key-Name: {result.eap_key_name.hex()}")
    for name, value in result.reply_attributes.items():
        lines.append(f"{name}: {value}")
    match = result.keys_match
    if match is not None:
        lines.append(f"MPPE keys {'OK' if match else 'MISMATCH'}")
    lines.append("ACCEPT" if ok(result) else "REJECT")
    return lines


def _code_name(code: int) -> str:
    try:
        return Code(code).name.replace("_", "-").title()
    except ValueError:
        return str(code)


def ok(result: ProbeResult) -> bool:
    return result.accepted and result.keys_match is not False


def run_probe(opts: ProbeOptions) -> tuple[int, list[str]]:
    result = asyncio.run(probe(opts))
    return (0 if ok(result) else 1), report(result)
