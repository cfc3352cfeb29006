"""What every transport in front of :class:`~eapkit.radius.core.RadiusCore` does alike.

A front (UDP :mod:`eapkit.radius.udp`, the multi-worker front
:mod:`eapkit.radius.workers`, RadSec next) owns sockets; for each request it has read
it calls :meth:`Front.receive` with the bytes, their source and a ``send`` callable
that writes one reply back the way the request came (a datagram to the source, a
record on a TLS stream).  The front then::

    receive(data, source, send) ── core.admit(now) ──> Reply ── send(bytes)
                                          │        ├──> Drop  (the core counted it)
                                          │        └──> Admitted ── pool (per-client queue)
                                          │                          └─ thread: core.run
                                          │                               └─ loop: deliver
                                          └─ deliver: Reply ── send(bytes)
                                                      Hold  ── task: gate.wait(ticket)
                                                                └── send(core.settle(...))

- the thread that reads datagrams does only the cheap part (client, decoding,
  duplicates, Status-Server, accounting); every Access-Request's checks run in a
  :class:`~eapkit.radius.fairpool.FairPool` with a fair share per client, and the
  reply is sent back on the event loop's thread.  A request whose client's queue is
  full (``queue_full``) or whose check could not start before the pool's deadline
  (``queue_timeout``) is dropped, counted, and logged once per client per
  ``drop_log_interval`` (the NAS retransmits); over a stream (``reliable``: RadSec)
  the NAS does not retransmit (RFC 6613 §2.6.1), so such a request is answered with an
  Access-Reject instead, its reason in the decision log (:meth:`RadiusCore.refuse`);
- a request that needs no check runs inline, on the event loop, not in the pool
  (issue 21): the thread hand-off there and back costs more than its work.  The rule
  (:meth:`RadiusCore.needs_no_check`, docs/benchmarks.md "Inline or pool"): only EAP
  rounds answered by the next Challenge after pure state work, a new conversation's
  Identity round (or a Nak) that starts a method, and a TLS method's fragment
  acknowledgements; never PAP, a credential, store, directory or authorization step,
  a TLS handshake flight (resumption records may live in a store), nor any round that
  may end the conversation.  Fairness holds for inline work too: per client at most
  ``inline_per_tick`` requests per loop iteration run inline.  Over UDP the rest of a
  burst of datagrams queues in the pool behind the other clients; a RadSec connection
  (one read can hold many records) instead yields to the loop (``asyncio.sleep(0)``)
  after every ``inline_per_tick`` records and goes on inline with a fresh share
  (:mod:`eapkit.radius.radsec`, tests/radius/test_radsec_inline.py), so other
  connections and datagrams run in between;
- with local backends (``RadiusCore.light_methods``, set by ``eapkit serve`` when the
  directory and the store are SQLite files or memory), the rounds of an EAP-MSCHAPv2 or
  EAP-TLS conversation run inline too, and the TTLS and PEAP rounds their tunnel shows
  reach no password check (handshake flights without application data, phase 2 of an
  inner EAP-MSCHAPv2; :meth:`AuthenticatorSession.light`): their checks are short CPU
  work there (no PBKDF2, no network), less than the hand-off to a pool thread and
  back.  A light
  round that takes longer than ``light_budget`` while waiting (a stalled disk, another
  process holding SQLite's write lock: the thread gave up the CPU; being preempted on
  a busy machine does not count) sends light rounds to the pool for ``light_pause``
  seconds, doubling while it recurs; the per-client share above holds for them;
- without a pool (``pool=None``) the checks run inline, as a library user may want;
- :meth:`Front.expire_periodically` runs the core's expiry on a timer (conversations
  time out even when no further request arrives);
- a request that raises is counted (``internal_error``) and dropped: one bad request
  never stops the server (the NAS retransmits);
- a held Accept waits on the approval gate in a task of its own, so other requests go
  on; on a gate error or shutdown the login is refused, never left hanging or let
  through (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from eapkit.radius.clients import Client
from eapkit.radius.core import Admitted, Drop, Handled, Hold, RadiusCore, Reply
from eapkit.radius.fairpool import FairPool

__all__ = ["EVENT_LOOP_VARIABLE", "Front", "Send", "event_loop_factory", "run_event_loop"]

log = logging.getLogger("eapkit.radius")

Send = Callable[[bytes], None]

T = TypeVar("T")
EVENT_LOOP_VARIABLE = "EAPKIT_EVENT_LOOP"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``$EAPKIT_EVENT_LOOP`` names: unset or ``asyncio`` (the default:
    None), or ``uvloop`` (the optional ``uvloop`` extra; docs/benchmarks.md has what it
    measured).  Another name, or uvloop missing, is a ValueError that says so."""
    name = os.environ.get(EVENT_LOOP_VARIABLE, "asyncio") or "asyncio"
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ValueError(f"{EVENT_LOOP_VARIABLE}={name!r}: use asyncio or uvloop")
    try:
        import uvloop
    except ImportError:
        raise ValueError(
            f"{EVENT_LOOP_VARIABLE}=uvloop but uvloop is not installed "
            "(pip install 'eapkit[uvloop]')"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop :func:`event_loop_factory` gives."""
    try:
        factory = event_loop_factory()
    except ValueError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


# Linux counts per thread; elsewhere the process's count is the nearest (it also counts
# other threads' waits: light rounds then pause more often, never less)
RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def _voluntary_switches() -> int:
    """Times this thread gave up the CPU to wait (getrusage ``ru_nvcsw``); where that
    cannot be read, a number that grows with every call, so a slow round counts."""
    try:
        return resource.getrusage(RUSAGE_THREAD).ru_nvcsw
    except (OSError, ValueError):
        return time.perf_counter_ns()


class Front:
    """Calls ``core`` for each request, sends its replies through the request's own
    ``send``, settles holds, and counts.  ``clock`` is the wall clock passed to the
    core as ``now``."""

    def __init__(
        self,
        core: RadiusCore,
        clock: Callable[[], float],
        pool: FairPool | None = None,
        *,
        drop_log_interval: float = 10.0,
        reliable: bool = False,
        inline_per_tick: int = 8,
        light_budget: float = 0.010,
        light_pause: float = 10.0,
    ) -> None:
        self.core = core
        # A light round (RadiusCore.light) slower than light_budget seconds pauses light
        # rounds on the loop for light_pause seconds (_run_light).
        self.light_budget = light_budget
        self.light_pause = light_pause
        self._light_paused_until = 0.0
        self._light_pause_now = light_pause
        self.light = 0  # light rounds run on the event loop
        self.light_pauses = 0
        # Per client, at most this many requests run inline per loop iteration; the
        # rest of a burst goes to the pool, where clients take turns (module docstring).
        self.inline_per_tick = inline_per_tick
        self._inline_now: dict[str, int] = {}
        self.inline = 0  # requests run on the event loop although a pool exists
        self.pooled = 0  # requests handed to the pool
        self.clock = clock
        self.pool = pool
        self.reliable = reliable  # a stream transport: refuse what the pool gives up on
        self.drop_log_interval = drop_log_interval
        self._waiting: set[asyncio.Task[None]] = set()
        self._drop_logged: dict[str, float] = {}

    def receive(
        self,
        data: bytes,
        source: tuple[str, int],
        send: Send,
        *,
        local_port: int = 0,
        client: Client | None = None,
    ) -> Handled | None:
        """Handle one request from ``source`` (host, port), received on ``local_port``;
        ``send`` writes a reply to it, now or later (a queued check, a held Accept: it
        must then check that its transport is still open).  ``client``: the NAS the
        transport already identified (RadSec: by its certificate).  None: the request
        went to the pool."""
        now = self.clock()
        try:
            admitted = self.core.admit(data, source, now, local_port=local_port, client=client)
        except Exception:  # one bad request must not stop the server
            log.exception("internal error handling a request from %s", source[0])
            self.core.count("internal_error")
            return Drop("internal_error")
        if not isinstance(admitted, Admitted):
            self._deliver(admitted, send)
            return admitted
        if self.pool is None:
            handled = self.core.run(admitted, now)
            self._deliver(handled, send)
            return handled
        inline = self._inline(admitted)
        if inline is not None:
            if inline == "light":
                handled = self._run_light(admitted, now)
            else:
                handled = self.core.run(admitted, now)
            self._deliver(handled, send)
            return handled
        loop = asyncio.get_running_loop()
        self.pooled += 1
        self.core.pooling(admitted)

        def run() -> None:
            handled = self.core.run(admitted, self.clock())
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self._deliver, handled, send)

        def expired() -> None:
            handled = self._give_up(admitted, "queue_timeout", self.clock())
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._gave_up, admitted, "queue_timeout", handled, send)

        if not self.pool.submit(admitted.client.name, run, expired):
            handled = self._give_up(admitted, "queue_full", now)
            self._gave_up(admitted, "queue_full", handled, send)
            return handled
        return None

    def _inline(self, admitted: Admitted) -> Literal["pure", "light"] | None:
        """Whether to run ``admitted`` here, on the event loop, and as what: ``pure``
        when it needs no check (:meth:`RadiusCore.needs_no_check`), ``light`` when it is
        a light round (:meth:`RadiusCore.light`) while light rounds are not paused;
        either only while its client has not used its ``inline_per_tick`` share of this
        loop iteration.  None: to the pool."""
        name = admitted.client.name
        used = self._inline_now.get(name, 0)
        if used >= self.inline_per_tick:
            return None
        kind: Literal["pure", "light"] = "pure"
        if not self.core.needs_no_check(admitted):
            if time.monotonic() < self._light_paused_until or not self.core.light(admitted):
                return None
            self.light += 1
            kind = "light"
        if not self._inline_now:  # the shares start afresh at the next iteration
            asyncio.get_running_loop().call_soon(self._inline_now.clear)
        self._inline_now[name] = used + 1
        self.inline += 1
        return kind

    def _run_light(self, admitted: Admitted, now: float) -> Handled:
        """``core.run`` of a light round on the event loop; one that took longer than
        ``light_budget`` while waiting (a stalled disk, another process's SQLite lock)
        sends light rounds back to the pool for ``light_pause`` seconds, so a slow local
        backend cannot hold the loop and every other client with it."""
        started, waits = time.perf_counter(), _voluntary_switches()
        handled = self.core.run(admitted, now)
        took = time.perf_counter() - started
        # Slow because it waited (a lock, the disk: the thread gave up the CPU), not
        # because the machine is busy (preempted: involuntary switches only) or the
        # round is long CPU work, which would cost the pool's thread as much.
        if took > self.light_budget and _voluntary_switches() > waits:
            at = time.monotonic()
            # slow again within one pause of the last: the pause doubles (to 64 x)
            again = at < self._light_paused_until + self._light_pause_now
            self._light_pause_now = (
                min(self._light_pause_now * 2, self.light_pause * 64)
                if again and self.light_pauses
                else self.light_pause
            )
            self._light_paused_until = at + self._light_pause_now
            self.light_pauses += 1
            log.warning(
                "a light round took %.1f ms on the event loop: light rounds go to the pool"
                " for %g s",
                took * 1000,
                self._light_pause_now,
            )
        return handled

    def _give_up(self, admitted: Admitted, reason: str, now: float) -> Handled:
        """A request the pool will not run: dropped, or over a stream refused."""
        if self.reliable:
            return self.core.refuse(admitted, reason, now)
        return self.core.abandon(admitted, reason, now)

    def _gave_up(self, admitted: Admitted, reason: str, handled: Handled, send: Send) -> None:
        self._dropped(admitted.client.name, reason)
        self._deliver(handled, send)

    def _dropped(self, client: str, reason: str) -> None:
        """Log a pool drop, once per client per ``drop_log_interval`` (the count is in
        the core's stats)."""
        now = self.clock()
        if self._drop_logged.get(client, 0.0) > now:
            return
        if len(self._drop_logged) > 4096:
            self._drop_logged.clear()
        self._drop_logged[client] = now + self.drop_log_interval
        stats = self.core.stats
        log.warning(
            "%s requests from %s: %s (queue_full %d, queue_timeout %d so far)",
            "refusing" if self.reliable else "dropping",
            client,
            reason,
            stats.get("queue_full", 0),
            stats.get("queue_timeout", 0),
        )

    def _deliver(self, handled: Handled, send: Send) -> None:
        if isinstance(handled, Reply):
            send(handled.data)
        elif isinstance(handled, Hold):
            task = asyncio.get_running_loop().create_task(self._settle(handled, send))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)

    async def expire_periodically(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Call ``core.expire(now)`` every ``interval`` seconds until ``stop`` is set, so
        conversations time out (and are logged) on an idle server too."""
        while not stop.is_set():
            try:
                self.core.expire(self.clock())
            except Exception:  # a failing expiry must not stop the timer
                log.exception("expiring conversations failed")
                self.core.count("internal_error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def close(self) -> None:
        """Stop the pool's threads (after the queued checks ran)."""
        if self.pool is not None:
            self.pool.close()

    @property
    def holding(self) -> int:
        """Held Accepts still waiting for their approval."""
        return len(self._waiting)

    async def _settle(self, held: Hold, send: Send) -> None:
        """Wait for the approval of a held Accept, then answer: on shutdown or a gate
        error the login is refused, never left hanging or let through."""
        outcome = "expired"
        try:
            assert self.core.approval is not None
            outcome = await self.core.approval.wait(held.ticket, held.deadline)
        except Exception:
            log.exception("approval gate failed for ticket %s", held.ticket[:8])
            outcome = "error"
        finally:
            send(self.core.settle(held, outcome, self.clock()))
