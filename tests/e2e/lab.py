"""A two-namespace IKEv2 lab: a strongSwan client and a strongSwan gateway whose
``eap-radius`` plugin asks ``eapkit serve`` (see ../../docs/ikev2.md).

::

    netns <run>-cl                          netns <run>-gw
    +-------------------------+   veth     +-------------------------------------+
    | charon (client)         |------------| charon (gateway, eap-radius)        |
    | 192.0.2.2/24            |            | 192.0.2.1/24, 198.51.100.1/32 (lo)  |
    | virtual IP from eapkit  |            | eapkit serve on 127.0.0.1 (its own) |
    +-------------------------+            +-------------------------------------+

Everything the lab makes lives inside the two namespaces it creates (TEST-NET
addresses, RFC 5737) and in a temp dir; :meth:`Lab.close` stops the processes by pid
and deletes the namespaces, whatever happened before.

Traps met on the way (Debian 12, strongSwan 5.9.8):

- charon writes ``/var/run/charon.pid`` (a path compiled in) and refuses to start
  while another charon's pid file names a live process.  ``ip netns exec`` already gives
  the command a private mount namespace, so each charon gets its own ``/run`` there: a
  bind mount of a temp dir, gone with the process.
- The plugin list is explicit (``load_modular = no``): no ``stroke`` (a socket in
  ``/run``), no ``resolve`` (it would rewrite ``/etc/resolv.conf`` when a DNS server is
  assigned), no ``updown`` (iptables).
- ``swanctl`` reaches charon through the vici socket path, so it runs outside the
  namespaces with ``--uri unix://...``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, require_tool
from tests.interop.tools import Daemon

CLIENT_ADDR = "192.0.2.2"
GATEWAY_ADDR = "192.0.2.1"
PROTECTED_NET = "198.51.100.0/24"  # behind the gateway: the CHILD_SA's local_ts
PROTECTED_ADDR = "198.51.100.1"
VIP_NET = "10.99.0.0/24"  # the virtual IPs eapkit hands out
GATEWAY_ID = "vpn.eapkit.test"
RADIUS_ID = "radius.eapkit.test"
CHARON = "/usr/lib/ipsec/charon"
_SWANCTL_DIRS: tuple[str, ...] = ("x509", "x509ca", "x509crl", "x509ocsp", "x509aa", "x509ac")
_SWANCTL_DIRS += ("pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")

_COMMON_PLUGINS = (
    "random drbg nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey "
    "kdf hmac sha1 sha2 md5 aes gcm kernel-netlink socket-default vici"
)
CLIENT_PLUGINS = f"{_COMMON_PLUGINS} eap-identity eap-gtc eap-mschapv2 eap-tls eap-ttls"
GATEWAY_PLUGINS = f"{_COMMON_PLUGINS} eap-identity eap-radius"


def tools() -> dict[str, str]:
    """The executables the lab needs (skip, or fail under CI, when one is missing), and
    root, which network namespaces and charon need."""
    if os.geteuid() != 0:
        message = "the IKEv2 lab needs root (network namespaces, charon)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    found = require_tool("ip", "swanctl", "charon", "mount")
    if not Path(CHARON).exists():  # require_tool found some other charon
        require_tool(CHARON)
    found["charon"] = CHARON
    return found


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


# -- swanctl's --raw output -----------------------------------------------------------

_TOKEN = re.compile(r"[{}\[\]=]|[^\s{}\[\]=]+")


def parse_raw(text: str) -> dict[str, Any]:
    """The body of one vici message as printed by ``swanctl --raw``:
    ``k=v sec {..} list=[a b]`` (values are unquoted words: enough for the states,
    identities, addresses and numbers the tests read)."""
    tokens = _TOKEN.findall(text)
    pos = 0

    def section() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != "}":
            key = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == "=":
                pos += 1
            if pos < len(tokens) and tokens[pos] == "{":
                pos += 1
                out[key] = section()
                pos += 1  # "}"
            elif pos < len(tokens) and tokens[pos] == "[":
                pos += 1
                items = []
                while pos < len(tokens) and tokens[pos] != "]":
                    items.append(tokens[pos])
                    pos += 1
                pos += 1  # "]"
                out[key] = items
            elif pos < len(tokens):
                out[key] = tokens[pos]
                pos += 1
        return out

    return section()


# -- the processes ----------------------------------------------------------------------


@dataclass
class Charon:
    """One charon in a namespace with its own strongswan.conf, vici socket and /run."""

    netns: str
    workdir: Path
    plugins: str
    settings: str = ""  # more text inside the charon { } section
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def vici(self) -> Path:
        return self.workdir / "charon.vici"

    @property
    def conf(self) -> Path:
        return self.workdir / "strongswan.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "charon.log"

    def strongswan_conf(self) -> str:
        return f"""
