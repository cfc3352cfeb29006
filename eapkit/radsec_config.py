"""The ``[radsec]`` table of ``eapkit serve`` and what serve builds from it: the
settings of :mod:`eapkit.radius.radsec`, the core behind that listener, its CRLs, and
:func:`serve_listeners`, which runs the UDP and RadSec listeners in one process with one
decision log (each line says ``transport`` and ``radius_version``), and
:class:`ClientsFile`, which reloads the ``[[radsec.clients]]`` entries from the TOML
file while serve runs."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from eapkit.crl_reload import CrlFiles
from eapkit.errors import ConfigError
from eapkit.radius import radsec, udp
from eapkit.radius.address import parse_hostport
from eapkit.radius.clients import Client, ClientTable
from eapkit.radius.core import RadiusCore
from eapkit.radius.radsec import RadsecClient, RadsecSettings

__all__ = [
    "ClientsFile",
    "build_radsec_core",
    "radsec_beside",
    "radsec_clients",
    "radsec_crls",
    "radsec_settings",
    "serve_listeners",
]


def _text(table: dict[str, Any], key: str) -> str | None:
    return str(table[key]) if key in table else None


def _paths(value: str | list[str], p: Callable[[str], Path]) -> list[Path]:
    return [p(x) for x in ([value] if isinstance(value, str) else value)]


def radsec_settings(table: dict[str, Any], p: Callable[[str], Path]) -> RadsecSettings:
    """The ``[radsec]`` table (eapkit.radius.radsec); ``p`` resolves paths.  Keys::

    [radsec]
    listen = ["127.0.0.1:2083"]         # RFC 6614 §2.1: TCP 2083
    dtls_listen = []                    # RFC 7360 RADIUS/DTLS: e.g. ["127.0.0.1:2083"]
    cert = "radsec.pem"                 # the server's chain, leaf first
    key = "radsec.key"
    ca = []                             # more CAs to trust (each client entry's is)
    crl = ["nas-ca.crl"]                # checked for client certificates, reloaded
    min_version = "1.2"                 # or "1.3"
    radius_1_1 = "allow"                # RFC 9765 by ALPN: "forbid", "allow", "require"
    idle_timeout = 120
    handshake_timeout = 10
    max_connections = 1000
    max_connections_per_client = 64
    tls13_tickets = false               # TLS 1.3 resumption (off: docs/radsec.md)
    session_lifetime = 3600             # the ticket key and session cache rotate

    [[radsec.clients]]
    name = "gw1"                        # the client in policy and the decision log
    ca = "nas-ca.pem"                   # the CA that issued its certificate
    san = "gw1.vpn.example"             # a pattern for a dNSName SAN, and/or
    subject = "gw1*"                    # a pattern for the subject CN
    second_factor = "enforce"
    bind_rounds = true
    """
    settings = RadsecSettings()
    if "listen" in table:
        listen = table["listen"]
        settings.listen = [
            parse_hostport(x) for x in ([listen] if isinstance(listen, str) else listen)
        ]
    if "dtls_listen" in table:  # RFC 7360: RADIUS/DTLS, UDP 2083
        dtls = table["dtls_listen"]
        settings.dtls_listen = [
            parse_hostport(x) for x in ([dtls] if isinstance(dtls, str) else dtls)
        ]
    if "cert" not in table or "key" not in table:
        raise ConfigError("[radsec] needs cert and key (the server's certificate)")
    settings.cert, settings.key = p(table["cert"]), p(table["key"])
    settings.ca = _paths(table.get("ca", []), p)
    settings.crl = _paths(table.get("crl", []), p)
    settings.min_version = str(table.get("min_version", settings.min_version))
    settings.radius_1_1 = str(table.get("radius_1_1", settings.radius_1_1))
    if settings.radius_1_1 not in ("forbid", "allow", "require"):
        raise ConfigError('[radsec] radius_1_1 is "forbid", "allow" or "require"')
    settings.tls13_tickets = bool(table.get("tls13_tickets", False))
    settings.session_lifetime = float(table.get("session_lifetime", settings.session_lifetime))
    if settings.session_lifetime <= 0:
        raise ConfigError("[radsec] session_lifetime is a positive number of seconds")
    settings.idle_timeout = float(table.get("idle_timeout", settings.idle_timeout))
    settings.handshake_timeout = float(table.get("handshake_timeout", 10.0))
    settings.max_connections = int(table.get("max_connections", settings.max_connections))
    settings.max_connections_per_client = int(
        table.get("max_connections_per_client", settings.max_connections_per_client)
    )
    for i, nas in enumerate(table.get("clients", []), 1):
        if nas.get("second_factor", "enforce") not in ("enforce", "nas"):
            raise ConfigError('[[radsec.clients]] second_factor is "enforce" or "nas"')
        settings.clients.append(
            RadsecClient(
                str(nas.get("name") or nas.get("san") or nas.get("subject") or f"radsec-{i}"),
                p(nas["ca"]),
                subject=_text(nas, "subject"),
                san=_text(nas, "san"),
                second_factor=str(nas.get("second_factor", "enforce")),
                bind_rounds=bool(nas.get("bind_rounds", True)),
            )
        )
    if not settings.clients:
        raise ConfigError("[radsec] has no [[radsec.clients]]: no NAS could connect")
    if len({c.name for c in settings.clients}) != len(settings.clients):
        raise ConfigError("two [[radsec.clients]] entries have the same name")
    return settings


class ClientsFile:
    """The ``[[radsec.clients]]`` of a running serve's TOML file, a
    :class:`~eapkit.radius.radsec.ClientSource`: :meth:`poll` looks at the file's mtime,
    size and inode at most once per ``interval`` seconds (:meth:`force`: at the next
    poll, ``SIGHUP``) and, when they changed, parses its ``[radsec]`` table again.  A
    file that cannot be read or parsed keeps the entries in force and is reported once
    to ``warn``."""

    def __init__(
        self,
        path: Path,
        clients: list[RadsecClient],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.path = path
        self.clients = list(clients)
        self.interval = interval
        self.clock = clock
        self.warn = warn
        self.generation = 0
        self._signature = self._stat()
        self._next = clock() + interval
        self._reported: tuple[int, int, int] | None = None

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def force(self) -> None:
        self._next = 0.0

    def poll(self) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        signature = self._stat()
        if signature == self._signature:
            return
        base = self.path.parent

        def p(value: str) -> Path:
            return Path(value) if Path(value).is_absolute() else base / value

        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            clients = radsec_settings(dict(data["radsec"]), p).clients
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            if self._reported != signature:
                self._reported = signature
                self.warn(f"{self.path}: [[radsec.clients]] not reloaded, the previous stay: {exc}")
            return
        self._signature = signature
        if clients != self.clients:
            self.clients = clients
            self.generation += 1


def radsec_clients(settings: RadsecSettings | None) -> list[Client]:
    """The core's view of the ``[[radsec.clients]]`` entries."""
    return [c.client() for c in settings.clients] if settings is not None else []


