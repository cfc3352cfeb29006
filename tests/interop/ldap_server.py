"""A private OpenLDAP ``slapd`` for the LDAP directory's tests.

Started on free loopback ports with a generated ``slapd.conf`` (mdb database, the
``memberof`` overlay, LDAPS and StartTLS with a server certificate from a test CA made
by :mod:`eapkit.pki`), loaded with ``ldapadd``, stopped by pid.  The bind account
``cn=reader`` may read; anonymous users may only bind (so a search that works proves
the bind account was used).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from eapkit import pki
from tests.conftest import free_tcp_port, require_tool
from tests.interop.tools import Daemon

SUFFIX = "dc=example,dc=test"
READER = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"
ADMIN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
# name -> password; "amy" is a VPN admin, "carl" a contractor, "dave" in no group
USERS = {"amy": "amy-pw", "carl": "carl-pw", "dave": "dave-pw", "star": "star-pw"}
GROUP_MEMBERS = {"vpn-admins": ["amy"], "contractors": ["carl"]}

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key
database mdb
suffix "{suffix}"
rootdn "{admin}"
rootpw {admin_password}
directory {dir}/data
overlay memberof
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{reader}" read by self read by * none
"""


def _ldif() -> str:
    parts = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
        "o: example\ndc: example\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {READER}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {READER_PASSWORD}\n",
    ]
    for name, password in USERS.items():
        parts.append(
            f"dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
            f"sn: {name}\nuserPassword: {password}\n"
        )
    for group, members in GROUP_MEMBERS.items():
        lines = "".join(f"member: uid={m},{PEOPLE}\n" for m in members)
        parts.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n".join(parts)


@dataclass
class Slapd:
    """A running slapd: ``ldap_url`` (StartTLS) and ``ldaps_url``, trusted by ``ca``."""

    workdir: Path
    ldap_port: int
    ldaps_port: int
    daemon: Daemon

    @property
    def ca(self) -> Path:
        return self.workdir / "ca.pem"

    @property
    def ldap_url(self) -> str:
        return f"ldap://localhost:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.ldaps_port}"


def write_pki(workdir: Path, names: tuple[str, ...] = ("localhost",)) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit LDAP test CA", now=now)
    server = pki.make_server(ca, names, now=now)
    (workdir / "ca.pem").write_bytes(ca.cert_pem)
    (workdir / "server.pem").write_bytes(server.chain_pem)
    (workdir / "server.key").write_bytes(server.key_pem)


def _wait_port(port: int, daemon: Daemon, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"slapd exited:\n{daemon.output()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"slapd not listening:\n{daemon.output()[-3000:]}")


@contextmanager
def running_slapd(workdir: Path) -> Iterator[Slapd]:
    """slapd with the users and groups above, until the block ends."""
    tools = require_tool("slapd", "ldapadd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    write_pki(workdir)
    conf = workdir / "slapd.conf"
    conf.write_text(
        _CONF.format(
            dir=workdir,
            suffix=SUFFIX,
            admin=ADMIN,
            admin_password=ADMIN_PASSWORD,
            reader=READER,
        )
    )
    ldap_port, ldaps_port = free_tcp_port(), free_tcp_port()
    urls = f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
    daemon = Daemon([tools["slapd"], "-d", "0", "-f", str(conf), "-h", urls], workdir / "slapd.log")
    try:
        _wait_port(ldap_port, daemon)
        _wait_port(ldaps_port, daemon)
        subprocess.run(
            [
                tools["ldapadd"],
                "-x",
                "-H",
                f"ldap://127.0.0.1:{ldap_port}",
                "-D",
                ADMIN,
                "-w",
                ADMIN_PASSWORD,
            ],
            input=_ldif(),
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield Slapd(workdir, ldap_port, ldaps_port, daemon)
    finally:
        daemon.stop()