charon {{
    load_modular = no
    load = {self.plugins}
    port = 500
    port_nat_t = 4500
    # retransmits: a refused exchange must end quickly in the tests
    retransmit_tries = 2
    retransmit_timeout = 1.0
    retransmit_base = 1.4
    install_routes = yes
    install_virtual_ip = yes
    filelog {{
        stderr {{
            time_format = %H:%M:%S
            default = 1
            ike = 2
            cfg = 2
            knl = 1
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{self.vici}
        }}
    }}
{self.settings}
}}
swanctl {{
    load = pem pkcs1 pkcs8 x509 openssl random drbg nonce
}}
"""

    def start(self) -> Charon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = self.workdir / "run"
        run_dir.mkdir(exist_ok=True)
        self.conf.write_text(self.strongswan_conf())
        for kind in _SWANCTL_DIRS:  # swanctl complains about each missing one
            (self.swanctl_dir / kind).mkdir(parents=True, exist_ok=True)
        # `ip netns exec` puts the command in a fresh mount namespace: the bind mount
        # gives this charon a /run (pid file) of its own and disappears with it.
        script = f"mount --bind {run_dir} /run && exec {CHARON}"
        self.daemon = Daemon(
            ["ip", "netns", "exec", self.netns, "sh", "-c", script],
            self.log,
            env={"STRONGSWAN_CONF": str(self.conf)},
        )
        deadline = time.monotonic() + 20
        while not self.vici.exists():
            if self.daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"charon in {self.netns} did not start:\n{self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.daemon.output() if self.daemon is not None else ""

    def mark(self) -> int:
        """Where the log ends now, to read only what follows with :meth:`since`."""
        return len(self.output())

    def since(self, mark: int) -> str:
        return self.output()[mark:]

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        argv = ["swanctl", *args, "--uri", f"unix://{self.vici}"]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            env={**os.environ, "STRONGSWAN_CONF": str(self.conf)},
        )
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}:\n{out}")
        return out

    @property
    def swanctl_dir(self) -> Path:
        """swanctl's usual layout: swanctl.conf, x509/, x509ca/, x509crl/, private/."""
        return self.workdir / "swanctl"

    def install(self, kind: str, name: str, data: bytes) -> Path:
        """A certificate, CA, CRL or key file where ``--load-all`` picks it up."""
        path = self.swanctl_dir / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if kind == "private":
            path.chmod(0o600)
        return path

    def uninstall(self, kind: str, name: str) -> None:
        (self.swanctl_dir / kind / name).unlink(missing_ok=True)

    def load(self, swanctl_conf: str) -> str:
        """Replace every connection and credential with those of ``swanctl_conf`` and
        the files in :attr:`swanctl_dir`."""
        path = self.swanctl_dir / "swanctl.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(swanctl_conf)
        return self.swanctl("--load-all", "--clear", "--noprompt", "--file", str(path))

    def initiate(self, ike: str, child: str | None = None, timeout: int = 20) -> tuple[bool, str]:
        args = ["--initiate", "--ike", ike, "--timeout", str(timeout)]
        if child is not None:
            args += ["--child", child]
        try:
            out = self.swanctl(*args, check=False, timeout=timeout + 10)
        except subprocess.TimeoutExpired as exc:
            return False, f"timeout: {exc}"
        ok = bool(re.search(r"initiate completed successfully", out))
        return ok, out

    def sas(self) -> dict[str, Any]:
        """IKE_SAs by name (the last one wins when a name has several)."""
        out = self.swanctl("--list-sas", "--raw", "--noblock")
        found: dict[str, Any] = {}
        for line in out.splitlines():
            if line.startswith("list-sa event {") and line.endswith("}"):
                found.update(parse_raw(line[len("list-sa event {") : -1]))
        return found

    def terminate_all(self) -> None:
        for sa in self.sas().values():
            self.swanctl(
                "--terminate", "--ike-id", sa.get("uniqueid", "0"), "--timeout", "10", check=False
            )

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()


