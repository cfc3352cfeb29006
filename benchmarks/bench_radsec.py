"""RadSec (RADIUS over TLS, RFC 6614) against UDP in one ``eapkit serve``, and against
FreeRADIUS 3.2 as a RadSec server, under the same load in the same run (issue 17).

- RADIUS/DTLS (RFC 7360) rows too: the same load over one DTLS session.
- PAP (User-Name + User-Password) and EAP-MSCHAPv2 (``eapkit probe --load``'s
  conversations), 32 requests in flight; over RadSec all of them share **one
  long-lived TLS connection** (RADIUS/1.0 over TLS, the secret ``radsec``), over UDP one
  socket.  The same ``eapkit serve`` process answers both transports.
- The figure is the server's CPU time per accepted authentication (utime + stime of the
  server process over the run, ``/proc/PID/stat``): the load generator shares the 2
  cores, so rates alone would compare the machine, not the servers.  Rows compare
  RadSec with UDP (the issue asks that TLS not double the per-request cost) and
  eapkit's RadSec with FreeRADIUS's (``-f``, its thread pool), when FreeRADIUS is
  installed.  Both check the same stored password: PBKDF2-SHA256 at
  ``bench_serve.BENCH_ITERATIONS``, FreeRADIUS's as ``PBKDF2-Password`` with the NT hash
  as ``NT-Password`` (``bench_serve.bench_user``; docs/benchmarks.md, "The same stored
  password on every server").

Run: ``.venv/bin/python -m benchmarks.bench_radsec [--quick]`` (quick: under 30 s).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_serve import (
    PASSWORD,
    Measured,
    Pki,
    bench_user,
    make_pki,
    running,
    tree_cpu_seconds,
)
from eapkit.loadgen import LoadSpec, run_load
from eapkit.probe import ProbeOptions
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient, RadsecSettings
from eapkit.radius.packet import Attribute, Code, new_request_authenticator

EAPKIT_UDP = "eapkit serve over UDP"
EAPKIT_RADSEC = "eapkit serve over RadSec"
EAPKIT_DTLS = "eapkit serve over DTLS"
FREERADIUS_RADSEC = "FreeRADIUS 3.2 over RadSec"
IN_FLIGHT = 32


@dataclass(frozen=True)
class Target:
    """Where the load goes: a UDP server (``radsec`` None) or a RadSec one."""

    port: int
    secret: bytes
    radsec: RadsecSettings | None


def _target(p: Pki, port: int, secret: str, radsec: bool, dtls: bool = False) -> Target:
    if not radsec:
        return Target(port, secret.encode(), None)
    settings = RadsecSettings(cert=p.client_cert, key=p.client_key, ca=p.ca, dtls=dtls)
    return Target(port, b"radius/dtls" if dtls else b"radsec", settings)


async def _pap(target: Target, count: int) -> tuple[int, int, float, dict[str, int]]:
    """``count`` PAP Access-Requests, ``IN_FLIGHT`` at a time on one socket or TLS
    connection: (completed, accepted, wall seconds, failures)."""
    client = await RadiusClient(
        ("127.0.0.1", target.port), target.secret, timeout=5.0, radsec=target.radsec
    ).open()
    done = accepted = 0
    failures: dict[str, int] = {}

    async def one() -> None:
        nonlocal done, accepted
        while done < count:
            done += 1
            auth = new_request_authenticator()
            attrs: list[Attribute] = [
                (Attr.USER_NAME, b"alice"),
                (Attr.USER_PASSWORD, hide_password(PASSWORD.encode(), target.secret, auth)),
            ]
            try:
                reply, _ = await client.request(attrs, Code.ACCESS_REQUEST, authenticator=auth)
            except Exception as exc:  # a load run counts failures, it does not stop
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                continue
            if reply.code == Code.ACCESS_ACCEPT:
                accepted += 1
            else:
                failures[f"code {reply.code}"] = failures.get(f"code {reply.code}", 0) + 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))
    finally:
        client.close()
    return done, accepted, time.perf_counter() - started, failures


def _mschapv2(p: Pki, target: Target) -> ProbeOptions:
    radsec = target.radsec
    return ProbeOptions(
        server=("127.0.0.1", target.port),
        secret=target.secret,
        method="mschapv2",
        identity="alice",
        password=PASSWORD,
        timeout=5.0,
        radsec=radsec is not None,
        radsec_cert=radsec.cert if radsec else None,
        radsec_key=radsec.key if radsec else None,
        radsec_ca=radsec.ca if radsec else None,
        dtls=radsec is not None and radsec.dtls,
    )


def measure(server: str, method: str, pid: int, p: Pki, target: Target, count: int) -> Measured:
    """One run of ``method`` against ``target``, after a short warm-up."""
    if method == "PAP":
        asyncio.run(_pap(target, 16))
        before = tree_cpu_seconds(pid)
        done, accepted, wall, failures = asyncio.run(_pap(target, count))
        cpu = tree_cpu_seconds(pid) - before
        return Measured(server, method, done, accepted, wall, cpu, failures=failures)
    opts = _mschapv2(p, target)
    run_load(opts, LoadSpec(concurrency=4, count=16))
    before = tree_cpu_seconds(pid)
    report = run_load(opts, LoadSpec(concurrency=IN_FLIGHT, count=count))
    return Measured(
        server,
        method,
        report.completed,
        report.accepted,
        report.wall_seconds,
        tree_cpu_seconds(pid) - before,
        failures=report.failures,
    )


def _config(work: Path, p: Pki, port: int, dtls_port: int) -> Path:
    config = work / "radsec.toml"
    config.write_text(
        f"""
