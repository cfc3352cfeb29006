"""One runner for every benchmark in this package: one table, JSON, a chart, the README.

Every ``benchmarks/bench_<topic>.py`` that defines ``run(quick: bool = False)`` is a
timing benchmark: its rows carry ``op``, ``eapkit_us``, ``anchor``, ``anchor_us`` and
``floor_us`` (None where a column does not apply), the anchor and the floor measured in
the same run as eapkit.  ``bench_memory`` defines ``measure(quick)`` instead (bytes, not
microseconds) and gets a table of its own.

Each module runs in a child process of its own (``python -m benchmarks.runner --child``),
so that one benchmark's caches, heap and garbage do not tilt the next one's figures, and
so that one that fails (a missing tool, an import error) costs its rows only: the runner
reports it and exits non-zero at the end.

The JSON written by ``--json FILE`` is a list of objects with exactly the keys ``op``,
``eapkit_us``, ``anchor``, ``anchor_us`` and ``floor_us``; ``op`` is prefixed with the
module's topic (``otp: totp_verify_valid``) so that names stay unique across modules.
The memory figures are not in it (they are not times).

Usage: ``python -m benchmarks [--quick] [--only NAME ...] [--json FILE] [--plot FILE]
[--readme]`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import pkgutil
import platform
import re
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "benchmarks"
ROOT = Path(__file__).resolve().parent.parent
MEMORY = "memory"
README = ROOT / "README.md"
README_CHART = ROOT / "docs" / "bench.png"
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
KEYS = ("op", "eapkit_us", "anchor", "anchor_us", "floor_us")
# a child that runs longer than this is stuck (the full bench_serve takes a few minutes)
CHILD_TIMEOUT = 1800


# -- rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One timed operation; times in microseconds per operation."""

    topic: str
    op: str
    eapkit_us: float
    anchor: str | None
    anchor_us: float | None
    floor_us: float | None

    @property
    def vs_anchor(self) -> float | None:
        """eapkit / anchor: below 1 means eapkit is faster."""
        return _ratio(self.eapkit_us, self.anchor_us)

    @property
    def vs_floor(self) -> float | None:
        """eapkit / floor: how far above the bare primitive eapkit is."""
        return _ratio(self.eapkit_us, self.floor_us)

    @property
    def name(self) -> str:
        return f"{self.topic}: {self.op}"

    def as_json(self) -> dict[str, object]:
        return {
            "op": self.name,
            "eapkit_us": self.eapkit_us,
            "anchor": self.anchor,
            "anchor_us": self.anchor_us,
            "floor_us": self.floor_us,
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _time(value: object) -> float | None:
    """A time from a benchmark row as a finite float, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    raise ValueError(f"not a time in microseconds: {value!r}")


def normalise(topic: str, raw: Mapping[str, Any]) -> Row:
    """A benchmark's row as a :class:`Row`: extra keys (rates, floor labels) dropped,
    ints made floats, a missing anchor or floor made None, a missing anchor name
    cleared when there is no anchor time."""
    if "op" not in raw or _time(raw.get("eapkit_us")) is None:
        raise ValueError(f"{topic}: a row needs op and eapkit_us: {dict(raw)!r}")
    anchor_us = _time(raw.get("anchor_us"))
    anchor = raw.get("anchor")
    return Row(
        topic=topic,
        op=str(raw["op"]),
        eapkit_us=_time(raw["eapkit_us"]) or 0.0,
        anchor=str(anchor) if anchor and anchor_us is not None else None,
        anchor_us=anchor_us,
        floor_us=_time(raw.get("floor_us")),
    )


# -- discovery and running ------------------------------------------------------------------


def topics() -> list[str]:
    """Every benchmark module's topic (``bench_otp`` -> ``otp``), memory last."""
    here = Path(__file__).resolve().parent
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    return sorted(names, key=lambda t: t == MEMORY)


def select(available: Sequence[str], only: Iterable[str]) -> list[str]:
    """The topics named by ``--only`` (``otp``, ``bench_otp`` or a comma list), in the
    order they run; every name must exist."""
    wanted = [
        w.strip().removeprefix("bench_") for item in only for w in item.split(",") if w.strip()
    ]
    if not wanted:
        return list(available)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; have {', '.join(available)}")
    return [t for t in available if t in wanted]


def child(topic: str, quick: bool, out: Path) -> None:
    """Run one module and write its rows as JSON (in the child process)."""
    module = importlib.import_module(f"{PACKAGE}.bench_{topic}")
    if topic == MEMORY:
        rows = module.measure(quick=quick)
    elif hasattr(module, "run"):
        rows = module.run(quick=quick)
    else:
        raise SystemExit(f"bench_{topic} has no run(quick)")
    out.write_text(json.dumps(rows, default=str))


@dataclass
class Outcome:
    topic: str
    rows: list[dict[str, Any]]
    seconds: float
    error: str | None = None


def run_topic(topic: str, quick: bool) -> Outcome:
    """One module in a child process; its rows, its wall time, or what went wrong."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", f"{PACKAGE}.runner", "--child", topic, str(out)]
        if quick:
            cmd.append("--quick")
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Outcome(topic, [], time.perf_counter() - start, "timed out")
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return Outcome(topic, [], seconds, " | ".join(tail) or f"exit {proc.returncode}")
        rows = json.loads(out.read_text())
    return Outcome(topic, rows, seconds)


# -- output ------------------------------------------------------------------------------


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def text_table(rows: Sequence[Row]) -> str:
    """The plain-text table printed on stdout, one block per module."""
    head = ("operation", "eapkit µs", "anchor", "anchor µs", "floor µs", "/anchor", "/floor")
    body = [
        (
            r.op,
            _us(r.eapkit_us),
            r.anchor or "-",
            _us(r.anchor_us),
            _us(r.floor_us),
            _x(r.vs_anchor),
            _x(r.vs_floor),
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    widths[0] = min(widths[0], 64)
    widths[2] = min(widths[2], 48)

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            cell = cell if len(cell) <= w else cell[: w - 1] + "…"
            out.append(cell.ljust(w) if i in (0, 2) else cell.rjust(w))
        return "  ".join(out).rstrip()

    lines = [line(head), line(["-" * w for w in widths])]
    topic = None
    for r, cells in zip(rows, body, strict=True):
        if r.topic != topic:
            topic = r.topic
            lines.append(f"[{topic}]")
        lines.append(line(cells))
    lines.append("/anchor = eapkit µs / anchor µs (below 1: eapkit is faster); ")
    lines[-1] += "/floor = eapkit µs / floor µs"
    return "\n".join(lines)


def standalone(topic: str, run: Callable[[bool], Sequence[Mapping[str, Any]]]) -> None:
    """``python -m benchmarks.bench_<topic> [--quick]``: run one module in this process
    and print its rows in the runner's table."""
    rows = [normalise(topic, raw) for raw in run("--quick" in sys.argv)]
    print(text_table(rows))


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| benchmark | operation | eapkit µs/op | anchor | anchor µs/op | floor µs/op "
        "| eapkit/anchor | eapkit/floor |",
        "|---|---|--:|---|--:|--:|--:|--:|",
    ]
    for r in rows:
        cells = [
            r.topic,
            r.op.replace("|", "\\|"),
            _us(r.eapkit_us),
            (r.anchor or "-").replace("|", "\\|"),
            _us(r.anchor_us),
            _us(r.floor_us),
            _x(r.vs_anchor),
            _x(r.vs_floor),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _human(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def memory_table(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| memory | size | how |", "|---|--:|---|"]
        lines += [f"| {r['what']} | {_human(r['bytes'])} | {r['detail']} |" for r in rows]
        return "\n".join(lines)
    width = max((len(str(r["what"])) for r in rows), default=10)
    lines = [f"{'memory':<{width}}  {'size':>10}  how"]
    lines += [f"{r['what']:<{width}}  {_human(r['bytes']):>10}  {r['detail']}" for r in rows]
    return "\n".join(lines)


def write_json(rows: Sequence[Row], path: Path) -> None:
    path.write_text(json.dumps([r.as_json() for r in rows], indent=2) + "\n")


def plot(rows: Sequence[Row], path: Path, title: str = "") -> None:
    """A horizontal bar chart of eapkit/anchor and eapkit/floor per operation, on a log
    scale, each bar drawn from 1: to the left eapkit takes less time than the anchor (or
    the floor), to the right more.  Modules are shaded in turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.vs_anchor is not None or r.vs_floor is not None]
    height = 0.38
    fig, ax = plt.subplots(figsize=(11, max(3.0, 0.3 * len(shown) + 1.6)), dpi=110)
    for offset, values, colour, label in (
        (-height / 2, [r.vs_anchor for r in shown], "#1f77b4", "eapkit / anchor"),
        (height / 2, [r.vs_floor for r in shown], "#ff7f0e", "eapkit / floor"),
    ):
        points = [(y + offset, v) for y, v in enumerate(values) if v is not None]
        ax.barh(
            [y for y, _ in points],
            [v - 1 for _, v in points],
            left=1,
            height=height,
            color=colour,
            label=label,
        )
        for y, v in points:
            ax.text(
                v * (1.04 if v >= 1 else 1 / 1.04),
                y,
                f"{v:.0f}" if v >= 10 else f"{v:.2g}",
                va="center",
                ha="left" if v >= 1 else "right",
                fontsize=7,
            )
    for k, topic in enumerate(dict.fromkeys(r.topic for r in shown)):
        if k % 2:  # every other module on a grey band
            ys = [i for i, r in enumerate(shown) if r.topic == topic]
            ax.axhspan(min(ys) - 0.5, max(ys) + 0.5, color="#f0f0f0", zorder=0)
    ax.set_xscale("log")
    lo = min(v for r in shown for v in (r.vs_anchor, r.vs_floor) if v is not None)
    hi = max(v for r in shown for v in (r.vs_anchor, r.vs_floor) if v is not None)
    ax.set_xlim(min(lo, 1.0) / 2.5, max(hi, 1.0) * 2.5)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(_labels(shown), fontsize=7.5)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlabel(
        "eapkit time / other time, per operation (log scale; left of 1: eapkit is faster)"
    )
    ax.grid(axis="x", which="major", linewidth=0.3, alpha=0.6)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _labels(rows: Sequence[Row]) -> list[str]:
    """Chart labels: ``topic: op`` (the topic once), and the anchor's name where two rows
    would otherwise read the same."""
    names = [r.op if r.op.startswith(r.topic) else r.name for r in rows]
    return [
        _short(n + (f" vs {r.anchor}" if names.count(n) > 1 and r.anchor else ""))
        for n, r in zip(names, rows, strict=True)
    ]


def _short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, Python and OpenSSL versions: what the figures depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if found:
            cpu = found.group(1).strip()
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "ssl": ssl.OPENSSL_VERSION,
    }
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        info["cryptography"] = backend.openssl_version_text()
        from OpenSSL import SSL

        info["pyOpenSSL"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    except (ImportError, AttributeError):  # versions are informative only
        pass
    return info


def machine_line(info: Mapping[str, str]) -> str:
    parts = [f"{info['cpu']}, {info['cores']} cores", info["python"]]
    parts.append(f"ssl module: {info['ssl']}")
    if "cryptography" in info:
        parts.append(f"cryptography/pyOpenSSL: {info['cryptography']}")
    return "; ".join(parts)


# -- README -----------------------------------------------------------------------------------


def readme_section(
    rows: Sequence[Row],
    memory: Sequence[Mapping[str, Any]],
    info: Mapping[str, str],
    command: str,
    chart: str,
    failed: Sequence[str],
) -> str:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    parts = [
        f"Generated by `{command}` on {today}, on {machine_line(info)}. "
        "Times are µs per operation; the anchor (the library a server would otherwise "
        "use) and the floor (the bare primitive through OpenSSL) are measured in the same "
        "run. eapkit/anchor below 1 means eapkit is faster. What each row measures is in "
        "the docstring of `benchmarks/bench_<benchmark>.py`; see docs/benchmarks.md.",
        "",
        f"![eapkit time / anchor time and eapkit time / floor time, per operation]({chart})",
        "",
        markdown_table(rows),
    ]
    if memory:
        parts += ["", memory_table(memory, markdown=True)]
    if failed:
        parts += ["", "Not run this time: " + ", ".join(failed) + "."]
    return "\n".join(parts)


def update_readme(path: Path, section: str) -> None:
    """Replace what lies between the bench markers (adding a Performance section with
    them at the end when the README has none); nothing else changes."""
    text = path.read_text(encoding="utf-8")
    block = f"{README_START}\n{section}\n{README_END}"
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Performance\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


# -- the command ------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run eapkit's benchmarks against their anchors and floors, in one table.",
    )
    p.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these benchmarks (otp, bench_otp, or a comma list; repeatable)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the rows as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG chart of the ratios")
    p.add_argument(
        "--readme",
        action="store_true",
        help=f"rewrite README.md between {README_START} and {README_END}, chart to docs/bench.png",
    )
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--child", nargs=2, metavar=("TOPIC", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.child:
        child(args.child[0], args.quick, Path(args.child[1]))
        return 0
    available = topics()
    if args.list:
        print("\n".join(available))
        return 0
    chosen = select(available, args.only)
    started = time.perf_counter()
    rows: list[Row] = []
    memory: list[dict[str, Any]] = []
    failed: list[str] = []
    for topic in chosen:
        print(f"running {topic} ...", file=sys.stderr, flush=True)
        outcome = run_topic(topic, args.quick)
        if outcome.error is not None:
            print(f"  {topic} FAILED: {outcome.error}", file=sys.stderr)
            failed.append(topic)
            continue
        print(f"  {topic}: {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
        try:
            if topic == MEMORY:
                memory = outcome.rows
            else:
                rows += [normalise(topic, r) for r in outcome.rows]
        except ValueError as exc:
            print(f"  {topic} FAILED: {exc}", file=sys.stderr)
            failed.append(topic)
    info = machine()
    print(f"machine: {machine_line(info)}")
    if rows:
        print(text_table(rows))
    if memory:
        print()
        print(memory_table(memory))
    if args.json:
        write_json(rows, args.json)
    title = "eapkit benchmarks" + (" (--quick)" if args.quick else "")
    title += f": {info['cpu']}, {info['cores']} cores"
    if args.plot and rows:
        plot(rows, args.plot, title)
    if args.readme:
        README_CHART.parent.mkdir(exist_ok=True)
        plot(rows, README_CHART, title)
        command = "python -m benchmarks --readme" + (" --quick" if args.quick else "")
        if args.only:
            command += " --only " + ",".join(chosen)
        chart = README_CHART.relative_to(ROOT).as_posix()
        update_readme(README, readme_section(rows, memory, info, command, chart, failed))
    print(
        f"{len(rows)} rows from {len(chosen) - len(failed)} benchmarks in "
        f"{time.perf_counter() - started:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
