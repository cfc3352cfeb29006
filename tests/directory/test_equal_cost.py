"""MatchedCost (eapkit/directory/equal_cost.py): a stand-in check waits until the median
real check's time has passed, never past the ceiling, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.directory.equal_cost import MatchedCost


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _cost(clock: Clock, ceiling: float = 5.0, window: int = 31) -> MatchedCost:
    return MatchedCost(ceiling, window, clock=clock, sleep=clock.sleep)


def _real(cost: MatchedCost, clock: Clock, took: float, refused: bool) -> None:
    started = clock()
    clock.now += took
    cost.record(started, refused)


def test_nothing_measured_yet_no_wait() -> None:
    clock = Clock()
    cost = _cost(clock)
    cost.pad(clock())
    assert clock.slept == []


def test_stand_in_waits_for_the_median_refused_check() -> None:
    clock = Clock()
    cost = _cost(clock)
    for took in (0.080, 0.085, 0.300):  # median 0.085
        _real(cost, clock, took, refused=True)
    _real(cost, clock, 0.010, refused=False)  # accepted ones only when none refused
    started = clock()
    clock.now += 0.025  # the stand-in's own bind
    cost.pad(started)
    assert clock.slept == [pytest.approx(0.060)]
    assert clock() - started == pytest.approx(0.085)
    slow = clock()
    clock.now += 0.2  # a stand-in slower than the target waits nothing more
    cost.pad(slow)
    assert len(clock.slept) == 1


def test_accepted_checks_are_the_fallback_and_the_window_forgets() -> None:
    clock = Clock()
    cost = _cost(clock, window=2)
    _real(cost, clock, 0.050, refused=False)
    assert cost.target() == pytest.approx(0.050)
    for took in (1.0, 0.020, 0.030):  # the 1.0 falls out of a window of two
        _real(cost, clock, took, refused=True)
    assert cost.target() == pytest.approx(0.025)


@given(
    st.lists(st.floats(0, 100), min_size=1, max_size=40),
    st.floats(0, 100),
    st.floats(0.001, 10),
)
def test_never_waits_past_the_ceiling(samples: list[float], own: float, ceiling: float) -> None:
    clock = Clock()
    cost = _cost(clock, ceiling=ceiling)
    for took in samples:
        _real(cost, clock, took, refused=True)
    started = clock()
    clock.now += own
    cost.pad(started)
    assert sum(clock.slept) <= ceiling + 1e-9
    assert clock() - started >= min(cost.target(), own) - 1e-9


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        MatchedCost(0)
    with pytest.raises(ValueError, match="window"):
        MatchedCost(1, window=0)
