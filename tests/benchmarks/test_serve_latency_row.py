"""bench_serve's latency row (issue 21): p99 of the open-loop run at 70% of the
closed-loop maximum, in µs against the 5 ms target, timeouts counted as failures."""

from __future__ import annotations

from benchmarks.bench_serve import LATENCY_TARGET_MS, Latency
from eapkit.loadgen import LoadReport


def report(latencies: list[float], offered: float | None, failures: dict[str, int]) -> LoadReport:
    return LoadReport(
        completed=len(latencies),
        accepted=len(latencies) - sum(failures.values()),
        failures=failures,
        wall_seconds=1.0,
        client_cpu_seconds=0.5,
        latencies_ms=latencies,
        offered_rate=offered,
        processes=2,
    )


def test_latency_row_reports_p99_of_the_offered_run() -> None:
    maximum = report([1.0] * 400, None, {})
    offered = report([1.0] * 98 + [7.0, 9.0], 280.0, {"no_reply": 1})
    row = Latency(maximum, offered).row()
    assert row["op"] == "serve PAP+TOTP: p99 latency at 70% of the maximum rate"
    assert row["eapkit_us"] == 9000.0  # nearest rank: the 99th of 100 sorted is the last
    assert row["anchor_us"] == 1000 * LATENCY_TARGET_MS
    assert row["anchor_rate"] == 280.0 and row["maximum_rate"] == 400.0
    assert row["eapkit_failures"] == {"no_reply": 1, "timeouts": 1}
