"""benchmarks.lean_path drives whole logins through the served core (it asserts each
one ends in an Access-Accept), so the instruction counts in docs/benchmarks.md measure
logins that succeed; through a front with a pool too (``--front``), where the fast path
runs the rounds that need no check, and the light rounds, inline (issue 21)."""

from __future__ import annotations

import re

import pytest

from benchmarks import lean_path


@pytest.mark.parametrize("method", ["pap", "mschapv2"])
def test_lean_path_runs_accepted_logins(method: str, capsys: pytest.CaptureFixture[str]) -> None:
    lean_path.main([method, "3"])
    assert capsys.readouterr().out.startswith(f"{method} (front none): ")


@pytest.mark.parametrize(
    ("method", "rounds", "inline"),
    # light rounds (a local directory and store, as lean_path builds): every round of
    # EAP-MSCHAPv2, EAP-TLS and PEAP/MSCHAPv2 runs inline; PAP, TTLS's AVPs (a PBKDF2)
    # and TLS 1.3's client Finished (outer application_data) do not
    [
        ("pap", 1, 0),
        ("mschapv2", 3, 3),
        ("tls13", 6, 6),
        ("ttls-pap13", 6, 4),
        ("ttls-pap12", 4, 3),
        ("peap12", 8, 8),
    ],
)
def test_lean_path_through_the_front(
    method: str, rounds: int, inline: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for front, expected in (("pool", 0), ("fast", inline)):
        lean_path.main([method, "2", "--front", front])
        out = capsys.readouterr().out
        found = re.search(r"([\d.]+) Access-Requests per login, ([\d.]+) of them inline", out)
        assert found is not None, out
        assert float(found.group(1)) == rounds
        assert float(found.group(2)) == expected
