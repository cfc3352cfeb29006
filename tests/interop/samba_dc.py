"""A private Samba Active Directory domain controller for the AD directory's tests.

``samba-tool domain provision`` writes a whole domain (LAB / lab.example.test) under a
temporary directory: its own smb.conf, private dir, state, locks and pid files; no system
file is touched.  The DC runs in a network namespace the test creates, reached over a
veth pair on addresses picked here (``10.233.X.Y/30``), and is stopped by the pid of its
root process.  LDAPS uses a certificate from a test CA naming the DC's address (Samba's
own self-signed one names only its host name).  Provisioning takes about 15 s, starting
about 10 s, so a test module starts one DC and shares it among its tests: there is no
session-wide fixture.  :func:`running_dc` provisions, starts and stops it; the modules
that use it call it from a module-scoped fixture of their own
(tests/interop/test_ad_serve.py and tests/directory/test_ad_timing.py: ``dc``;
tests/e2e/test_ikev2_ad.py: ``env``, which also builds the IKEv2 lab around it).

Two things are machine-wide and not ours to move (INTEROP.md): only one ``samba`` may run
per machine (it refuses to start while ``/run/samba/samba.pid`` names a live one... we
point ``pid directory`` into the tree, but winbind's client socket is compiled in:
``ntlm_auth`` always talks to ``/run/samba/winbindd/pipe``, which the DC's winbindd
creates; ``winbindd socket directory`` in smb.conf moves the server but not the client).

Accounts (password ``<Name>-pass-12``):

- ``alice``: in ``vpn-staff``, itself a member of ``vpn-admins`` (nested);
- ``bob``: disabled; ``carol``: expired (accountExpires 1970); ``dave``: must change
  his password at next logon; ``frank``: locked out (the domain locks an account after
  20 bad passwords; :func:`running_dc` sends 21); ``erin``: a plain user (enrolled for TOTP by
  the tests);
- ``radius``: the bind account (an ordinary user: authenticated users may read).

Tests add and rename accounts of their own on the running DC with :meth:`SambaDc.tool`
(``samba-tool`` on the domain's database, which the DC reads: no restart).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from ldap3 import Connection, Server, Tls
from ldap3.core.exceptions import LDAPException

from eapkit import pki
from tests.conftest import require_tool
from tests.interop.tools import Daemon

REALM = "LAB.EXAMPLE.TEST"
DOMAIN = "LAB"
BASE = "DC=lab,DC=example,DC=test"
USERS_DN = f"CN=Users,{BASE}"
ADMIN_PASSWORD = "Adm1n-Pass-12"
BIND_USER = "radius"
BIND_PASSWORD = "Radius-pass-12"
PASSWORDS = {
    "alice": "Alice-pass-12",
    "bob": "Bob-pass-12",
    "carol": "Carol-pass-12",
    "dave": "Dave-pass-12",
    "erin": "Erin-pass-12",
    "frank": "Frank-pass-12",
}
LOCKOUT_THRESHOLD = 20  # bad passwords before a lockout: far above what other tests send
BIND_DN = f"CN={BIND_USER},{USERS_DN}"

_EXPIRE_CAROL = f"""
from samba.samdb import SamDB
from samba.auth import system_session
from samba.param import LoadParm
import sys
lp = LoadParm(); lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], session_info=system_session(), lp=lp)
db.modify_ldif('''dn: CN=carol,{USERS_DN}
changetype: modify
replace: accountExpires
accountExpires: 116444736000000000
''')
"""


@dataclass
class SambaDc:
    """A provisioned DC: ``address`` in namespace ``netns``, trusted by ``ca``."""

    workdir: Path
    netns: str
    address: str
    daemon: Daemon | None = None

    @property
    def smb_conf(self) -> Path:
        return self.workdir / "dc" / "etc" / "smb.conf"

    @property
    def ca(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.address}"

    def tool(self, *args: str) -> None:
        """``samba-tool ARGS`` on the running DC's database (``user add``, ``user rename``)."""
        samba_tool(self.workdir, *args)

    def start(self) -> None:
        """Start samba in the namespace; wait for LDAPS and winbind."""
        tools = require_tool("samba", "ip")
        self.daemon = Daemon(
            [
                tools["ip"],
                "netns",
                "exec",
                self.netns,
                tools["samba"],
                "-i",
                "-s",
                str(self.smb_conf),
            ],
            self.workdir / "samba.log",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.daemon.proc.poll() is not None:
                raise RuntimeError(f"samba exited:\n{self.daemon.output()[-3000:]}")
            ready = Path("/run/samba/winbindd/pipe").exists() and self._listening(636)
            if ready and self._ldaps_answers() and self._winbind_answers():
                return
            time.sleep(0.3)
        raise TimeoutError(f"samba not ready:\n{self.daemon.output()[-3000:]}")

    def _listening(self, port: int) -> bool:
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return self.address in out

    def _ldaps_answers(self) -> bool:
        """The bind account can bind and search over LDAPS (the LDAP server's workers
        answer some time after the port listens)."""
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca))
        server = Server(self.ldaps_url, tls=tls, connect_timeout=5)
        try:
            conn = Connection(server, BIND_DN, BIND_PASSWORD, receive_timeout=5)
            if not conn.bind():
                return False
            found = conn.search(BASE, "(sAMAccountName=alice)", attributes=["objectGUID"])
            conn.unbind()
            return bool(found)
        except (LDAPException, OSError):
            return False

    def lock_out(self, user: str) -> None:
        """Bad passwords until AD locks ``user`` out (LOCKOUT in the computed flags)."""
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca))
        server = Server(self.ldaps_url, tls=tls, connect_timeout=5)
        for _ in range(LOCKOUT_THRESHOLD + 1):
            Connection(server, f"CN={user},{USERS_DN}", "Wrong-pass-12").bind()
        reader = Connection(server, BIND_DN, BIND_PASSWORD, auto_bind=True)
        reader.search(
            BASE, f"(sAMAccountName={user})", attributes=["msDS-User-Account-Control-Computed"]
        )
        flags = reader.entries[0]["msDS-User-Account-Control-Computed"].value
        reader.unbind()
        if not int(flags or 0) & 0x10:
            raise RuntimeError(f"{user} is not locked out after {LOCKOUT_THRESHOLD} bad passwords")

    def _winbind_answers(self) -> bool:
        # a wrong response for a real user: winbind up and talking to the DC says 0xc000006d
        done = subprocess.run(
            [
                "ntlm_auth",
                f"--configfile={self.smb_conf}",
                "--request-nt-key",
                "--allow-mschapv2",
                "--username=erin",
                f"--domain={DOMAIN}",
                "--challenge=0000000000000000",
                "--nt-response=" + "00" * 24,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        return "0xc000006d" in (done.stdout + done.stderr).lower()

    def stop(self) -> None:
        """Stop samba by its root process's pid; wait until the namespace is empty."""
        if self.daemon is None:
            return
        self.daemon.stop()
        self.daemon = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _netns_pids(self.netns):
            time.sleep(0.2)
        for pid in _netns_pids(self.netns):  # children that outlived the root process
            os.kill(pid, signal.SIGKILL)


def _netns_pids(netns: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    ).stdout
    return [int(p) for p in out.split()]


def _addresses() -> tuple[str, str, str]:
    """A free /30 in 10.233.0.0/16: (namespace name, DC address, host address)."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    pid = os.getpid()
    for step in range(64):
        index = (pid + step) % 16384
        net = ipaddress.ip_network(f"10.233.{index // 64}.{(index % 64) * 4}/30")
        dc, host = str(net[1]), str(net[2])
        if f" {dc}/" not in taken and f" {host}/" not in taken:
            return f"eapkit-ad-{pid}", dc, host
    raise RuntimeError("no free address in 10.233.0.0/16")


def _write_tls(workdir: Path, address: str) -> Path:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit Samba DC test CA", now=now)
    server = pki._issue(
        ca,
        address,
        [x509.IPAddress(ipaddress.ip_address(address))],
        [ExtendedKeyUsageOID.SERVER_AUTH],
        now=now,
        key_type="rsa",
        days=30,
        not_before=None,
    )
    tls = workdir / "tls"
    tls.mkdir(mode=0o700)
    (tls / "ca.pem").write_bytes(ca.cert_pem)
    (tls / "cert.pem").write_bytes(server.cert_pem)
    key = tls / "key.pem"
    key.write_bytes(server.key_pem)
    key.chmod(0o600)  # samba refuses a key others may read
    return tls


def samba_tool(workdir: Path, *args: str) -> None:
    """``samba-tool ARGS -H <workdir>/dc/private/sam.ldb``: the domain's own database,
    which the DC (if running) reads as it changes.  A failure names the subcommand and
    samba-tool's error, never the arguments (``user add`` carries a password)."""
    exe = require_tool("samba-tool")["samba-tool"]
    sam = workdir / "dc" / "private" / "sam.ldb"
    done = subprocess.run(
        [exe, *args, "-H", str(sam)], capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"samba-tool {' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")


def _provision(workdir: Path, address: str) -> None:
    tools = require_tool("samba-tool", "ntlm_auth", "winbindd")
    target = workdir / "dc"
    tls = _write_tls(workdir, address)
    options = {
        "interfaces": f"{address}/30 127.0.0.1",
        "bind interfaces only": "yes",
        "pid directory": str(target / "run"),
        "log file": str(target / "log.%m"),
        "ncalrpc dir": str(target / "ncalrpc"),
        "ntlm auth": "mschapv2-and-ntlmv2-only",  # ntlm_auth's MS-CHAPv2 (INTEROP.md)
        "tls enabled": "yes",
        "tls keyfile": str(tls / "key.pem"),
        "tls certfile": str(tls / "cert.pem"),
        "tls cafile": str(tls / "ca.pem"),
    }
    argv = [
        tools["samba-tool"],
        "domain",
        "provision",
        f"--targetdir={target}",
        f"--realm={REALM}",
        f"--domain={DOMAIN}",
        "--server-role=dc",
        "--dns-backend=NONE",
        f"--adminpass={ADMIN_PASSWORD}",
        "--use-rfc2307",
        *(f"--option={k}={v}" for k, v in options.items()),
    ]
    subprocess.run(argv, check=True, capture_output=True, timeout=180)

    def tool(*args: str) -> None:
        samba_tool(workdir, *args)

    tool("user", "add", BIND_USER, BIND_PASSWORD)
    for name, password in PASSWORDS.items():
        extra = ["--must-change-at-next-login"] if name == "dave" else []
        tool("user", "add", name, password, *extra)
    tool("user", "disable", "bob")
    tool(
        "domain",
        "passwordsettings",
        "set",
        f"--account-lockout-threshold={LOCKOUT_THRESHOLD}",
        "--account-lockout-duration=600",
        "--reset-account-lockout-after=600",
    )
    tool("group", "add", "vpn-admins")
    tool("group", "add", "vpn-staff")
    tool("group", "addmembers", "vpn-admins", "vpn-staff")
    tool("group", "addmembers", "vpn-staff", "alice")
    subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            _EXPIRE_CAROL,
            str(target / "etc" / "smb.conf"),
            str(target / "private" / "sam.ldb"),
        ],
        check=True,
        capture_output=True,
    )


@contextmanager
def running_dc(workdir: Path) -> Iterator[SambaDc]:
    """A provisioned, running DC in its own namespace, until the block ends."""
    require_tool("ip", "ss")
    workdir.mkdir(parents=True, exist_ok=True)
    netns, dc_address, host_address = _addresses()
    veth_host, veth_ns = f"ead{os.getpid() % 100000}h", f"ead{os.getpid() % 100000}n"
    setup = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns],
        ["ip", "link", "set", veth_ns, "netns", netns],
        ["ip", "addr", "add", f"{host_address}/30", "dev", veth_host],
        ["ip", "link", "set", veth_host, "up"],
        ["ip", "netns", "exec", netns, "ip", "addr", "add", f"{dc_address}/30", "dev", veth_ns],
        ["ip", "netns", "exec", netns, "ip", "link", "set", veth_ns, "up"],
        ["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"],
    ]
    dc = SambaDc(workdir, netns, dc_address)
    try:
        for argv in setup:
            subprocess.run(argv, check=True, capture_output=True)
        _provision(workdir, dc_address)
        dc.start()
        dc.lock_out("frank")
        yield dc
    finally:
        dc.stop()
        subprocess.run(["ip", "link", "del", veth_host], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
