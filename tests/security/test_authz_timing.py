"""Equal cost (issue 15, "Timing tells who has a second factor"): against a running
``eapkit serve``, a PAP login of an unknown user, a wrong password, a right one, and a
TOTP user's wrong password or right password with a wrong code each cost one PBKDF2.

The cost of a case is the CPU time the server process spends on it (``/proc/<pid>/stat``
utime + stime, so a loaded machine's waiting does not count), measured in batches of
``BATCH`` requests with the cases interleaved in the same run, and compared as ratios of
the median batch.  Short mode: ``EAPKIT_TIMING_TRIES`` tries per case (default 30), ratio
under 1.4 (the old double PBKDF2 of a 2FA user was 2.0); long mode
(``EAPKIT_TIMING_TRIES=200``): within 10%.  ``-s`` prints the figures.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from eapkit.radius.packet import Code
from tests.security.serving import Serve

TRIES = int(os.environ.get("EAPKIT_TIMING_TRIES", "30"))
TOLERANCE = 1.10 if TRIES >= 200 else 1.4
BATCH = 10 if TRIES >= 200 else 5
TICK = 1 / os.sysconf("SC_CLK_TCK")

CASES = {
    "unknown user": ("ghost", "whatever", Code.ACCESS_REJECT),
    "wrong password": ("nora", "wrong", Code.ACCESS_REJECT),
    "right password": ("nora", "pencil", Code.ACCESS_ACCEPT),
    "2FA wrong password": ("tom", "wrong123456", Code.ACCESS_REJECT),
    "2FA right password, wrong code": ("tom", "pencil000000", Code.ACCESS_REJECT),
}


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


def test_every_pap_case_costs_one_pbkdf2(tmp_path: Path) -> None:
    users = (("nora", "pencil", "none"), ("tom", "pencil", "totp"))
    config = "[policy]\nmax_password_failures = 1000000\nmax_nas_password_failures = 1000000\n"
    per_request: dict[str, list[float]] = {name: [] for name in CASES}
    with Serve(tmp_path / "serve", config, users) as serve:
        serve.eapkit("enroll", "totp", "tom")
        assert serve.daemon is not None
        pid = serve.daemon.pid
        for user, password, code in CASES.values():  # warm up every path
            assert serve.pap(user, password).code == code
        for _ in range(max(1, TRIES // BATCH)):
            for name, (user, password, code) in CASES.items():
                before = cpu_seconds(pid)
                for _ in range(BATCH):
                    assert serve.pap(user, password).code == code
                per_request[name].append((cpu_seconds(pid) - before) / BATCH)
        records = serve.decisions()
    tom = {d["reason"] for d in records if d.get("user") == "tom" and "result" in d}
    assert "bad_password" in tom and tom <= {"bad_password", "bad_code", "locked_out"}
    figures = {name: statistics.median(samples) * 1000 for name, samples in per_request.items()}
    print(f"\nPAP server CPU per request, median of batches of {BATCH}, {TRIES} tries (ms):")
    for name, value in figures.items():
        print(f"  {name:32} {value:8.2f}")
    spread = max(figures.values()) / min(figures.values())
    print(f"  spread {spread:.3f} (tolerance {TOLERANCE})")
    assert spread < TOLERANCE, figures
