"""pcscd with the vpcd virtual reader, and virtual cards from ``python -m tokens.sim``.

vpcd (Debian ``vsmartcard-vpcd``) is a reader driver pcscd loads through
``/etc/reader.conf.d/vpcd``; it listens on fixed TCP ports 35963 and 35964 (readers
``Virtual PCD 00 00`` and ``00 01``), so only one test run at a time can use it.  The
session fixture reuses a pcscd that already serves vpcd (a developer's system daemon),
otherwise starts ``pcscd -f -d`` itself and stops it by pid at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_tool

VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
PORTS = {READERS[0]: 35963, READERS[1]: 35964}
ROOT = Path(__file__).resolve().parents[2]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _vpcd_listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PORTS[READERS[0]]), timeout=0.5):
            pass
    except OSError:
        return False
    # our probe looked like a card to vpcd for a moment; give it time to see it leave
    time.sleep(0.3)
    return True


def _readers() -> list[str]:
    from tokens.pcsc import list_readers

    try:
        return list_readers()
    except Exception:
        return []


def _fail_or_skip(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A pcscd serving the vpcd readers; yields the reader names."""
    tools = require_tool("pcscd")
    try:
        import smartcard  # noqa: F401
    except ImportError:
        _fail_or_skip("pyscard is not installed (pip install pyscard; needs swig, libpcsclite-dev)")
    if not VPCD_CONF.exists():
        _fail_or_skip(
            f"vpcd is not configured for pcscd ({VPCD_CONF}; apt-get install vsmartcard-vpcd)"
        )
    proc: subprocess.Popen[bytes] | None = None
    if _vpcd_listening():
        readers = _readers()
        if not all(r in readers for r in READERS):
            _fail_or_skip("something else listens on vpcd's port 35963")
    else:
        if Path("/run/pcscd/pcscd.comm").exists() and _readers():
            _fail_or_skip("a pcscd without vpcd is running; stop it to run the PC/SC tests")
        log = (tmp_path_factory.mktemp("pcscd") / "pcscd.log").open("wb")
        proc = subprocess.Popen([tools["pcscd"], "-f", "-d"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not all(r in _readers() for r in READERS):
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                pytest.fail(f"pcscd did not bring up the vpcd readers (log: {log.name})")
            time.sleep(0.2)
    try:
        yield list(READERS)
    finally:
        if proc is not None:
            _stop(proc)


def card_present(reader: str) -> bool:
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def _wait_for(reader: str, present: bool, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 15
    while card_present(reader) != present:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"tokens.sim exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"card in {reader!r} did not become {'present' if present else 'absent'}")
        time.sleep(0.1)


CardFactory = Callable[..., Path]


@pytest.fixture
def virtual_card(pcscd: list[str], tmp_path: Path) -> Iterator[CardFactory]:
    """``virtual_card(kind, state, reader=READERS[0])`` inserts a card; returns its state file.

    Each card runs as ``python -m tokens.sim`` and is removed (SIGTERM, by pid) at the end.
    """
    procs: list[tuple[subprocess.Popen[bytes], str]] = []

    def insert(kind: str, state: dict[str, Any] | None = None, reader: str = READERS[0]) -> Path:
        _wait_for(reader, False)
        path = tmp_path / f"{kind}-{len(procs)}.json"
        path.write_text(json.dumps(state or {}))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokens.sim",
                "--card",
                kind,
                "--port",
                str(PORTS[reader]),
                "--state",
                str(path),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"{kind}-{len(procs)}.log").open("wb"),
        )
        procs.append((proc, reader))
        _wait_for(reader, True, proc)
        return path

    try:
        yield insert
    finally:
        for proc, reader in procs:
            _stop(proc)
            _wait_for(reader, False)