@dataclass
class Serve:
    """``eapkit serve`` in the gateway's namespace, on that namespace's 127.0.0.1."""

    netns: str
    workdir: Path
    config: str  # TOML
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def db(self) -> Path:
        return self.workdir / "eapkit.db"

    @property
    def decision_log(self) -> Path:
        return self.workdir / "decisions.log"

    def eapkit(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """An ``eapkit`` command on this server's database (user add, enroll ...)."""
        return subprocess.run(
            [sys.executable, "-m", "eapkit", *args],
            capture_output=True,
            text=True,
            check=check,
            cwd=self.workdir,
        )

    def start(self) -> Serve:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "eapkit.toml"
        conf.write_text(self.config)
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-m", "eapkit", "serve"]
        self.daemon = Daemon(
            [*argv, "--config", str(conf)],
            self.workdir / "serve.log",
            ready=r"listening on",
            cwd=self.workdir,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    def records(self) -> list[dict[str, Any]]:
        if not self.decision_log.exists():
            return []
        return [
            json.loads(line) for line in self.decision_log.read_text().splitlines() if line.strip()
        ]

    def mark(self) -> int:
        return len(self.records())

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.records()[mark:]

    def wait_for(
        self,
        mark: int,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
        what: str = "a record",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.since(mark):
                if pred(rec):
                    return rec
            if time.monotonic() > deadline:
                seen = self.since(mark)
                raise AssertionError(f"no {what} in eapkit's log after {timeout}s: {seen}")
            time.sleep(0.05)


_OURS = re.compile(r"^(eapkit-e2e-(\d+)-[0-9a-f]+-(?:cl|gw))\b", re.M)


def sweep_stale_namespaces() -> None:
    """Delete namespaces an earlier run made and could not remove (its process was
    killed): their names carry the pid of the test process, which is gone."""
    listing = run(["ip", "netns", "list"], check=False)
    for m in _OURS.finditer(listing):
        pid = int(m.group(2))
        try:
            os.kill(pid, 0)  # only asks whether the process exists
        except ProcessLookupError:
            run(["ip", "netns", "del", m.group(1)], check=False)
        except PermissionError:
            pass


class Lab:
    """Two namespaces joined by a veth pair; charons and eapkit are added by the test."""

    def __init__(self, workdir: Path) -> None:
        tools()
        sweep_stale_namespaces()
        self.workdir = workdir
        run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.client_ns = f"eapkit-e2e-{run_id}-cl"
        self.gateway_ns = f"eapkit-e2e-{run_id}-gw"
        self.made: list[str] = []
        self.processes: list[Charon | Serve] = []

    def ns(self, netns: str, *argv: str, check: bool = True) -> str:
        return run(["ip", "netns", "exec", netns, *argv], check=check)

    def kernel_esp(self) -> str | None:
        """None when the kernel installs an ESP SA in a namespace, else its refusal.

        Without it (a kernel built without ``CONFIG_INET_ESP``, as in some sandboxes)
        the charons use ``kernel-libipsec``: ESP in user space over a TUN device."""
        out = subprocess.run(
            [
                *("ip", "netns", "exec", self.gateway_ns, "ip", "xfrm", "state", "add"),
                *("src", GATEWAY_ADDR, "dst", CLIENT_ADDR, "proto", "esp", "spi", "0x1000"),
                *("mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x" + "00" * 20, "128"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            return (out.stderr or out.stdout).strip() or f"exit {out.returncode}"
        self.ns(self.gateway_ns, "ip", "xfrm", "state", "flush")
        return None

    def up(self) -> Lab:
        for netns in (self.client_ns, self.gateway_ns):
            run(["ip", "netns", "add", netns])
            self.made.append(netns)
            self.ns(netns, "ip", "link", "set", "lo", "up")
        # Both ends are created inside the namespaces: no interface in the host's.
        run(
            [
                *("ip", "link", "add", "veth-cl", "netns", self.client_ns, "type", "veth"),
                *("peer", "name", "veth-gw", "netns", self.gateway_ns),
            ]
        )
        self.ns(self.client_ns, "ip", "addr", "add", f"{CLIENT_ADDR}/24", "dev", "veth-cl")
        self.ns(self.client_ns, "ip", "link", "set", "veth-cl", "up")
        self.ns(self.gateway_ns, "ip", "addr", "add", f"{GATEWAY_ADDR}/24", "dev", "veth-gw")
        self.ns(self.gateway_ns, "ip", "link", "set", "veth-gw", "up")
        self.ns(self.gateway_ns, "ip", "addr", "add", f"{PROTECTED_ADDR}/32", "dev", "lo")
        # Replies to the virtual IPs leave through the veth (and the XFRM policy).
        self.ns(self.gateway_ns, "ip", "route", "add", VIP_NET, "via", CLIENT_ADDR)
        return self

    def start(self, process: Charon | Serve) -> None:
        self.processes.append(process)
        process.start()

    def close(self) -> None:
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:  # keep tearing down
                errors.append(exc)
        for netns in reversed(self.made):
            # A process we started may still hold the namespace briefly.
            for _ in range(20):
                out = subprocess.run(
                    ["ip", "netns", "del", netns], capture_output=True, text=True, check=False
                )
                if out.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                errors.append(RuntimeError(f"ip netns del {netns}: {out.stderr}"))
        self.made.clear()
        if errors:
            raise errors[0]
