"""A private OpenLDAP ``slapd`` for the LDAP directory's tests.

Started on free loopback ports with a generated ``slapd.conf`` (mdb database, the
``memberof`` and ``ppolicy`` overlays: slapd 2.5 has the ppolicy schema built in; LDAPS
and StartTLS with a server certificate from a test CA made by :mod:`eapkit.pki`),
loaded with ``ldapadd``, stopped by pid.  The bind account ``cn=reader`` may read;
anonymous users may only bind (so a search that works proves the bind account was
used).
"""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldap3 import MODIFY_REPLACE, Connection, Server, Tls

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
POLICIES = f"ou=policies,{SUFFIX}"
# name -> password; "amy" is a VPN admin, "carl" a contractor, "dave" in no group
USERS = {"amy": "amy-pw", "carl": "carl-pw", "dave": "dave-pw", "star": "star-pw"}
# Groups in groups: "cleo" is in contractors-eu, itself a member of contractors (so she is
# a contractor only through nesting); "lola" is in loop-a, and loop-a and loop-b are
# members of each other (a cycle).
NESTED_USERS = {"cleo": "cleo-pw", "lola": "lola-pw"}
# Account states (draft-behera-ldap-password-policy): "lou" is locked, "rita" must change
# her password (pwdReset), "eve"'s password expired (pwdMaxAge 1 s under her own policy),
# "dora" is disabled the operator's way (employeeType: disabled, matched by a filter).
STATE_USERS = {"lou": "lou-pw", "rita": "rita-pw", "eve": "eve-pw", "dora": "dora-pw"}
_STATE_ATTRS = {
    "lou": "pwdAccountLockedTime: 000001010000Z\n",
    "rita": "pwdReset: TRUE\n",
    "eve": f"pwdPolicySubentry: cn=expiring,{POLICIES}\n",
    "dora": "employeeType: disabled\n",
}
DISABLED_FILTER = "(employeeType=disabled)"
# Framed-IP-Address from the entry (a group's framed_ip_attribute): nis.schema's
# ipHostNumber (auxiliary class ipHost).
FRAMED_IP_ATTRIBUTE = "ipHostNumber"
FRAMED_IPS = {"carl": "10.20.0.7"}
# users the tests may rename (modrdn) without disturbing the others
SPARE_USERS = {"ren": "ren-pw", "ray": "ray-pw"}
# group -> members, in the order added: a user's uid, or "cn=<group>" for a group (added
# before: the memberof overlay writes memberOf only on entries that exist)
GROUP_MEMBERS = {
    "vpn-admins": ["amy"],
    "contractors-eu": ["cleo"],
    "contractors": ["carl", "cn=contractors-eu"],
    "loop-a": ["lola"],
    "loop-b": ["cn=loop-a"],
}
CYCLE = ("loop-a", "loop-b")  # then loop-b is added to loop-a: the cycle closes

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
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
overlay ppolicy
ppolicy_default "cn=default,{policies}"
ppolicy_use_lockout
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
        f"dn: {POLICIES}\nobjectClass: organizationalUnit\nou: policies\n",
        f"dn: cn=default,{POLICIES}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n"
        "cn: default\npwdAttribute: userPassword\npwdMustChange: TRUE\npwdLockout: TRUE\n"
        "pwdMaxFailure: 0\n",
        f"dn: cn=expiring,{POLICIES}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n"
        "cn: expiring\npwdAttribute: userPassword\npwdMaxAge: 1\npwdGraceAuthNLimit: 0\n",
    ]
    for name, password in {**USERS, **STATE_USERS, **SPARE_USERS, **NESTED_USERS}.items():
        parts.append(
            f"dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
            f"sn: {name}\nuserPassword: {password}\n{_STATE_ATTRS.get(name, '')}"
            + (
                f"objectClass: ipHost\n{FRAMED_IP_ATTRIBUTE}: {FRAMED_IPS[name]}\n"
                if name in FRAMED_IPS
                else ""
            )
        )
    for group, members in GROUP_MEMBERS.items():
        lines = "".join(f"member: {_member_dn(m)}\n" for m in members)
        parts.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    first, second = CYCLE
    parts.append(
        f"dn: cn={first},{GROUPS}\nchangetype: modify\nadd: member\nmember: cn={second},{GROUPS}\n"
    )
    return "\n".join(parts)


def _member_dn(member: str) -> str:
    return f"{member},{GROUPS}" if member.startswith("cn=") else f"uid={member},{PEOPLE}"


@dataclass
class Slapd:
    """A running slapd: ``ldap_url`` (StartTLS) and ``ldaps_url``, trusted by ``ca``."""

    workdir: Path
    ldap_port: int
    ldaps_port: int
    daemon: Daemon
    loaded_at: float = 0.0  # time.time() after the entries were added

    def wait_expired(self) -> None:
        """Until eve's password (pwdMaxAge 1 s, whole seconds) has surely expired."""
        time.sleep(max(0.0, self.loaded_at + 2.1 - time.time()))

    @property
    def ca(self) -> Path:
        return self.workdir / "ca.pem"

    @property
    def ldap_url(self) -> str:
        return f"ldap://localhost:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.ldaps_port}"


