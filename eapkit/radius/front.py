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
  ``drop_log_interval`` (the NAS retransmits);
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
from collections.abc import Callable

from eapkit.radius.clients import Client
from eapkit.radius.core import Admitted, Drop, Handled, Hold, RadiusCore, Reply
from eapkit.radius.fairpool import FairPool

__all__ = ["Front", "Send"]

log = logging.getLogger("eapkit.radius")

Send = Callable[[bytes], None]


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
    ) -> None:
        self.core = core
        self.clock = clock
        self.pool = pool
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
        loop = asyncio.get_running_loop()

        def run() -> None:
            handled = self.core.run(admitted, self.clock())
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self._deliver, handled, send)

        def expired() -> None:
            self.core.abandon(admitted, "queue_timeout", self.clock())
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dropped, admitted.client.name, "queue_timeout")

        if not self.pool.submit(admitted.client.name, run, expired):
            self.core.abandon(admitted, "queue_full", now)
            self._dropped(admitted.client.name, "queue_full")
            return Drop("queue_full")
        return None

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
            "dropping requests from %s: %s (queue_full %d, queue_timeout %d so far)",
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
