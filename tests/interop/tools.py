"""Harness for the interop tests: real software no one here wrote, started and stopped
by the test, on loopback ports the test picked (see ../shared/INTEROP.md).

- :class:`Daemon` starts a program, waits until its output says it is ready, and stops
  it by process id (SIGTERM, then SIGKILL), keeping the output for the failure report.
- :class:`HostapdRadius` runs hostapd's integrated RADIUS/EAP server (no radio).
- :class:`FreeRadius` runs FreeRADIUS 3.2 on a private copy of its config directory.
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

from tests.conftest import IN_CI, free_udp_port, require_tool


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
    def mppe_counts(self) -> tuple[int, int] | None:
        """``(ok, mismatch)`` from eapol_test's last line on the keys: with ``-r N`` it
        counts every authentication, so ``(N + 1, 0)`` means all of them matched."""
        found = re.search(r"MPPE keys OK: (\d+)  mismatch: (\d+)", self.output)
        return (int(found[1]), int(found[2])) if found else None

    @property
    def access_reject(self) -> bool:
        return "(Access-Reject)" in self.output

    @property
    def timed_out(self) -> bool:
        """eapol_test's ``-t`` expired: the server stopped answering."""
        return "EAPOL test timed out" in self.output

    @property
    def resumptions(self) -> int:
        """TLS handshakes that resumed a session (wpa_supplicant's OpenSSL log)."""
        return self.output.count("Handshake finished - resumed=1")

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


_FREERADIUS_CONF = Path("/etc/freeradius/3.0")