[radsec]
listen = ["127.0.0.1:{port}"]
dtls_listen = ["127.0.0.1:{dtls_port}"]
cert = "{p.server_cert}"
key = "{p.server_key}"
idle_timeout = 120

[[radsec.clients]]
name = "bench-nas"
ca = "{p.ca}"
"""
    )
    return config


@contextmanager
def _eapkit(work: Path, p: Pki) -> Iterator[tuple[int, Target, Target, Target]]:
    from tests.conftest import free_tcp_port, free_udp_port
    from tests.interop.tools import EapkitServe

    radsec_port, dtls_port = free_tcp_port(), free_udp_port()
    work.mkdir(parents=True, exist_ok=True)
    extra = ["--config", str(_config(work, p, radsec_port, dtls_port))]
    extra += ["--cert", str(p.server_cert), "--key", str(p.server_key), "--ca", str(p.ca)]
    extra += ["--log", os.devnull, "--methods", "mschapv2"]
    bench_user(work / "eapkit.db")
    serve = EapkitServe(work, users=(), extra=extra)
    with serve:
        assert serve.daemon is not None
        serve.daemon.wait_for("radsec listening on")
        udp = _target(p, serve.port, serve.secret, radsec=False)
        tls = _target(p, radsec_port, serve.secret, radsec=True)
        dtls = _target(p, dtls_port, serve.secret, radsec=True, dtls=True)
        yield serve.daemon.pid, udp, tls, dtls


def _freeradius(work: Path, p: Pki) -> Any:
    from tests.interop.radsec_tools import FreeRadiusRadsec

    work.mkdir(parents=True, exist_ok=True)
    return FreeRadiusRadsec(
        work,
        bench_user(work / "users.db"),
        ca_cert=p.ca,
        server_cert=p.server_cert,
        private_key=p.server_key,
        eap_types=("mschapv2",),
        default_eap_type="mschapv2",
        debug=False,
        settings={"max_requests": "65536"},
    )


def measure_all(quick: bool) -> list[Measured]:
    counts = {"PAP": 100, "EAP-MSCHAPv2": 1000} if quick else {"PAP": 1000, "EAP-MSCHAPv2": 3000}
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-radsec-") as tmp:
        work = Path(tmp)
        p = make_pki(work / "pki")
        with _eapkit(work / "serve", p) as (pid, udp, tls, dtls):
            for method, count in counts.items():
                results.append(measure(EAPKIT_UDP, method, pid, p, udp, count))
                results.append(measure(EAPKIT_RADSEC, method, pid, p, tls, count))
                results.append(measure(EAPKIT_DTLS, method, pid, p, dtls, count))
        freeradius = _freeradius(work / "freeradius", p)
        with running(freeradius) as started:  # None: FreeRADIUS is not installed
            if started is not None:
                target = _target(p, freeradius.radsec_port, "radsec", radsec=True)
                for method, count in counts.items():
                    results.append(measure(FREERADIUS_RADSEC, method, started[0], p, target, count))
    return results


def rows(results: list[Measured]) -> list[dict[str, Any]]:
    """eapkit over RadSec against eapkit over UDP, and against FreeRADIUS over RadSec."""
    by = {(m.server, m.method): m for m in results}
    out: list[dict[str, Any]] = []
    pairs = (
        (EAPKIT_RADSEC, EAPKIT_UDP, "RadSec/UDP"),
        (EAPKIT_RADSEC, FREERADIUS_RADSEC, "RadSec"),
        (EAPKIT_DTLS, EAPKIT_UDP, "DTLS/UDP"),
    )
    for method in dict.fromkeys(m.method for m in results):
        for ours_name, anchor_name, label in pairs:
            ours, anchor = by.get((ours_name, method)), by.get((anchor_name, method))
            if ours is None or anchor is None:
                continue
            out.append(
                {
                    "op": f"radsec {method}: server CPU per auth, one connection ({label})",
                    "eapkit_us": ours.cpu_us_per_auth,
                    "anchor": anchor.server,
                    "anchor_us": anchor.cpu_us_per_auth,
                    "floor_us": None,
                    "eapkit_rate": ours.rate,
                    "anchor_rate": anchor.rate,
                    "eapkit_failures": ours.failures,
                    "anchor_failures": anchor.failures,
                }
            )
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    return rows(measure_all(quick))


def main(argv: list[str]) -> int:
    results = measure_all(quick="--quick" in argv)
    for m in results:
        print(
            f"{m.server:28} {m.method:13} {m.cpu_us_per_auth:7.0f} µs CPU/auth"
            f" {m.rate:7.0f} auth/s  accepted {m.accepted}/{m.completed}"
            + (f"  failures {m.failures}" if m.failures else "")
        )
    for r in rows(results):
        # a quick run of a cheap server can measure 0 CPU ticks: no ratio then
        ratio = f"{r['eapkit_us'] / r['anchor_us']:6.2f}" if r["anchor_us"] else "   n/a"
        print(f"{r['op']:66} {ratio} x {r['anchor']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