def write_pki(
    workdir: Path, names: tuple[str, ...] = ("localhost",), *, expired: bool = False
) -> None:
    """A test CA and a server certificate naming ``names`` (``expired``: one whose
    validity ended yesterday)."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("eapkit LDAP test CA", now=now - dt.timedelta(days=30))
    if expired:
        server = pki.make_server(
            ca, names, now=now - dt.timedelta(days=2), days=1, not_before=now - dt.timedelta(days=3)
        )
    else:
        server = pki.make_server(ca, names, now=now)
    (workdir / "ca.pem").write_bytes(ca.cert_pem)
    (workdir / "server.pem").write_bytes(server.chain_pem)
    (workdir / "server.key").write_bytes(server.key_pem)


def directory_table(slapd: Slapd, work: Path, *, timeout: int = 2, extra: str = "") -> str:
    """The ``[directory]`` table of an ``eapkit serve`` TOML in ``work`` that reads this
    slapd over LDAPS as the bind account (its password written to ``work/bind.pw``);
    ``extra`` lines go at the table's end."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "bind.pw").write_text(READER_PASSWORD + "\n")
    return f"""
[directory]
kind = "ldap"
servers = ["{slapd.ldaps_url}"]
base = "{PEOPLE}"
bind_dn = "{READER}"
bind_password_file = "bind.pw"
ca = "{slapd.ca}"
timeout = {timeout}
{extra}"""


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
def running_slapd(
    workdir: Path, names: tuple[str, ...] = ("localhost",), *, expired: bool = False
) -> Iterator[Slapd]:
    """slapd with the users and groups above, until the block ends; its certificate
    names ``names`` (libldap, as FreeRADIUS uses it, checks the name the address
    resolves back to, e.g. the machine's host name, not the URL's ``localhost``)."""
    tools = require_tool("slapd", "ldapadd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    write_pki(workdir, names, expired=expired)
    conf = workdir / "slapd.conf"
    conf.write_text(
        _CONF.format(
            dir=workdir,
            suffix=SUFFIX,
            admin=ADMIN,
            admin_password=ADMIN_PASSWORD,
            reader=READER,
            policies=POLICIES,
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
        yield Slapd(workdir, ldap_port, ldaps_port, daemon, time.time())
    finally:
        daemon.stop()


def _admin(slapd: Slapd) -> Connection:
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(slapd.ca))
    server = Server(slapd.ldaps_url, tls=tls, get_info="NO_INFO")
    return Connection(server, ADMIN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True)


def rename(slapd: Slapd, old: str, new: str) -> None:
    """modrdn (RFC 4511 §4.9) ``uid=old`` to ``uid=new``: the entry, and its
    entryUUID, stay."""
    conn = _admin(slapd)
    try:
        conn.modify_dn(f"uid={old},{PEOPLE}", f"uid={new}")
        conn.modify(f"uid={new},{PEOPLE}", {"cn": [(MODIFY_REPLACE, [new])]})  # type: ignore[no-untyped-call]
    finally:
        conn.unbind()


def add_user(slapd: Slapd, name: str, password: str) -> None:
    """A new entry (a new entryUUID), as an operator would add it."""
    conn = _admin(slapd)
    try:
        conn.add(  # type: ignore[no-untyped-call]
            f"uid={name},{PEOPLE}",
            ["inetOrgPerson"],
            {"uid": name, "cn": name, "sn": name, "userPassword": password},
        )
    finally:
        conn.unbind()


def add_users(slapd: Slapd, users: dict[str, str]) -> None:
    """Many entries at once through ``ldapadd`` (the benchmark's users)."""
    ldif = "\n".join(
        f"dn: uid={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\n"
        f"sn: {name}\nuserPassword: {password}\n"
        for name, password in users.items()
    )
    subprocess.run(
        [
            require_tool("ldapadd")["ldapadd"],
            "-x",
            "-H",
            f"ldap://127.0.0.1:{slapd.ldap_port}",
            "-D",
            ADMIN,
            "-w",
            ADMIN_PASSWORD,
        ],
        input=ldif,
        text=True,
        check=True,
        capture_output=True,
        timeout=300,
    )


def replace_attributes(slapd: Slapd, name: str, values: dict[str, list[str]]) -> None:
    """An operator's change to ``uid=name``: each attribute replaced by ``values`` (an
    empty list removes it), e.g. a new userPassword or a lock."""
    conn = _admin(slapd)
    try:
        changes = {attr: [(MODIFY_REPLACE, vals)] for attr, vals in values.items()}
        conn.modify(f"uid={name},{PEOPLE}", changes)  # type: ignore[no-untyped-call]
    finally:
        conn.unbind()


def delete_user(slapd: Slapd, name: str) -> None:
    """The entry of ``uid=name`` removed (its entryUUID goes with it)."""
    conn = _admin(slapd)
    try:
        conn.delete(f"uid={name},{PEOPLE}")  # type: ignore[no-untyped-call]
    finally:
        conn.unbind()


def add_entry(slapd: Slapd, dn: str, classes: list[str], attributes: dict[str, Any]) -> None:
    """Any entry (an OU, a group, a referral object), as the operator."""
    conn = _admin(slapd)
    try:
        conn.add(dn, classes, attributes)  # type: ignore[no-untyped-call]
    finally:
        conn.unbind()
