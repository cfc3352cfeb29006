"""``eapkit probe``: a NAS-side RADIUS client that runs eapkit's peer methods, like
``eapol_test``, against any RADIUS server.

It prints the verdict, the MSK the peer derived and the MPPE keys the server sent, checks
that they agree (MS-MPPE-Recv-Key = MSK[0:32], MS-MPPE-Send-Key = MSK[32:64], RFC 3579
§4.2 / RFC 2548) and that EAP-Key-Name equals the Session-Id, and exits 0 only on an
Access-Accept with matching keys (or, for a method that derives none, on an Accept).

``--reauth N`` runs N more authentications after the first, over the same RADIUS
socket, as a supplicant does when its session timer expires (``eapol_test -r N``).
Each one offers the TLS session of the last successful one (a TLS 1.2 session id or
ticket, a TLS 1.3 ticket: RFC 5216 §2.1.2, RFC 9190 §2.1.2/§5.7), and the report says
per authentication whether a session was offered, whether the server resumed it and
whether phase 2 ran (a server may skip it on a resumed TTLS session, RFC 5281 §7.5, or
PEAP session, [MS-PEAP] §3.1.5.10 "fast reconnect").  The probe exits 0 only when every
authentication was accepted with matching keys.

``--radsec`` runs any of this over RADIUS over TLS (RFC 6614) instead of UDP: the probe
presents ``--radsec-cert``/``--radsec-key``, verifies the server against
``--radsec-ca`` and uses the shared secret ``radsec`` (RFC 6614 §2.3) unless told
otherwise; ``--alpn`` offers ``radius/1.0`` or insists on ``radius/1.1`` (RFC 9765:
no MD5, no shared secret, a Token per request; no fallback to 1.0, §3.3).
``--radsec --dtls`` runs it over RADIUS/DTLS (RFC 7360, UDP) with the same certificate
files and the shared secret ``radius/dtls`` (§2.3); RADIUS retransmits as over UDP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from eapkit.catalog import PeerContext, peer_method
from eapkit.errors import ConfigError
from eapkit.methods.base import MethodFactory, Peer
from eapkit.radius.nas import (
    ProbeResult,
    RadiusClient,
    RadsecSettings,
    authenticate,
)
from eapkit.radius.packet import Code
from eapkit.session import PeerSession

if TYPE_CHECKING:
    from eapkit.tlsio.config import TlsConfig
    from eapkit.tlsio.engine import SessionCache

__all__ = [
    "Authentication",
    "ProbeOptions",
    "build_peer_methods",
    "peer_context",
    "probe",
    "radius_client",
    "reauthenticate",
    "run_probe",
    "tls_config",
]


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
    tls_profile: str = "default"
    peap_version: int = 0
    peap_label: int = 0
    fragment_size: int | None = None
    timeout: float = 3.0
    retries: int = 3
    server_name: str | None = None
    otp: str | None = None
    reauth: int = 0
    """More authentications after the first, each offering the last TLS session."""
    radsec: bool = False
    """RADIUS over TLS (RFC 6614) instead of UDP."""
    radsec_cert: Path | None = None
    radsec_key: Path | None = None
    radsec_ca: Path | None = None
    radsec_server_name: str | None = None
    dtls: bool = False  # with radsec: RADIUS over DTLS (RFC 7360), UDP
    alpn: str | None = None
    """The ALPN name to offer on the RadSec connection (RFC 9765 §3.1)."""
    machine_identity: str | None = None
    """TEAP: the machine's identity, with ``machine_password`` or ``machine_cert``/``_key``."""
    machine_password: str | None = None
    machine_cert: Path | None = None
    machine_key: Path | None = None
    teap_compat: str = "rfc9930"


def radsec_settings(opts: ProbeOptions) -> RadsecSettings | None:
    """The RadSec connection's TLS settings, None for UDP; RadSec authenticates both
    ends by certificate (RFC 6614 §2.3), so the three files are required."""
    if not opts.radsec:
        if opts.alpn or opts.radsec_cert or opts.radsec_key or opts.radsec_ca or opts.dtls:
            raise ConfigError("--alpn, --dtls and --radsec-cert/-key/-ca need --radsec")
        return None
    if opts.radsec_cert is None or opts.radsec_key is None or opts.radsec_ca is None:
        raise ConfigError("--radsec needs --radsec-cert, --radsec-key and --radsec-ca")
    if opts.alpn not in (None, "radius/1.0", "radius/1.1"):
        raise ConfigError("--alpn is radius/1.0 or radius/1.1")
    if opts.dtls and opts.alpn == "radius/1.1":
        raise ConfigError("--alpn radius/1.1 needs TLS 1.3: not over --dtls")
    return RadsecSettings(
        cert=opts.radsec_cert,
        key=opts.radsec_key,
        ca=opts.radsec_ca,
        server_name=opts.radsec_server_name,
        alpn=(opts.alpn,) if opts.alpn and not opts.dtls else (),
        dtls=opts.dtls,
    )


def radius_client(opts: ProbeOptions) -> RadiusClient:
    """The NAS side the options ask for: UDP, or one RadSec connection."""
    return RadiusClient(
        opts.server,
        opts.secret,
        timeout=opts.timeout,
        retries=opts.retries,
        radsec=radsec_settings(opts),
    )


def tls_config(opts: ProbeOptions) -> TlsConfig:
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
        profile=opts.tls_profile,
        domain_match=[opts.server_name] if opts.server_name else [],
        resumption=opts.reauth > 0,
        framing=framing,
    )


