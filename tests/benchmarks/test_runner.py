"""The benchmark runner: rows normalised, JSON keys exact, README markers, a real run.

No figure is asserted here (speed is never a test); only that the runner does what
docs/benchmarks.md says with whatever figures it gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.runner import KEYS, README_END, README_START, Row

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_benchmark_module_is_found_with_memory_last() -> None:
    found = runner.topics()
    on_disk = sorted(
        p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")
    )
    assert sorted(found) == on_disk
    assert found[-1] == "memory"


def test_only_accepts_topics_module_names_and_comma_lists() -> None:
    available = ["otp", "radius", "tls", "memory"]
    assert runner.select(available, []) == available
    assert runner.select(available, ["bench_tls,otp"]) == ["otp", "tls"]
    assert runner.select(available, ["memory", "radius"]) == ["radius", "memory"]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        runner.select(available, ["nope"])


def test_rows_are_normalised() -> None:
    row = runner.normalise(
        "serve",
        {
            "op": "serve TTLS/PAP",
            "eapkit_us": 1300,
            "anchor": "hostapd",
            "anchor_us": 1400.0,
            "floor_us": None,
            "eapkit_rate": 140.0,  # extra keys are dropped
        },
    )
    assert row == Row("serve", "serve TTLS/PAP", 1300.0, "hostapd", 1400.0, None)
    assert row.vs_anchor == pytest.approx(1300 / 1400)
    assert row.vs_floor is None
    # an anchor name without an anchor time is no anchor
    bare = runner.normalise("tls", {"op": "x", "eapkit_us": 2.0, "anchor": "y"})
    assert bare.anchor is None and bare.anchor_us is None and bare.floor_us is None
    for bad in (
        {"eapkit_us": 1.0},
        {"op": "x"},
        {"op": "x", "eapkit_us": float("nan")},
        {"op": "x", "eapkit_us": 1.0, "floor_us": "fast"},
    ):
        with pytest.raises(ValueError):
            runner.normalise("t", bad)


def test_json_has_exactly_the_five_keys(tmp_path: Path) -> None:
    rows = [
        Row("otp", "totp", 2.5, "pyotp", 15.0, 1.0),
        Row("tls", "handshake", 1600.0, None, None, 1100.0),
    ]
    out = tmp_path / "rows.json"
    runner.write_json(rows, out)
    data = json.loads(out.read_text())
    assert [tuple(d) for d in data] == [KEYS, KEYS]
    assert data[0] == {
        "op": "otp: totp",
        "eapkit_us": 2.5,
        "anchor": "pyotp",
        "anchor_us": 15.0,
        "floor_us": 1.0,
    }
    assert data[1]["anchor"] is None and data[1]["anchor_us"] is None


def test_tables_show_ratios_and_dashes() -> None:
    rows = [Row("otp", "totp", 2.0, "pyotp", 16.0, 1.0), Row("tls", "hs", 9.0, None, None, None)]
    text = runner.text_table(rows)
    assert "[otp]" in text and "[tls]" in text
    assert "0.12" in text and "2.00" in text  # 2/16 and 2/1
    md = runner.markdown_table(rows).splitlines()
    assert len(md) == 4
    assert md[3].endswith("| - | - |")


def test_readme_section_replaced_between_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nintro\n")
    runner.update_readme(readme, "first")
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n## Performance\n\n")
    assert f"{README_START}\nfirst\n{README_END}\n" in text
    readme.write_text(text + "\n## After\n\nkept\n")
    runner.update_readme(readme, "second")
    text = readme.read_text()
    assert "first" not in text and f"{README_START}\nsecond\n{README_END}" in text
    assert text.count("## Performance") == 1 and text.endswith("## After\n\nkept\n")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.png"
    runner.plot(
        [Row("otp", "totp", 2.0, "pyotp", 16.0, 1.0), Row("tls", "hs", 9.0, None, None, 6.0)],
        out,
        "test",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_machine_names_cpu_cores_and_versions() -> None:
    info = runner.machine()
    assert info["cpu"] and int(info["cores"]) >= 1
    assert info["python"].startswith(("CPython", "PyPy")) and "OpenSSL" in info["ssl"]


def test_a_real_run_of_one_benchmark(tmp_path: Path) -> None:
    """``python -m benchmarks --only tokens --quick`` end to end (the cheapest module)."""
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "tokens", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data and all(tuple(d) == KEYS for d in data)
    assert all(d["op"].startswith("tokens: ") and d["eapkit_us"] > 0 for d in data)
    assert "[tokens]" in proc.stdout and "machine:" in proc.stdout


def test_a_failing_benchmark_is_reported_and_the_exit_code_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(topic: str, quick: bool) -> runner.Outcome:
        if topic == "otp":
            return runner.Outcome(topic, [], 0.1, "ImportError: no pyotp")
        return runner.Outcome(topic, [{"op": "x", "eapkit_us": 1.0}], 0.1)

    monkeypatch.setattr(runner, "run_topic", broken)
    monkeypatch.setattr(runner, "topics", lambda: ["otp", "tls"])
    out = tmp_path / "rows.json"
    assert runner.main(["--json", str(out)]) == 1
    assert [d["op"] for d in json.loads(out.read_text())] == ["tls: x"]


def test_chart_labels_say_which_anchor_when_ops_repeat() -> None:
    rows = [
        Row("serve", "serve PAP: CPU per auth", 1.0, "hostapd", 2.0, None),
        Row("serve", "serve PAP: CPU per auth", 1.0, "FreeRADIUS", 2.0, None),
        Row("otp", "totp", 1.0, "pyotp", 2.0, None),
    ]
    assert runner._labels(rows) == [
        "serve PAP: CPU per auth vs hostapd",
        "serve PAP: CPU per auth vs FreeRADIUS",
        "otp: totp",
    ]