def build_radsec_core(
    core: RadiusCore, version: str = "1.0", transport: str = "radsec"
) -> RadiusCore:
    """The core behind the RadSec listener: the UDP core's conversations, checks,
    approval gate and settings (light methods, the duplicate cache's size and lifetime),
    its own duplicate cache (keyed per connection), and decision lines that say which
    transport and RADIUS version they came through (one log, one stream).  The UDP
    core's lines say ``"transport": "udp"`` from then on."""
    core.decisions.stamp = {**core.decisions.stamp, "transport": "udp", "radius_version": "1.0"}
    return RadiusCore(
        ClientTable([]),
        core.eap,
        plain=core.plain,
        decisions=core.decisions.stamped(transport=transport, radius_version=version),
        # the TLS session protects the hop: PAP needs no Message-Authenticator (EAP and
        # Status-Server still carry one, RFC 3579 §3.2, RFC 5997 §3)
        require_message_authenticator=False,
        approval=core.approval,
        accounting_ports=frozenset(),
        duplicate_ttl=core.duplicate_ttl,
        duplicate_cap=core.duplicate_cap,
        cpu_clock=core.cpu_clock,
        # the same local backends: EAP-MSCHAPv2 and EAP-TLS rounds run on the event loop
        # over TLS and DTLS as over UDP (without it every such round went to the pool,
        # 1.5-2.3x UDP's CPU per login in benchmarks/bench_radsec)
        light_methods=core.light_methods,
        unknown_log_interval=core.unknown_log_interval,
    )


