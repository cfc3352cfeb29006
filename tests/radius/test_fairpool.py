"""eapkit.radius.fairpool: per-client queues served round-robin, bounded, with a
deadline to start; a client runs at most ``per_client_running`` jobs at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.radius.fairpool import FairPool


def _blocked(pool: FairPool, client: str = "gate") -> threading.Event:
    """Occupy the pool's only thread until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    assert pool.submit(client, hold, lambda: None)
    assert started.wait(10)
    return release


def _round_robin(submissions: list[str]) -> list[tuple[str, int]]:
    """The order a fair scheduler serves ``submissions`` queued at once: one job of each
    client in turn, clients in the order they first queued, each client's jobs FIFO."""
    queues: dict[str, list[tuple[str, int]]] = {}
    for i, client in enumerate(submissions):
        queues.setdefault(client, []).append((client, i))
    order: list[tuple[str, int]] = []
    while queues:
        for client in list(queues):
            order.append(queues[client].pop(0))
            if not queues[client]:
                del queues[client]
    return order


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=30))
def test_queued_jobs_are_served_round_robin(submissions: list[str]) -> None:
    pool = FairPool(1, per_client=64)
    served: list[tuple[str, int]] = []
    release = _blocked(pool)

    def job(client: str, i: int) -> Callable[[], None]:
        return lambda: served.append((client, i))

    for i, client in enumerate(submissions):
        assert pool.submit(client, job(client, i), lambda: None)
    release.set()
    pool.close()
    assert served == _round_robin(submissions)


def test_a_full_client_queue_refuses_but_others_still_queue() -> None:
    pool = FairPool(1, per_client=3)
    release = _blocked(pool)
    assert all(pool.submit("a", lambda: None, lambda: None) for _ in range(3))
    assert not pool.submit("a", lambda: None, lambda: None)
    assert pool.submit("b", lambda: None, lambda: None)
    release.set()
    pool.close()


def test_a_job_that_cannot_start_before_its_deadline_expires_instead() -> None:
    now = [0.0]
    pool = FairPool(1, deadline=2.0, clock=lambda: now[0])
    release = _blocked(pool)
    ran: list[str] = []
    pool.submit("a", lambda: ran.append("run"), lambda: ran.append("expired"))
    now[0] = 2.5  # the gate held the thread past the deadline
    release.set()
    pool.close()
    assert ran == ["expired"]


def test_one_client_never_takes_every_thread() -> None:
    pool = FairPool(2)  # per_client_running = 1
    assert pool.per_client_running == 1
    release = _blocked(pool, "a")
    other = threading.Event()
    pool.submit("a", lambda: None, lambda: None)  # waits: "a" already runs one
    pool.submit("b", other.set, lambda: None)
    assert other.wait(5)  # "b" got the second thread at once
    release.set()
    pool.close()


class _CountingCondition(threading.Condition):
    """A Condition that counts how many waiting threads it was asked to wake."""

    def __init__(self) -> None:
        super().__init__()
        self.woken = 0

    def notify(self, n: int = 1) -> None:
        self.woken += n
        super().notify(n)

    def notify_all(self) -> None:
        self.woken += 1_000  # every idle thread
        super().notify_all()


def test_a_finished_job_does_not_wake_every_idle_thread() -> None:
    """Issue 21: each job used to end with notify_all, so every idle thread woke, found
    nothing and slept again: several context switches per request.  Now only a
    submission wakes a thread (and a job that frees a capped client with work)."""
    pool = FairPool(4)
    cond = _CountingCondition()
    pool._cond = cond  # before any thread starts (they start at the first submit)
    jobs = 50
    for i in range(jobs):
        done = threading.Event()
        assert pool.submit(f"nas{i % 3}", done.set, lambda: None)
        assert done.wait(5)
    assert cond.woken == jobs  # one notify per submission, none per finished job
    # a capped client with work queued still gets its freed slot
    pool2 = FairPool(2)  # per_client_running = 1
    release = _blocked(pool2, "a")
    ran = threading.Event()
    assert pool2.submit("a", ran.set, lambda: None)
    assert not ran.wait(0.1)  # "a" is at its cap
    release.set()
    assert ran.wait(5)
    pool.close()
    pool2.close()