@dataclass
class FreeRadius:
    """FreeRADIUS 3.2 on a private copy of Debian's ``/etc/freeradius/3.0``.

    The copy runs as root (``user``/``group`` commented out), is not group/world
    writable (FreeRADIUS refuses that), and has its own paths (``raddbdir``, logs,
    pidfile) so several copies can run at once.  ``sites-enabled`` holds only our own
    ``default`` (auth on 127.0.0.1:``port``) and ``inner-tunnel`` (no listener): the
    stock sites would bind *:1812 and 127.0.0.1:18120.  ``mods-enabled/eap`` is
    rewritten from the fields below, ``users`` is the ``files`` module's authorize file
    (``alice Cleartext-Password := "..."``), ``modules`` adds more ``mods-enabled``
    files (e.g. ``{"python3": "python3 {...}"}``) and ``authorize``/``authenticate``/
    ``post_auth`` (and their ``inner_*`` twins) add lines to the sites' sections, so a
    test of another module or a benchmark reuses the same harness.

    ``tls_cache=True`` turns on FreeRADIUS's TLS session cache, so it sends TLS 1.3
    NewSessionTickets and offers resumption.  ``settings`` overrides other
    ``radiusd.conf`` items by name (``max_requests``, ``cleanup_delay``,
    ``start_servers``...).

    ``debug=True`` runs ``freeradius -X`` (single-threaded, full trace in
    ``workdir/freeradius.log``); ``debug=False`` runs ``-f`` with its thread pool, which
    is what a load test must measure (see ../shared/INTEROP.md).
    """

    workdir: Path
    users: str = ""
    secret: str = "testing123"
    ca_cert: Path | None = None
    server_cert: Path | None = None
    private_key: Path | None = None
    tls_min_version: str = "1.2"
    tls_max_version: str = "1.3"
    eap_types: Sequence[str] = ("md5", "gtc", "mschapv2", "tls", "ttls", "peap")
    default_eap_type: str = "md5"
    inner_eap_type: str = "mschapv2"
    fragment_size: int = 1024
    tls_cache: bool = False
    mschapv2_send_error: bool = False
    eap_extra: str = ""
    modules: dict[str, str] = field(default_factory=dict)
    authorize: Sequence[str] = ()
    authenticate: Sequence[str] = ()
    post_auth: Sequence[str] = ()
    inner_authorize: Sequence[str] = ()
    inner_authenticate: Sequence[str] = ()
    inner_post_auth: Sequence[str] = ()
    debug: bool = True
    max_servers: int = 32
    reject_delay: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    port: int = 0
    accounting: bool = False  # also listen for accounting on ``acct_port``
    acct_port: int = 0
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def confdir(self) -> Path:
        return self.workdir / "raddb"

    @property
    def log(self) -> Path:
        return self.workdir / "freeradius.log"

    # -- config text, one method per file so a caller can override or inspect it --

    def tls_common(self) -> str:
        if self.server_cert is None:
            return ""
        assert self.ca_cert is not None and self.private_key is not None
        return f"""
    tls-config tls-common {{
        private_key_file = "{self.private_key}"
        certificate_file = "{self.server_cert}"
        ca_file = "{self.ca_cert}"
        cipher_list = "DEFAULT"
        cipher_server_preference = no
        tls_min_version = "{self.tls_min_version}"
        tls_max_version = "{self.tls_max_version}"
        ecdh_curve = ""
        fragment_size = {self.fragment_size}
        cache {{
            enable = {"yes" if self.tls_cache else "no"}
            lifetime = 1
        }}
        verify {{
        }}
        ocsp {{
            enable = no
        }}
    }}
"""

    def eap_module(self) -> str:
        """``mods-enabled/eap``: only the methods in ``eap_types`` (TLS-based ones only
        when a server certificate is given)."""
        tls_based = {"tls", "ttls", "peap"}
        types = [t for t in self.eap_types if t not in tls_based or self.server_cert]
        subs = {
            "md5": "md5 {\n    }",
            # GTC's password goes through Auth-Type PAP, checked against the
            # Cleartext-Password the files module put in the control list.
            "gtc": "gtc {\n        auth_type = PAP\n    }",
            # send_error = yes: an MS-CHAPv2 Failure packet before the EAP-Failure.
            "mschapv2": (
                "mschapv2 {\n"
                f"        send_error = {'yes' if self.mschapv2_send_error else 'no'}\n    }}"
            ),
            "tls": "tls {\n        tls = tls-common\n    }",
            "ttls": (
                "ttls {\n        tls = tls-common\n"
                f"        default_eap_type = {self.inner_eap_type}\n"
                "        copy_request_to_tunnel = no\n        use_tunneled_reply = no\n"
                '        virtual_server = "inner-tunnel"\n    }'
            ),
            "peap": (
                "peap {\n        tls = tls-common\n"
                f"        default_eap_type = {self.inner_eap_type}\n"
                "        copy_request_to_tunnel = no\n        use_tunneled_reply = no\n"
                '        virtual_server = "inner-tunnel"\n    }'
            ),
        }
        body = "\n    ".join(subs[t] for t in types)
        return (
            "eap {\n"
            f"    default_eap_type = {self.default_eap_type}\n"
            "    timer_expire = 60\n"
            "    ignore_unknown_eap_types = no\n"
            "    cisco_accounting_username_bug = no\n"
            "    max_sessions = ${max_requests}\n"
            f"{self.tls_common()}\n"
            f"    {body}\n"
            f"{self.eap_extra}\n"
            "}\n"
        )

    def clients(self) -> str:
        return (
            "client localhost {\n"
            "    ipaddr = 127.0.0.1\n"
            f'    secret = "{self.secret}"\n'
            "    require_message_authenticator = no\n"
            "    nas_type = other\n"
            "}\n"
        )

    @staticmethod
    def _lines(lines: Sequence[str]) -> str:
        return "".join(f"        {line}\n" for line in lines)

    def default_site(self) -> str:
        return (
            "server default {\n"
            "    listen {\n"
            "        type = auth\n"
            "        ipaddr = 127.0.0.1\n"
            f"        port = {self.port}\n"
            "    }\n"
            f"{self._accounting_sections()}"
            "    authorize {\n"
            f"{self._lines(self.authorize)}"
            "        mschap\n"
            "        eap {\n            ok = return\n        }\n"
            "        files\n"
            "        pap\n"
            "    }\n"
            "    authenticate {\n"
            f"{self._lines(self.authenticate)}"
            "        Auth-Type PAP {\n            pap\n        }\n"
            # Bare EAP-MSCHAPv2 calls this sub-section from the outer server.
            "        Auth-Type MS-CHAP {\n            mschap\n        }\n"
            "        eap\n"
            "    }\n"
            "    post-auth {\n"
            f"{self._lines(self.post_auth)}"
            "        Post-Auth-Type REJECT {\n"
            "            attr_filter.access_reject\n"
            "            eap\n"
            "            remove_reply_message_if_eap\n"
            "        }\n"
            "    }\n"
            "}\n"
        )

    def _accounting_sections(self) -> str:
        if not self.accounting:
            return ""
        return (
            "    listen {\n"
            "        type = acct\n"
            "        ipaddr = 127.0.0.1\n"
            f"        port = {self.acct_port}\n"
            "    }\n"
            "    preacct {\n        ok\n    }\n"
            "    accounting {\n        ok\n    }\n"
        )

    def inner_site(self) -> str:
        # No listen section: reachable only from the ttls/peap modules.
        return (
            "server inner-tunnel {\n"
            "    authorize {\n"
            f"{self._lines(self.inner_authorize)}"
            "        mschap\n"
            "        eap {\n            ok = return\n        }\n"
            "        files\n"
            "        pap\n"
            "    }\n"
            "    authenticate {\n"
            f"{self._lines(self.inner_authenticate)}"
            "        Auth-Type PAP {\n            pap\n        }\n"
            "        Auth-Type MS-CHAP {\n            mschap\n        }\n"
            "        eap\n"
            "    }\n"
            "    post-auth {\n"
            f"{self._lines(self.inner_post_auth)}"
            "        Post-Auth-Type REJECT {\n"
            "            attr_filter.access_reject\n"
            "        }\n"
            "    }\n"
            "}\n"
        )

    def radiusd_conf(self, stock: str) -> str:
        """The stock radiusd.conf with its paths moved into ``workdir`` and root kept."""
        run = self.workdir / "run"
        logs = self.workdir / "log"
        subs = [
            (r"(?m)^raddbdir\s*=.*$", f"raddbdir = {self.confdir}"),
            (r"(?m)^logdir\s*=.*$", f"logdir = {logs}"),
            (r"(?m)^run_dir\s*=.*$", f"run_dir = {run}"),
            (r"(?m)^(\s*)(user|group)\s*=\s*freerad", r"\1#\2 = freerad"),
            (r"(?m)^(\s*)reject_delay\s*=.*$", rf"\g<1>reject_delay = {self.reject_delay}"),
            (r"(?m)^proxy_requests\s*=.*$", "proxy_requests = no"),
            (r"(?m)^(\s*)max_servers\s*=.*$", rf"\g<1>max_servers = {self.max_servers}"),
        ]
        # Any other radiusd.conf item by name, e.g. {"cleanup_delay": "2"} for a load test.
        subs += [
            (rf"(?m)^([ \t]*){re.escape(k)}[ \t]*=.*$", rf"\g<1>{k} = {v}")
            for k, v in self.settings.items()
        ]
        for pattern, repl in subs:
            stock, n = re.subn(pattern, repl, stock, count=1)
            if n == 0:
                raise RuntimeError(f"radiusd.conf: {pattern!r} not found; stock file changed?")
        return stock

    def configure(self) -> Path:
        """Write the private config directory (also picks the port); returns it."""
        import shutil

        require_tool("freeradius")
        if not os.access(_FREERADIUS_CONF / "radiusd.conf", os.R_OK):
            # Debian's config is readable by root and freerad only.
            import pytest

            message = f"{_FREERADIUS_CONF} is not readable (run as root or in group freerad)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_udp_port()
        if self.accounting and self.acct_port == 0:
            self.acct_port = free_udp_port()
        conf = self.confdir
        if conf.exists():
            shutil.rmtree(conf)
        shutil.copytree(_FREERADIUS_CONF, conf, symlinks=True)
        for sub in ("run", "log"):
            (self.workdir / sub).mkdir(exist_ok=True)
        radiusd = conf / "radiusd.conf"
        radiusd.write_text(self.radiusd_conf(radiusd.read_text()))
        (conf / "clients.conf").write_text(self.clients())
        for site in (conf / "sites-enabled").iterdir():
            site.unlink()
        (conf / "sites-enabled" / "default").write_text(self.default_site())
        (conf / "sites-enabled" / "inner-tunnel").write_text(self.inner_site())
        (conf / "mods-enabled" / "eap").unlink()
        (conf / "mods-enabled" / "eap").write_text(self.eap_module())
        for name, text in self.modules.items():
            target = conf / "mods-enabled" / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.write_text(text)
        authorize = conf / "mods-config" / "files" / "authorize"
        authorize.unlink()
        authorize.write_text(self.users)
        # FreeRADIUS refuses group/world-writable config (chmod -R go-w).
        for path in [conf, *conf.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o022)
        return conf

    def check(self) -> subprocess.CompletedProcess[str]:
        """``freeradius -CX``: parse and instantiate the config, then exit."""
        exe = require_tool("freeradius")["freeradius"]
        self.configure()
        return subprocess.run(
            [exe, "-CX", "-d", str(self.confdir)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            check=False,
        )

    def output(self) -> str:
        return self.daemon.output() if self.daemon is not None else ""

    def __enter__(self) -> FreeRadius:
        exe = require_tool("freeradius")["freeradius"]
        self.configure()
        flags = ["-X"] if self.debug else ["-f", "-l", "stdout"]
        self.daemon = Daemon(
            [exe, *flags, "-d", str(self.confdir)],
            self.log,
            ready=r"Ready to process requests",
            timeout=30,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()
