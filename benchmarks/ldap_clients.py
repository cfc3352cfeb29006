"""The LDAP client library on evidence (issue 18): ldap3 against python-ldap, the CPU of
one login's LDAP work (a search for the user, then a bind as the user on a kept
connection), over LDAPS against the tests' slapd, measured in one run, rounds
interleaved.

ldap3 is what eapkit's directory uses (pure Python, TLS through the ``ssl`` module).
python-ldap wraps OpenLDAP's libldap (C); it is not an eapkit dependency, so this script
needs it installed by hand: ``apt-get install libldap2-dev libsasl2-dev`` then
``.venv/bin/pip install python-ldap``.

Run: ``.venv/bin/python -m benchmarks.ldap_clients [--logins N]``.  Figures and the
reading of them: docs/directories.md, "Performance against FreeRADIUS rlm_ldap".
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USER, PASSWORD = "amy", "amy-pw"  # tests/interop/ldap_server.py's users


def ldap3_login_cpu(url: str, ca: Path, reader: tuple[str, str], base: str, n: int) -> float:
    import ldap3
    from ldap3.utils.conv import escape_filter_chars

    tls = ldap3.Tls(ca_certs_file=str(ca), validate=ssl.CERT_REQUIRED)
    server = ldap3.Server(url, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    searcher = ldap3.Connection(server, *reader, auto_bind=True, read_only=True)
    binder = ldap3.Connection(server, *reader, auto_bind=True)
    started = time.process_time()
    for _ in range(n):
        searcher.search(base, f"(uid={escape_filter_chars(USER)})", attributes=["entryUUID"])
        response: Any = searcher.response
        dn = response[0]["dn"]
        if not binder.rebind(dn, PASSWORD, read_server_info=False):
            raise SystemExit("ldap3: the user's bind failed")
    return (time.process_time() - started) / n * 1e6


def python_ldap_login_cpu(url: str, ca: Path, reader: tuple[str, str], base: str, n: int) -> float:
    import ldap  # type: ignore[import-not-found,unused-ignore]
    from ldap.filter import escape_filter_chars  # type: ignore[import-not-found,unused-ignore]

    def connection() -> Any:
        c = ldap.initialize(url)
        c.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca))
        c.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        c.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        c.simple_bind_s(*reader)
        return c

    searcher, binder = connection(), connection()
    started = time.process_time()
    for _ in range(n):
        found = searcher.search_s(
            base, ldap.SCOPE_SUBTREE, f"(uid={escape_filter_chars(USER)})", ["entryUUID"]
        )
        binder.simple_bind_s(found[0][0], PASSWORD)
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import ldap  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        print("python-ldap is not installed (see this module's docstring)", file=sys.stderr)
        return 2
    from tests.interop.ldap_server import PEOPLE, READER, READER_PASSWORD, running_slapd

    reader = (READER, READER_PASSWORD)
    with tempfile.TemporaryDirectory() as tmp:
        # libldap checks the name the address resolves back to (the machine's host name)
        names = ("localhost", socket.gethostname())
        with running_slapd(Path(tmp) / "slapd", names) as slapd:
            print(f"{'round':>5} {'ldap3 µs':>9} {'python-ldap µs':>15} {'ratio':>6}")
            for r in range(args.rounds):
                a = ldap3_login_cpu(slapd.ldaps_url, slapd.ca, reader, PEOPLE, args.logins)
                b = python_ldap_login_cpu(slapd.ldaps_url, slapd.ca, reader, PEOPLE, args.logins)
                print(f"{r:>5} {a:>9.0f} {b:>15.0f} {a / b:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
