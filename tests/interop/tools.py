"""Harness for the interop tests: real software no one here wrote, started and stopped
by the test, on loopback ports the test picked (see ../shared/INTEROP.md).

- :class:`Daemon` starts a program, waits until its output says it is ready, and stops
  it by process id (SIGTERM, then SIGKILL), keeping the output for the failure report.
- :class:`HostapdRadius` runs hostapd's integrated RADIUS/EAP server (no radio).
- :func:`eapol_test` runs wpa_supplicant's ``eapol_test`` as the EAP peer and parses what
  it reports: the verdict, the MSK/EMSK/Session-Id it derived and whether the MPPE keys
  and EAP-Key-Name the server sent agree with them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_udp_port, require_tool


class Daemon:
    """One background process, stopped by pid."""

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        ready: str | None = None,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self._logfile = log.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.pid = self.proc.pid
        if ready is not None:
            self.wait_for(ready, timeout)

    def output(self) -> str:
        self._logfile.flush()
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.M)
        while time.monotonic() < deadline:
            if m := regex.search(self.output()):
                return m
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"{self.argv[0]} not ready ({pattern!r}):\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._logfile.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class HostapdRadius:
    """hostapd 2.10 as a RADIUS/EAP server: ``driver=none``, ``eap_server=1``.

    ``users`` is the eap_user file's text; TLS files are optional.  hostapd binds
    0.0.0.0 on the port (it has no bind option) but answers only the 127.0.0.1 client.
    """

    workdir: Path
    users: str
    secret: str = "testing123"
    ca_cert: Path | None = None
    server_cert: Path | None = None
    private_key: Path | None = None
    tls13: bool = True
    extra: Sequence[str] = ()
    port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    def __enter__(self) -> HostapdRadius:
        exe = require_tool("hostapd")["hostapd"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_udp_port()
        (self.workdir / "eap_users").write_text(self.users)
        (self.workdir / "clients").write_text(f"127.0.0.1/32 {self.secret}\n")
        lines = [
            "driver=none",
            "interface=lo",
            "logger_stdout=-1",
            "logger_stdout_level=0",
            "eap_server=1",
            f"eap_user_file={self.workdir / 'eap_users'}",
            f"radius_server_clients={self.workdir / 'clients'}",
            f"radius_server_auth_port={self.port}",
            "radius_server_acct_port=0",
            "radius_server_ipv6=0",
        ]
        if self.server_cert is not None:
            assert self.ca_cert is not None and self.private_key is not None
            lines += [
                f"ca_cert={self.ca_cert}",
                f"server_cert={self.server_cert}",
                f"private_key={self.private_key}",
            ]
            if self.tls13:
                lines.append("tls_flags=[ENABLE-TLSv1.3]")
        lines += list(self.extra)
        conf = self.workdir / "hostapd.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.daemon = Daemon(
            [exe, "-dd", str(conf)],
            self.workdir / "hostapd.log",
            ready=r"interface state \S+->ENABLED",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()


_HEX = r"((?:[0-9a-f]{2} ?)+)"


@dataclass
class EapolResult:
    returncode: int
    output: str

    @property
    def success(self) -> bool:
        return self.returncode == 0 and self.output.rstrip().endswith("SUCCESS")

    @property
    def mppe_ok(self) -> bool:
        return "MPPE keys OK: 1  mismatch: 0" in self.output

    @property
    def session_id_matches(self) -> bool:
        return bool(re.search(r"Session-Id matches EAP-Key-Name", self.output))

    def hexdump(self, label: str) -> bytes | None:
        """The last ``<label> - hexdump(len=N): ..`` line's bytes, e.g. label
        ``EAP-TLS: Derived key``."""
        found = re.findall(re.escape(label) + r" - hexdump\(len=\d+\): " + _HEX, self.output)
        return bytes.fromhex(found[-1].replace(" ", "")) if found else None


def eapol_test(
    network: str,
    port: int,
    workdir: Path,
    *,
    secret: str = "testing123",
    no_mppe: bool = False,
    timeout: int = 15,
    extra: Sequence[str] = (),
) -> EapolResult:
    """Run ``eapol_test`` with the network block ``network`` (the inside of
    ``network={...}``) against a RADIUS server on 127.0.0.1:``port``."""
    exe = require_tool("eapol_test")["eapol_test"]
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "eapol_test.conf"
    conf.write_text("network={\n" + network.strip() + "\n}\n")
    argv = [exe, "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-s", secret]
    argv += ["-t", str(timeout), *(["-n"] if no_mppe else []), *extra]
    proc = subprocess.run(
        argv, capture_output=True, text=True, errors="replace", timeout=timeout + 30, check=False
    )
    (workdir / "eapol_test.log").write_text(proc.stdout + proc.stderr)
    return EapolResult(proc.returncode, proc.stdout + proc.stderr)


@dataclass
class EapkitServe:
    """``eapkit serve`` as a real process (``python -m eapkit serve``), on a free
    loopback port, with its own database, demo PKI and decision log in ``workdir``."""

    workdir: Path
    users: Sequence[tuple[str, str]] = (("alice", "wonderland"),)
    secret: str = "testing123"
    extra: Sequence[str] = ()
    port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def pki(self) -> Path:
        return self.workdir / "eapkit-pki"

    @property
    def decisions(self) -> list[dict[str, object]]:
        import json

        path = self.workdir / "decisions.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def __enter__(self) -> EapkitServe:
        import sys

        self.workdir.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        for name, password in self.users:
            subprocess.run(
                [
                    python,
                    "-m",
                    "eapkit",
                    "user",
                    "add",
                    name,
                    "--password",
                    password,
                    "--db",
                    str(self.workdir / "eapkit.db"),
                ],
                check=True,
                capture_output=True,
            )
        self.port = free_udp_port()
        argv = [
            python,
            "-m",
            "eapkit",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--secret",
            self.secret,
            "--db",
            str(self.workdir / "eapkit.db"),
            "--log",
            str(self.workdir / "decisions.log"),
            *self.extra,
        ]
        self.daemon = Daemon(
            argv, self.workdir / "serve.log", ready=r"listening on", cwd=self.workdir
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()
