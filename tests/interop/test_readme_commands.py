"""The README's main-job command and the client commands it shows work as written: the
server command is run from a fresh working directory (only a port the test picked is
added), then each probe command and the eapol_test example authenticate against it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_udp_port
from tests.interop.tools import Daemon, eapol_test

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def sh_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                commands.append(command.strip())
    return commands


def eapkit_argv(command: str) -> list[str]:
    """``... .venv/bin/eapkit ARGS`` -> the same ARGS through this interpreter."""
    tail = command.split(".venv/bin/eapkit", 1)[1]
    return [sys.executable, "-m", "eapkit", *shlex.split(tail)]


def test_readme_main_job_and_clients(tmp_path: Path) -> None:
    commands = sh_commands()
    serve = next(c for c in commands if "eapkit serve" in c)
    assert serve.startswith("scripts/setup && ")
    probes = [c for c in commands if "eapkit probe" in c]
    assert len(probes) >= 2
    port = free_udp_port()
    argv = [*eapkit_argv(serve), "--listen", f"127.0.0.1:{port}"]
    with Daemon(argv, tmp_path / "serve.log", ready="listening on", cwd=tmp_path) as server:
        for command in probes:
            out = subprocess.run(
                [*eapkit_argv(command), "--server", f"127.0.0.1:{port}"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, (command, out.stdout, out.stderr)
            assert out.stdout.rstrip().endswith("ACCEPT")
            assert "MPPE keys OK" in out.stdout
        block = re.search(r"```\n(network=\{.*?\})\n```", README, re.S)
        assert block is not None
        network = block.group(1).removeprefix("network={").removesuffix("}")
        network = network.replace('"eapkit-pki/', f'"{tmp_path}/eapkit-pki/')
        result = eapol_test(network, port, tmp_path / "eapol")
        assert result.success and result.mppe_ok, result.output[-2000:]
        assert "demo user alice added" in server.output()
