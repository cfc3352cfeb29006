"""A bounded pool of threads with a fair share per client, for the RADIUS fronts.

The checks behind an Access-Request block: PBKDF2 (tens of milliseconds of CPU,
twice for a user with a second factor), the store and the directory (SQLite or Redis
I/O, up to their timeouts), the Yubico validation service.  Run on the thread that
reads datagrams, one slow check delays every client.  So a front hands each admitted
Access-Request (:meth:`eapkit.radius.core.RadiusCore.admit`) to this pool::

    client A: [a1 a2 a3 ... a64]  ─┐   round-robin over the clients with work:
    client B: [b1]                 ├─> a1, b1, c1, a2, c2, a3, ...   -> ``threads`` threads
    client C: [c1 c2]             ─┘

- one queue per client, at most ``per_client`` jobs in it: past that :meth:`submit`
  refuses (the front drops the request, ``queue_full``; the NAS retransmits);
- clients are served round-robin, one job each in turn, so a client flooding the
  server waits behind itself, not others; and one client runs at most ``per_client_running``
  jobs at once (half the threads by default), so a thread is free for the next
  client's request as soon as it arrives;
- a job that could not start within ``deadline`` seconds of its submission is not run:
  its ``expired`` callable runs instead (``queue_timeout``): the NAS has retransmitted
  by then, and running a stale request would only delay fresh ones;
- threads, not processes: hashlib's PBKDF2, OpenSSL and sqlite/redis I/O release the
  GIL, so ``threads`` checks proceed at once and the event loop stays free.

Nothing here knows RADIUS: jobs are callables keyed by a client name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FairPool"]

log = logging.getLogger("eapkit.radius")


@dataclass(frozen=True, slots=True)
class _Job:
    client: str
    deadline: float
    run: Callable[[], None]
    expired: Callable[[], None]


class FairPool:
    """``threads`` threads serving per-client queues round-robin (module docstring)."""

    def __init__(
        self,
        threads: int = 4,
        *,
        per_client: int = 64,
        deadline: float = 2.0,
        per_client_running: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threads < 1 or per_client < 1 or deadline <= 0:
            raise ValueError("threads, per_client and deadline must be positive")
        self.threads = threads
        self.per_client = per_client
        self.deadline = deadline
        self.per_client_running = per_client_running or max(1, threads // 2)
        self.clock = clock
        self._running: dict[str, int] = {}
        self._queues: OrderedDict[str, deque[_Job]] = OrderedDict()
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self.busy = 0  # jobs running now

    @property
    def waiting(self) -> int:
        """Jobs queued, not started."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def submit(self, client: str, run: Callable[[], None], expired: Callable[[], None]) -> bool:
        """Queue ``run`` for ``client``; False (and nothing queued) when the client's
        queue is full or the pool is closed."""
        with self._cond:
            if self._closed:
                return False
            queue = self._queues.get(client)
            if queue is None:
                queue = self._queues[client] = deque()
            elif len(queue) >= self.per_client:
                return False
            queue.append(_Job(client, self.clock() + self.deadline, run, expired))
            if len(self._workers) < self.threads:  # started lazily: safe before a fork
                worker = threading.Thread(target=self._serve, name="eapkit-check", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._cond.notify()
        return True

    def _eligible(self) -> str | None:
        """The first client, in round-robin order, with work and a running slot."""
        cap = self.per_client_running
        return next((c for c in self._queues if self._running.get(c, 0) < cap), None)

    def _next(self) -> _Job | None:
        with self._cond:
            while (client := self._eligible()) is None:
                if self._closed and not self._queues:
                    return None
                self._cond.wait()
            queue = self._queues[client]
            job = queue.popleft()
            if queue:
                self._queues.move_to_end(client)  # its next job waits for the others' turn
            else:
                del self._queues[client]
            self._running[client] = self._running.get(client, 0) + 1
            self.busy += 1
            return job

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            try:
                if self.clock() > job.deadline:
                    job.expired()
                else:
                    job.run()
            except Exception:  # jobs catch their own errors; a thread must never die
                log.exception("a pooled check raised")
            finally:
                with self._cond:
                    self.busy -= 1
                    left = self._running[job.client] - 1
                    if left:
                        self._running[job.client] = left
                    else:
                        del self._running[job.client]
                    # Only this client's eligibility changed, and this thread looks for
                    # work next: wake one more only when the client was at its cap and has
                    # jobs queued (a waiting thread may take the slot first).  Waking
                    # every idle thread after every job cost each request several
                    # context switches (issue 21).  Closing: all must see the end.
                    if self._closed:
                        self._cond.notify_all()
                    elif left == self.per_client_running - 1 and job.client in self._queues:
                        self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued, then stop the threads (waiting ``timeout`` at most)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout)
