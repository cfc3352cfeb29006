"""``eapkit probe --load/--rate``: closed and open loops over several processes, against
a running ``eapkit serve``, a silent server (timeouts) and an overloaded one."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.errors import ConfigError
from eapkit.loadgen import LoadReport, LoadSpec, rotating, run_load
from eapkit.probe import ProbeOptions
from tests.conftest import free_udp_port
from tests.security.serving import SECRET, Serve

USERS = tuple((f"user{i}", f"pw-{i}", "none") for i in range(6))


def options(port: int, **kw: object) -> ProbeOptions:
    return ProbeOptions(
        server=("127.0.0.1", port),
        secret=SECRET.encode(),
        method="mschapv2",
        identity="user0",
        password="pw-0",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    with Serve(tmp_path_factory.mktemp("loadgen"), users=USERS) as s:
        yield s


def test_open_loop_pap_over_two_processes(served: Serve) -> None:
    creds = rotating([(u, p) for u, p, _ in USERS])
    before = len(served.decisions())
    spec = LoadSpec(rate=150, count=60, processes=2, credentials=creds)
    report = run_load(options(served.port), spec)
    assert (report.completed, report.accepted, report.processes) == (60, 60, 2)
    assert report.offered_rate == pytest.approx(150)
    assert len(report.latencies_ms) == 60 and report.timeouts == 0
    users = Counter(d["user"] for d in served.decisions()[before:])
    # the two processes took interleaved requests: every user equally often
    assert users == Counter({u: 10 for u, _, _ in USERS})


def test_closed_loop_eap_from_the_command_line(served: Serve) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eapkit",
            "probe",
            "--server",
            f"127.0.0.1:{served.port}",
            "--secret",
            SECRET,
            "--method",
            "mschapv2",
            "--identity",
            "user1",
            "--password",
            "pw-1",
            "--load",
            "4",
            "--count",
            "12",
            "--processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("completed 12 (12 accepted)")
    assert "p99.9" in out.stdout and "timeouts: 0" in out.stdout
    assert "in 2 process(es)" in out.stdout


def test_a_silent_server_gives_timeouts_not_a_hang() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", free_udp_port()))
        port = silent.getsockname()[1]
        opts = options(port, timeout=0.2, retries=0)
        report = run_load(opts, LoadSpec(rate=100, count=10, credentials=rotating([("a", "b")])))
    assert report.completed == 10 and report.accepted == 0
    assert report.timeouts == 10 and not report.latencies_ms


def test_arrivals_past_the_outstanding_limit_are_counted_as_overload() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", free_udp_port()))
        opts = options(silent.getsockname()[1], timeout=0.5, retries=0)
        spec = LoadSpec(rate=200, count=20, max_outstanding=2, credentials=rotating([("a", "b")]))
        report = run_load(opts, spec)
    assert report.failures["overload"] >= 10
    assert report.completed == 20 - report.failures["overload"]


def test_bad_specs() -> None:
    opts = options(1)
    for spec in (LoadSpec(), LoadSpec(count=1, rate=0), LoadSpec(count=1, processes=0)):
        with pytest.raises(ConfigError):
            run_load(opts, spec)
    with pytest.raises(ConfigError):
        rotating([])


@given(
    st.integers(1, 8),
    st.integers(0, 1000),
    st.floats(0.5, 5000),
    st.integers(1, 300),
)
def test_shares_add_up_and_cover_every_request_once(
    processes: int, count: int, rate: float, concurrency: int
) -> None:
    spec = LoadSpec(count=count, rate=rate, concurrency=concurrency, processes=processes)
    shares = [spec.share(i) for i in range(processes)]
    assert sum(s.count or 0 for s in shares) == count
    assert sum(s.rate or 0 for s in shares) == pytest.approx(rate)
    indices = [s.first + n * s.stride for s in shares for n in range(s.count or 0)]
    assert sorted(indices) == list(range(count))


def test_merged_percentiles() -> None:
    a = LoadReport(10, 10, {}, 1.0, 0.1, [float(i) for i in range(1, 11)])
    b = LoadReport(5, 4, {"RadiusTimeout": 1}, 2.0, 0.2, [100.0] * 4, processes=1)
    m = LoadReport.merge([a, b])
    assert (m.completed, m.accepted, m.timeouts, m.wall_seconds) == (15, 14, 1, 2.0)
    assert m.percentile(50) == 8.0 and m.percentile(99.9) == 100.0
