"""Server CPU per login of ``eapkit serve`` variants under the same load, interleaved
(issue 21): this tree with the asyncio loop, this tree with ``EAPKIT_EVENT_LOOP=uvloop``,
and, with ``--before DIR``, the tree at DIR (another checkout, e.g. main before the fast
path) on the asyncio loop.  Rounds run the variants in turn (A B C A B C ...), so load
from elsewhere on the machine hits them alike; the figure is the median per variant.

    python -m benchmarks.serve_variants --only=EAP-MSCHAPv2 --rounds 3 --count 300 \\
        --before /work/main

The load and the CPU measure are :mod:`benchmarks.bench_serve`'s (``eapkit.loadgen``
over 2 processes, utime + stime of the server from ``/proc/PID/stat``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_serve import EAP_METHODS, REPO, _eapkit, make_pki, measure_probe, running


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_variants")
    parser.add_argument("--only", default="EAP-MSCHAPv2", help="comma-separated rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--before", type=Path, help="another checkout, run as 'before'")
    args = parser.parse_args(argv)
    variants: dict[str, tuple[str, str]] = {"asyncio": (str(REPO), "asyncio")}
    variants["uvloop"] = (str(REPO), "uvloop")
    if args.before is not None:
        variants["before"] = (str(args.before.resolve()), "asyncio")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "EAPKIT_EVENT_LOOP")}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            p = make_pki(work)
            for r in range(args.rounds):
                for name in [n.strip() for n in args.only.split(",")]:
                    _, methods, _, _ = EAP_METHODS[name]
                    for variant, (path, loop) in variants.items():
                        os.environ["PYTHONPATH"] = path
                        os.environ["EAPKIT_EVENT_LOOP"] = loop
                        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{name}-{variant}-{r}")
                        with running(_eapkit(work / slug, p, methods, 1)) as found:
                            assert found is not None
                            pid, port, secret = found
                            m = measure_probe(variant, name, pid, port, secret, p, count=args.count)
                        assert m is not None and not m.failures, m
                        cpu.setdefault((name, variant), []).append(m.cpu_us_per_auth)
                        print(f"  round {r} {name:18} {variant:8} {m.cpu_us_per_auth:8.0f} µs")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for (name, variant), values in cpu.items():
        print(f"{name:18} {variant:8} median {statistics.median(values):8.0f} µs of server CPU")


if __name__ == "__main__":
    main()