def radsec_crls(
    settings: RadsecSettings, warn: Callable[[str], None], sources: list[CrlFiles]
) -> CrlFiles | None:
    """The ``[radsec] crl`` files, reloaded when they change (and, once in ``sources``,
    on SIGHUP)."""
    if not settings.crl:
        return None
    crls = CrlFiles(settings.crl, warn=warn)
    sources.append(crls)
    return crls


async def serve_listeners(
    core: RadiusCore,
    listen: list[tuple[str, int]],
    settings: RadsecSettings | None,
    *,
    ready: Callable[[list[tuple[str, int]]], None],
    crl_sources: list[CrlFiles] | None = None,
    config_file: Path | None = None,
    warn: Callable[[str], None] = lambda msg: print(f"eapkit: {msg}", file=sys.stderr),
) -> None:
    """UDP on ``listen`` and, with ``settings``, RadSec beside it, until SIGTERM/SIGINT;
    one failing listener stops the other.  The RadSec CRLs join ``crl_sources`` (what
    SIGHUP reloads); with ``config_file`` (the TOML ``settings`` came from) the
    ``[[radsec.clients]]`` are reloaded from it when it changes and on SIGHUP."""
    stop = asyncio.Event()

    async def guarded(job: Any) -> None:
        try:
            await job
        finally:
            stop.set()

    jobs = [guarded(udp.serve(core, listen, ready=ready, stop=stop))]
    if settings is not None:
        jobs.append(guarded(_radsec(core, settings, stop, crl_sources, config_file, warn)))
    await asyncio.gather(*jobs)


def _radsec(
    core: RadiusCore,
    settings: RadsecSettings,
    stop: asyncio.Event,
    crl_sources: list[CrlFiles] | None,
    config_file: Path | None,
    warn: Callable[[str], None],
) -> Coroutine[Any, Any, None]:
    """The RadSec listener beside ``core``'s UDP one (its cores, CRLs, clients file)."""

    def radsec_ready(bound: list[tuple[str, int]]) -> None:
        addrs = ", ".join(f"{h}:{p}" for h, p in bound)
        print(f"eapkit serve: radsec listening on {addrs}", file=sys.stderr, flush=True)

    crls = radsec_crls(settings, warn, crl_sources if crl_sources is not None else [])
    clients = (
        ClientsFile(config_file, settings.clients, warn=warn) if config_file is not None else None
    )
    tls = radsec.serve(
        build_radsec_core(core),
        settings,
        crls=crls,
        core_1_1=build_radsec_core(core, "1.1"),
        clients=clients,
        ready=radsec_ready,
        stop=stop,
    )
    if not settings.dtls_listen:
        return tls

    def dtls_ready(bound: list[tuple[str, int]]) -> None:
        addrs = ", ".join(f"{h}:{p}" for h, p in bound)
        print(f"eapkit serve: radius/dtls listening on {addrs}", file=sys.stderr, flush=True)

    async def both() -> None:
        from eapkit.radius import dtls  # pyOpenSSL's DTLS, only when asked for

        udp = dtls.serve(
            build_radsec_core(core, transport="dtls"),
            settings,
            crls=crls,
            clients=clients,
            ready=dtls_ready,
            stop=stop,
        )
        try:
            await asyncio.gather(tls, udp)
        finally:
            stop.set()

    return both()


async def radsec_beside(
    core: RadiusCore,
    front: Awaitable[Any],
    settings: RadsecSettings,
    *,
    config_file: Path | None = None,
    warn: Callable[[str], None] = lambda msg: print(f"eapkit: {msg}", file=sys.stderr),
) -> None:
    """``--workers N``: worker 0 runs the RadSec listener beside its UDP ``front`` (the
    other workers serve UDP only).  SIGTERM stops the listener, which ends the front
    too; either one ending ends the other."""
    stop = asyncio.Event()
    jobs = [
        asyncio.ensure_future(front),
        asyncio.ensure_future(_radsec(core, settings, stop, None, config_file, warn)),
    ]
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        for job in jobs:
            if job is not jobs[1]:
                job.cancel()
        results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result
