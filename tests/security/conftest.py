"""Shared fixtures of the attack tests: ``eapkit serve`` as a real process.

:func:`served` starts ``python -m eapkit serve --config eapkit.toml`` in a fresh
directory, on a loopback port the test picked, with its decision log in a file and
its stdout/stderr in another; the process is stopped by its pid when the test ends.
The shared secret lives in the TOML file, never on a command line (``ps`` shows those).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_udp_port

SECRET = "fuzzing-secret-0123456789"
USERS: tuple[tuple[str, str], ...] = (("alice", "wonderland"),)


@dataclass
class Served:
    """A running ``eapkit serve``: its port, pid, files, and what it wrote."""

    workdir: Path
    port: int
    secret: bytes
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pki(self) -> Path:
        return self.workdir / "eapkit-pki"

    @property
    def output_path(self) -> Path:
        return self.workdir / "serve.log"

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.output_path.read_text(errors="replace")

    def decisions(self) -> list[dict[str, Any]]:
        """The decision log, one JSON object a line."""
        path = self.workdir / "decisions.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        """The process's resident set (``VmRSS``) or its peak (``VmHWM``), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        m = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.M)
        assert m is not None, f"no {field_name} in /proc/{self.pid}/status"
        return int(m.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_served(
    workdir: Path,
    toml: str = "",
    *,
    users: Sequence[tuple[str, str]] = USERS,
    secret: str = SECRET,
    timeout: float = 30.0,
) -> Served:
    """Start ``eapkit serve`` in ``workdir`` with ``toml`` added to a configuration that
    sets the listen address, database, decision log and the one loopback client."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, password in users:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "eapkit",
                "user",
                "add",
                name,
                "--password",
                password,
                "--db",
                str(workdir / "eapkit.db"),
            ],
            check=True,
            capture_output=True,
        )
    port = free_udp_port()
    config = workdir / "eapkit.toml"
    config.write_text(
        f'listen = ["127.0.0.1:{port}"]\n'
        'db = "eapkit.db"\n'
        'log = "decisions.log"\n'
        f"{toml}\n"
        "[[clients]]\n"
        'address = "127.0.0.1/32"\n'
        f'secret = "{secret}"\n'
        'name = "test-nas"\n'
    )
    with (workdir / "serve.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eapkit", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    served = Served(workdir, port, secret.encode(), proc)
    deadline = time.monotonic() + timeout
    while "listening on" not in served.output():
        if not served.alive() or time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"eapkit serve did not start:\n{served.output()[-3000:]}")
        time.sleep(0.05)
    return served


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """A factory: ``served(toml="conversation_ttl = 2")`` starts a server; every server
    started is stopped by pid at the end of the test."""
    started: list[Served] = []

    def start(toml: str = "", **kwargs: Any) -> Served:
        srv = start_served(tmp_path / f"serve{len(started)}", toml, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
