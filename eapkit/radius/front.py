"""What every transport in front of :class:`~eapkit.radius.core.RadiusCore` does alike.

A front (UDP :mod:`eapkit.radius.udp`, the multi-worker front
:mod:`eapkit.radius.workers`, RadSec next) owns sockets; for each request it has read
it calls :meth:`Front.receive` with the bytes, their source and a ``send`` callable
that writes one reply back the way the request came (a datagram to the source, a
record on a TLS stream).  The front then::

    receive(data, source, send) ── core.receive(now) ──> Reply ── send(bytes)
                                                    ├──> Drop  (the core counted it)
                                                    └──> Hold  ── task: gate.wait(ticket)
                                                                   └── send(core.settle(...))

- a request that raises is counted (``internal_error``) and dropped: one bad request
  never stops the server (the NAS retransmits);
- :meth:`Front.expire_periodically` runs the core's expiry on a timer (conversations
  time out even when no further request arrives);
- a held Accept waits on the approval gate in a task of its own, so other requests go
  on; on a gate error or shutdown the login is refused, never left hanging or let
  through (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from eapkit.radius.core import Drop, Handled, Hold, RadiusCore, Reply

__all__ = ["Front", "Send"]

log = logging.getLogger("eapkit.radius")

Send = Callable[[bytes], None]


class Front:
    """Calls ``core`` for each request, sends its replies through the request's own
    ``send``, settles holds, and counts.  ``clock`` is the wall clock passed to the
    core as ``now``."""

    def __init__(self, core: RadiusCore, clock: Callable[[], float]) -> None:
        self.core = core
        self.clock = clock
        self._waiting: set[asyncio.Task[None]] = set()

    def receive(
        self, data: bytes, source: tuple[str, int], send: Send, *, local_port: int = 0
    ) -> Handled:
        """Handle one request from ``source`` (host, port), received on ``local_port``;
        ``send`` writes a reply to it, now or once a held Accept is settled (it must
        then check that its transport is still open)."""
        try:
            handled = self.core.receive(data, source, self.clock(), local_port=local_port)
        except Exception:  # one bad request must not stop the server
            log.exception("internal error handling a request from %s", source[0])
            self.core.count("internal_error")
            return Drop("internal_error")
        if isinstance(handled, Reply):
            send(handled.data)
        elif isinstance(handled, Hold):
            task = asyncio.get_running_loop().create_task(self._settle(handled, send))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)
        return handled

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