def peer_context(opts: ProbeOptions, sessions: SessionCache | None = None) -> PeerContext:
    """What the catalog's peer builder of ``--method`` gets; the TLS settings are read
    only for a TLS-based method; ``sessions`` keeps its TLS sessions (``--reauth``)."""
    entry, inner = peer_method(opts.method)
    return PeerContext(
        method=opts.method,
        identity=opts.identity,
        password=opts.password,
        otp=opts.otp,
        tls=tls_config(opts) if entry.tls else None,
        inner=inner,
        peap_version=opts.peap_version,
        peap_label=opts.peap_label,
        sessions=sessions,
        machine_identity=opts.machine_identity,
        machine_password=opts.machine_password,
        machine_tls=machine_tls_config(opts),
        teap_compat=opts.teap_compat,
    )


def machine_tls_config(opts: ProbeOptions) -> TlsConfig | None:
    """TEAP's machine certificate (``--machine-cert``/``--machine-key``): the peer's TLS
    settings with the machine's certificate instead of the user's."""
    if (opts.machine_cert is None) != (opts.machine_key is None):
        raise ConfigError("--machine-cert and --machine-key go together")
    if opts.machine_cert is None or opts.machine_key is None:
        return None
    base = tls_config(opts)
    return replace(
        base,
        certificate=opts.machine_cert.read_bytes(),
        private_key=opts.machine_key.read_bytes(),
        resumption=False,
    )


def build_peer_methods(
    opts: ProbeOptions, sessions: SessionCache | None = None
) -> list[MethodFactory[Peer]]:
    entry, _ = peer_method(opts.method)
    return entry.peer(peer_context(opts, sessions))


async def probe(opts: ProbeOptions) -> ProbeResult:
    methods = build_peer_methods(opts)
    outer = opts.anonymous_identity or opts.identity
    peer = PeerSession(methods, outer)
    async with radius_client(opts) as client:
        return await authenticate(client, peer)


@dataclass
class Authentication:
    """One authentication of a ``--reauth`` run: its result, and whether the peer had a
    TLS session to offer (``offered``; None for a method without TLS)."""

    result: ProbeResult
    offered: bool | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def resumed(self) -> bool | None:
        """Whether the TLS handshake resumed the offered session (None: no TLS)."""
        value = self.attributes.get("tls_resumed")
        return None if value is None else value == "yes"

    @property
    def phase2(self) -> str | None:
        """``ran`` or ``skipped`` for a tunnel method that succeeded, else None."""
        inner = self.attributes.get("inner_method")
        if inner is None:
            return None
        return "skipped" if inner == "none" else "ran"

    def line(self) -> str:
        tls = "-" if self.offered is None else ("yes" if self.offered else "no")
        resumed = "-" if self.resumed is None else ("yes" if self.resumed else "no")
        return f"TLS session offered={tls} resumed={resumed} phase2={self.phase2 or '-'}"


async def reauthenticate(
    opts: ProbeOptions, between: Callable[[Authentication], None] | None = None
) -> list[Authentication]:
    """The first authentication and ``opts.reauth`` more over one RADIUS socket, the
    peer methods built once so that each offers the session the last success left in
    their cache (a failed one leaves none: RFC 5216 §2.1.2).  ``between`` is called
    after each authentication but the last (a test changes the server there)."""
    from eapkit.tlsio.engine import SessionCache

    entry, _ = peer_method(opts.method)
    sessions = SessionCache() if entry.tls and opts.reauth > 0 else None
    methods = build_peer_methods(opts, sessions)
    outer = opts.anonymous_identity or opts.identity
    done: list[Authentication] = []
    async with radius_client(opts) as client:
        for n in range(1 + max(0, opts.reauth)):
            if n and between is not None:
                between(done[-1])
            offered = len(sessions) > 0 if sessions is not None else None
            result = await authenticate(client, PeerSession(methods, outer))
            if sessions is not None and not result.accepted:
                # RFC 5216 §2.1.2: a session that failed is not resumed.  A TTLS peer
                # keeps it when it sends its last AVPs, before the server's verdict.
                sessions.clear()
            outcome = result.peer.outcome if result.peer is not None else None
            attrs = dict(outcome.attributes) if outcome is not None and outcome.success else {}
            done.append(Authentication(result, offered if entry.tls else None, attrs))
    return done


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
        outcome = result.peer.outcome
        for proof in outcome.inner if outcome is not None else ():  # TEAP's inner methods
            state = "ok" if proof.success else "failed"
            lines.append(f"inner: {proof.identity_type} {proof.identity} {proof.method} {state}")
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
    if opts.reauth < 0:
        raise ConfigError("--reauth is 0 or more")
    if opts.reauth == 0:
        result = asyncio.run(probe(opts))
        return (0 if ok(result) else 1), report(result)
    runs = asyncio.run(reauthenticate(opts))
    return (0 if all(ok(a.result) for a in runs) else 1), reauth_report(runs)


def reauth_report(runs: list[Authentication]) -> list[str]:
    """Each authentication's report under a heading, its TLS session line, then a
    summary; the last line is ACCEPT only when every authentication was."""
    lines: list[str] = []
    for n, run in enumerate(runs, 1):
        lines.append(f"== authentication {n} of {len(runs)} ==")
        body = report(run.result)
        lines += [*body[:-1], run.line(), body[-1]]
    accepted = sum(ok(a.result) for a in runs)
    resumed = sum(bool(a.resumed) for a in runs)
    skipped = sum(a.phase2 == "skipped" for a in runs)
    lines.append(
        f"reauthentication: {accepted} of {len(runs)} accepted, {resumed} resumed,"
        f" phase 2 skipped in {skipped}"
    )
    lines.append("ACCEPT" if accepted == len(runs) else "REJECT")
    return lines
