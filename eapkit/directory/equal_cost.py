"""A stand-in check that takes as long as the real one (issue 18, equal cost).

A directory refuses an unknown user by checking the password against something that
does not exist (a DN, an account name AD forbids), so that no real account counts a
failure.  But the directory server does less for a name it does not have: Active
Directory (and Samba) write a bad-password count for a real account, and a nonexistent
one costs them nothing, so a Samba DC answered a bind for an unknown DN in ~25 ms and a
wrong password in ~85 ms (``ntlm_auth``: ~85 ms against ~120 ms).  Timing would tell
which names exist.

:class:`MatchedCost` closes that gap by waiting: the real checks' wall times are
remembered (the last ``window`` refused ones, and accepted ones as the fallback), and
a stand-in check, after doing its own work (the same connection, the same helper run),
waits until the median of them has passed, never longer than ``ceiling``.  The wait
holds the thread that serves the request, as the real check's round trip would.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["MatchedCost"]


class MatchedCost:
    """Wall times of real checks, and the wait that makes a stand-in last as long."""

    def __init__(
        self,
        ceiling: float,
        window: int = 31,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not ceiling > 0 or window < 1:
            raise ValueError("ceiling > 0 and window >= 1")
        self.ceiling = ceiling
        self.clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._refused: deque[float] = deque(maxlen=window)
        self._accepted: deque[float] = deque(maxlen=window)

    def record(self, started: float, refused: bool) -> None:
        """A real check that began at ``started`` (:attr:`clock`) has ended."""
        took = self.clock() - started
        with self._lock:
            (self._refused if refused else self._accepted).append(took)

    def target(self) -> float:
        """How long a stand-in should last: the median refused real check (what an
        unknown name is compared with), else the median accepted one, else 0."""
        with self._lock:
            samples = list(self._refused or self._accepted)
        return min(statistics.median(samples), self.ceiling) if samples else 0.0

    def pad(self, started: float) -> None:
        """Wait until a stand-in check that began at ``started`` has lasted
        :meth:`target` seconds."""
        wait = self.target() - (self.clock() - started)
        if wait > 0:
            self._sleep(wait)
