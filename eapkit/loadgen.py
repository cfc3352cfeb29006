"""A load generator that can out-run the server (``eapkit probe --load/--rate``).

Two ways to offer load, as radperf and wrk2 do:

- **closed loop** (``--load N``): N conversations at once, each starting when the last
  one ended; the rate is whatever the server allows;
- **open loop** (``--rate R``): a new conversation every 1/R seconds whatever happened
  to the earlier ones, so a slow server meets a growing queue instead of a politely
  waiting client.  Latency is measured from the moment a conversation was *due*, not
  from when it started, so a generator that fell behind cannot hide the delay
  (coordinated omission).  At most ``max_outstanding`` conversations are in flight;
  an arrival past that is counted as ``overload``, not sent.

``processes`` splits either load over that many processes (each its own event loop,
sockets and share of the rate), so one Python process is no longer the bottleneck;
their reports are merged.

Requests are EAP conversations of any probe method, or PAP Access-Requests (RFC 2865
§5.2) whose credentials come from a :data:`Credentials` source, for example a list of
users with their next one-time codes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection

from eapkit.errors import ConfigError
from eapkit.probe import ProbeOptions, build_peer_methods, ok, radius_client
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient, RadsecError, authenticate
from eapkit.radius.packet import Code, new_request_authenticator
from eapkit.session import PeerSession

__all__ = ["Credentials", "LoadReport", "LoadSpec", "rotating", "run_load"]

# (User-Name, User-Password) for the n-th PAP request of this process.
Credentials = Callable[[int], tuple[str, str]]

TIMEOUTS = ("RadiusTimeout", "TimeoutError", "no_reply")


@dataclass
class LoadReport:
    """What a load run measured (merged over processes)."""

    completed: int
    accepted: int
    failures: dict[str, int]
    wall_seconds: float
    client_cpu_seconds: float
    latencies_ms: list[float]
    offered_rate: float | None = None  # the open loop's target, None for a closed loop
    processes: int = 1

    @property
    def rate(self) -> float:
        return self.completed / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def timeouts(self) -> int:
        return sum(self.failures.get(k, 0) for k in TIMEOUTS)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of latency (nearest rank), in ms."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def lines(self) -> list[str]:
        offered = f" (offered {self.offered_rate:.1f}/s)" if self.offered_rate is not None else ""
        return [
            f"completed {self.completed} ({self.accepted} accepted) in {self.wall_seconds:.2f} s:"
            f" {self.rate:.1f} authentications/s{offered}",
            f"latency ms: p50 {self.percentile(50):.1f}  p90 {self.percentile(90):.1f}"
            f"  p99 {self.percentile(99):.1f}  p99.9 {self.percentile(99.9):.1f}"
            f"  max {max(self.latencies_ms, default=0):.1f}",
            f"timeouts: {self.timeouts}",
            f"load generator CPU: {self.client_cpu_seconds:.2f} s in {self.processes}"
            f" process(es) ({100 * self.client_cpu_seconds / max(self.wall_seconds, 1e-9):.0f}%"
            " of one core)",
            "failures: "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.failures.items())) or "none"),
        ]

    @staticmethod
    def merge(parts: Sequence[LoadReport]) -> LoadReport:
        failures: dict[str, int] = {}
        for p in parts:
            for k, v in p.failures.items():
                failures[k] = failures.get(k, 0) + v
        rates = [p.offered_rate for p in parts if p.offered_rate is not None]
        return LoadReport(
            completed=sum(p.completed for p in parts),
            accepted=sum(p.accepted for p in parts),
            failures=failures,
            wall_seconds=max((p.wall_seconds for p in parts), default=0.0),
            client_cpu_seconds=sum(p.client_cpu_seconds for p in parts),
            latencies_ms=[x for p in parts for x in p.latencies_ms],
            offered_rate=sum(rates) if rates else None,
            processes=len(parts),
        )


@dataclass(frozen=True)
class LoadSpec:
    """What to offer: ``concurrency`` (closed loop) or ``rate`` per second (open
    loop), until ``count`` conversations were due or ``duration`` seconds passed;
    ``credentials`` makes the requests PAP instead of the probe's EAP method."""

    concurrency: int = 16
    rate: float | None = None
    count: int | None = None
    duration: float | None = None
    processes: int = 1
    max_outstanding: int = 1024
    credentials: Credentials | None = field(default=None, compare=False)
    first: int = 0  # this process's requests are first, first + stride, ... (credentials)
    stride: int = 1

    def check(self) -> None:
        if self.count is None and self.duration is None:
            raise ConfigError("give --count or --duration")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate must be above 0")
        if self.concurrency < 1 or self.processes < 1 or self.max_outstanding < 1:
            raise ConfigError("--load, --processes and the outstanding limit are 1 or more")

    def share(self, i: int) -> LoadSpec:
        """Process ``i``'s part of the load (counts and rates split evenly)."""
        n = self.processes
        count = None if self.count is None else self.count // n + (i < self.count % n)
        return replace(
            self,
            concurrency=max(1, self.concurrency // n + (i < self.concurrency % n)),
            rate=None if self.rate is None else self.rate / n,
            count=count,
            processes=1,
            max_outstanding=max(1, self.max_outstanding // n),
            first=i,
            stride=n,
        )


class _Run:
    """One process's load: its sockets, counters and the request it repeats."""

    def __init__(self, opts: ProbeOptions, spec: LoadSpec, clients: list[RadiusClient]) -> None:
        self.opts = opts
        self.spec = spec
        self.clients = clients
        self.failures: dict[str, int] = {}
        self.latencies: list[float] = []
        self.started = 0
        self.accepted = 0
        self.overload = 0
        self._eap = build_peer_methods(opts) if spec.credentials is None else None
        self._outer = opts.anonymous_identity or opts.identity

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    async def one(self, n: int, due: float) -> None:
        """Conversation ``n``, due at ``due`` (perf_counter): latency counts from then.
        A RadsecError (the connection is gone) is the caller's to handle."""
        client = self.clients[n % len(self.clients)]
        try:
            if self.spec.credentials is not None:
                user, password = self.spec.credentials(self.spec.first + n * self.spec.stride)
                accepted = await self._pap(client, user, password)
                why = "reject"
            else:
                assert self._eap is not None
                result = await authenticate(client, PeerSession(self._eap, self._outer))
                accepted = ok(result)
                why = result.peer.reason if result.peer else "no_reply"
        except RadsecError:
            raise
        except Exception as exc:  # a load run counts failures, it does not stop
            self.fail(type(exc).__name__)
            return
        self.latencies.append((time.perf_counter() - due) * 1000)
        if accepted:
            self.accepted += 1
        else:
            self.fail(why)

    async def _pap(self, client: RadiusClient, user: str, password: str) -> bool:
        authenticator = new_request_authenticator()
        hidden = hide_password(password.encode(), self.opts.secret, authenticator)
        attrs = [(Attr.USER_NAME, user.encode()), (Attr.USER_PASSWORD, hidden)]
        reply, _ = await client.request(attrs, authenticator=authenticator)
        return reply.code == Code.ACCESS_ACCEPT


def _more(spec: LoadSpec, started: int, deadline: float | None) -> bool:
    if spec.count is not None and started >= spec.count:
        return False
    return deadline is None or time.perf_counter() < deadline


async def _closed(run: _Run, deadline: float | None) -> None:
    async def worker() -> None:
        while _more(run.spec, run.started, deadline):
            n = run.started
            run.started += 1
            try:
                await run.one(n, time.perf_counter())
            except RadsecError:  # this connection is gone: counting on would spin
                run.fail("RadsecError")
                return

    await asyncio.gather(*(worker() for _ in range(run.spec.concurrency)))


async def _open(run: _Run, deadline: float | None) -> None:
    assert run.spec.rate is not None
    interval = 1.0 / run.spec.rate
    due = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    while _more(run.spec, run.started, deadline):
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        n = run.started
        run.started += 1
        if len(pending) >= run.spec.max_outstanding:
            run.overload += 1
            run.fail("overload")
        else:
            task = asyncio.ensure_future(_guarded(run, n, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        due += interval
    if pending:
        await asyncio.gather(*pending)


async def _guarded(run: _Run, n: int, due: float) -> None:
    try:
        await run.one(n, due)
    except RadsecError:
        run.fail("RadsecError")


async def _load(opts: ProbeOptions, spec: LoadSpec) -> LoadReport:
    in_flight = spec.concurrency if spec.rate is None else spec.max_outstanding
    sockets = max(1, (in_flight + 127) // 128)  # as a NAS shares its sockets
    clients = [await radius_client(opts).open() for _ in range(sockets)]
    run = _Run(opts, spec, clients)
    started = time.perf_counter()
    cpu = time.process_time()
    deadline = started + spec.duration if spec.duration is not None else None
    try:
        await (_closed(run, deadline) if spec.rate is None else _open(run, deadline))
    finally:
        for client in clients:
            client.close()
    return LoadReport(
        completed=run.started - run.overload,
        accepted=run.accepted,
        failures=run.failures,
        wall_seconds=time.perf_counter() - started,
        client_cpu_seconds=time.process_time() - cpu,
        latencies_ms=run.latencies,
        offered_rate=spec.rate,
    )


def _one_process(opts: ProbeOptions, spec: LoadSpec) -> LoadReport:
    return asyncio.run(_load(opts, spec))


def run_load(opts: ProbeOptions, spec: LoadSpec) -> LoadReport:
    """Offer ``spec``'s load to ``opts.server``, in ``spec.processes`` processes
    (forked, so a credentials closure goes along unpickled; each sends its report
    back over a pipe)."""
    spec.check()
    if spec.processes == 1:
        return _one_process(opts, spec)
    context = multiprocessing.get_context("fork")
    readers = []
    children = []
    for i in range(spec.processes):
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(opts, spec.share(i), writer), daemon=True)
        child.start()
        writer.close()
        readers.append(reader)
        children.append(child)
    parts: list[LoadReport] = []
    errors: list[str] = []
    for reader, child in zip(readers, children, strict=True):
        try:
            answer = reader.recv()
        except EOFError:
            answer = f"load process {child.pid} died"
        child.join()
        if isinstance(answer, LoadReport):
            parts.append(answer)
        else:
            errors.append(str(answer))
    if errors:
        raise ConfigError(f"load generator: {errors[0]}")
    return LoadReport.merge(parts)


def _child(opts: ProbeOptions, spec: LoadSpec, writer: Connection) -> None:
    try:
        answer: LoadReport | str = _one_process(opts, spec)
    except Exception as exc:  # reported by the parent as one line
        answer = f"{type(exc).__name__}: {exc}"
    writer.send(answer)
    writer.close()


def rotating(users: Sequence[tuple[str, str]]) -> Credentials:
    """PAP credentials that go round ``users``."""
    if not users:
        raise ConfigError("no users to send")

    def pick(n: int) -> tuple[str, str]:
        return users[n % len(users)]

    return pick
