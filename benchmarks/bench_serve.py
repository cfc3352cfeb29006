"""Authentications per second of ``eapkit serve`` under concurrent load from
``eapkit probe --load``, next to hostapd's integrated RADIUS server (and FreeRADIUS 3.2
when the harness for it is available), under the same load on the same machine.

On 2 cores the load generator competes with the server, so the figure that compares
servers fairly is the **server's CPU time per authentication** (utime + stime of the
server process over the run, from ``/proc/PID/stat``), printed beside the rate.
hostapd's RADIUS server keeps at most 1,000 sessions for 5 s, so it caps near 200
authentications/s: that is reported as it is, not fought.

Run: ``.venv/bin/python -m benchmarks.bench_serve [--quick]``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eapkit import pki
from eapkit.errors import ConfigError
from eapkit.probe import LoadReport, ProbeOptions, build_peer_methods, load

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Measured:
    server: str
    method: str
    report: LoadReport
    server_cpu: float

    @property
    def cpu_us_per_auth(self) -> float:
        return 1e6 * self.server_cpu / max(self.report.completed, 1)


@dataclass
class Pki:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "alice.pem"

    @property
    def key(self) -> Path:
        return self.dir / "alice.key"


def make_pki(directory: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("bench CA", now=now)
    server = pki.make_server(ca, ["radius.bench.test"], now=now)
    client = pki.make_client(ca, "alice", now=now)
    for name, data in (
        ("ca.pem", ca.cert_pem),
        ("server.pem", server.chain_pem),
        ("server.key", server.key_pem),
        ("alice.pem", client.chain_pem),
        ("alice.key", client.key_pem),
    ):
        (directory / name).write_bytes(data)
    return Pki(directory)


METHODS: dict[str, dict[str, Any]] = {
    "EAP-MSCHAPv2": {"method": "mschapv2", "identity": "alice", "password": "wonderland"},
    "TTLS/PAP": {
        "method": "ttls-pap",
        "identity": "alice",
        "password": "wonderland",
        "tls": "1.2",
    },
    "EAP-TLS 1.3": {"method": "tls", "identity": "alice", "tls": "1.3"},
}


def _options(name: str, port: int, secret: str, p: Pki) -> ProbeOptions:
    spec = dict(METHODS[name])
    if spec["method"] in ("tls",) or spec["method"].startswith(("ttls", "peap")):
        spec.update(ca=p.ca)
    if spec["method"] == "tls":
        spec.update(cert=p.cert, key=p.key)
    return ProbeOptions(server=("127.0.0.1", port), secret=secret.encode(), timeout=5.0, **spec)


def measure(
    server: str,
    name: str,
    pid: int,
    port: int,
    secret: str,
    p: Pki,
    *,
    concurrency: int,
    count: int,
) -> Measured | None:
    opts = _options(name, port, secret, p)
    try:
        build_peer_methods(opts)
    except ConfigError:
        return None  # the method is not in this eapkit yet
    asyncio.run(load(opts, concurrency=2, count=4))  # warm up (and fail early)
    before = cpu_seconds(pid)
    report = asyncio.run(load(opts, concurrency=concurrency, count=count))
    return Measured(server, name, report, cpu_seconds(pid) - before)


@contextmanager
def servers(work: Path, p: Pki) -> Iterator[list[tuple[str, int, int, str]]]:
    """(name, pid, port, secret) of each server under test, started and stopped here."""
    from tests.interop.tools import EapkitServe, HostapdRadius

    started: list[tuple[str, int, int, str]] = []
    users = '"alice" MSCHAPV2,TTLS,TLS "wonderland"\n"alice" TTLS-PAP "wonderland" [2]\n'
    serve = EapkitServe(
        work / "serve",
        extra=[
            "--cert",
            str(p.dir / "server.pem"),
            "--key",
            str(p.dir / "server.key"),
            "--ca",
            str(p.ca),
            "--log",
            os.devnull,
        ],
    )
    hostapd = HostapdRadius(
        work / "hostapd",
        users,
        ca_cert=p.ca,
        server_cert=p.dir / "server.pem",
        private_key=p.dir / "server.key",
    )
    with serve, hostapd:
        assert serve.daemon is not None and hostapd.daemon is not None
        started.append(("eapkit serve", serve.daemon.pid, serve.port, serve.secret))
        started.append(("hostapd 2.10", hostapd.daemon.pid, hostapd.port, hostapd.secret))
        yield started


def run(quick: bool = False) -> list[dict[str, Any]]:
    count = 300 if quick else 2000
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        p = make_pki(work)
        with servers(work, p) as running:
            results: dict[tuple[str, str], Measured] = {}
            for name in METHODS:
                for server, pid, port, secret in running:
                    m = measure(server, name, pid, port, secret, p, concurrency=32, count=count)
                    if m is not None:
                        results[(server, name)] = m
    for name in METHODS:
        ours = results.get(("eapkit serve", name))
        if ours is None:
            continue
        for (server, method), other in results.items():
            if method != name or server == "eapkit serve":
                continue
            rows.append(
                {
                    "op": f"serve {name}: server CPU per auth",
                    "eapkit_us": ours.cpu_us_per_auth,
                    "anchor": server,
                    "anchor_us": other.cpu_us_per_auth,
                    "floor_us": None,
                    "eapkit_rate": ours.report.rate,
                    "anchor_rate": other.report.rate,
                    "eapkit_failures": ours.report.failures,
                    "anchor_failures": other.report.failures,
                }
            )
    return rows


def main(argv: list[str]) -> int:
    rows = run(quick="--quick" in argv)
    head = f"{'operation':44} {'eapkit µs':>10} {'auth/s':>8}  {'anchor':14}"
    print(f"{head} {'µs':>10} {'auth/s':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['op']:44} {r['eapkit_us']:10.0f} {r['eapkit_rate']:8.0f}  {r['anchor']:14}"
            f" {r['anchor_us']:10.0f} {r['anchor_rate']:8.0f}"
            f" {r['eapkit_us'] / r['anchor_us']:6.2f}"
        )
        if r["eapkit_failures"] or r["anchor_failures"]:
            print(
                f"    failures: eapkit {r['eapkit_failures']}  {r['anchor']} {r['anchor_failures']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
