"""Users in LDAP: ``eapkit serve`` against FreeRADIUS 3.2 with rlm_ldap, both checking the
password by a bind as the user against the same private slapd (tests/interop/ldap_server.py,
LDAPS with a test CA, the ppolicy and memberof overlays), under the same load.

- **PAP**: one user's Access-Request sent again and again by ``radclient -p 32``.
- **PAP+TOTP**: one fresh user per request (a code is accepted once), the password
  followed by a 6-digit TOTP code.  eapkit keeps the TOTP secrets in its store under the
  users' entryUUID; FreeRADIUS splits the code off with unlang, binds with rlm_ldap and
  checks the code with its own rlm_totp (the secrets in the ``files`` module's users
  file): each server's own way of doing the same job.

Both search with a bind account on a pool of connections and bind as the user for the
password.  eapkit serve runs as configured by default (its lookup cache on, so repeated
PAP logins of one user skip the search; FreeRADIUS searches every time).  The figure is
the **server's CPU time per authentication** (``bench_serve``'s measure: utime + stime
from ``/proc``, the load generator's apart), as a ratio; slapd's CPU is not counted
for either.

Run: ``.venv/bin/python -m benchmarks.bench_ldap [--quick]`` (or ``python -m benchmarks
--only ldap``).  Needs slapd, ldap-utils, freeradius, freeradius-ldap, freeradius-utils.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_serve import (
    EAPKIT_1,
    FREERADIUS,
    Measured,
    make_pki,
    measure_radclient,
    pap_requests,
    rows,
    running,
)

FREERADIUS_LDAP = FREERADIUS + " + rlm_ldap"
USER, USER_PASSWORD = "dave", "dave-pw"  # a user of the test slapd, in no group


def _serve_toml(work: Path, slapd: Any) -> Path:
    from tests.interop.ldap_server import directory_table

    toml = work / "serve.toml"
    toml.write_text(directory_table(slapd, work, timeout=5))
    return toml


def _eapkit(work: Path, slapd: Any) -> Any:
    from tests.interop.tools import EapkitServe

    toml = _serve_toml(work, slapd)
    extra = ["--config", str(toml), "--log", os.devnull, "--methods", "gtc"]
    return EapkitServe(work, users=(), extra=extra)


def _ldap_module(slapd: Any) -> str:
    from tests.interop.ldap_server import PEOPLE, READER, READER_PASSWORD

    return f"""ldap {{
    server = "{slapd.ldaps_url}"
    identity = "{READER}"
    password = "{READER_PASSWORD}"
    base_dn = "{PEOPLE}"
    user {{
        base_dn = "${{..base_dn}}"
        filter = "(uid=%{{%{{Stripped-User-Name}}:-%{{User-Name}}}})"
    }}
    options {{
        chase_referrals = no
        rebind = no
        res_timeout = 10
        srv_timelimit = 5
        net_timeout = 5
    }}
    tls {{
        ca_file = "{slapd.ca}"
        require_cert = "demand"
    }}
    pool {{
        start = 4
        min = 4
        max = 32
        spare = 8
        uses = 0
        retry_delay = 30
        lifetime = 0
        idle_timeout = 60
    }}
}}
"""


_SPLIT_CODE = (
    "if (User-Password =~ /^(.*)([0-9]{6})$/) {",
    "    update request {",
    '        TOTP-Password := "%{2}"',
    '        User-Password := "%{1}"',
    "    }",
    "}",
)
_LDAP_AUTHORIZE = (
    "ldap",
    "if ((ok || updated) && User-Password) {",
    "    update control {",
    "        Auth-Type := ldap",
    "    }",
    "}",
)


def _freeradius(work: Path, slapd: Any, users: str, totp: bool) -> Any:
    from tests.interop.tools import FreeRadius

    modules = {"ldap": _ldap_module(slapd)}
    if totp:
        modules["totp"] = "totp {\n}\n"
    return FreeRadius(
        work,
        users,
        eap_types=("md5",),
        debug=False,
        settings={"max_requests": "65536"},
        modules=modules,
        authorize=(*(_SPLIT_CODE if totp else ()), *_LDAP_AUTHORIZE),
        authenticate=("Auth-Type LDAP {", "    ldap", *(("    totp",) if totp else ()), "}"),
    )


def _enroll_totp(work: Path, slapd: Any, names: list[str]) -> dict[str, bytes]:
    """TOTP for ``names`` in the store of the server at ``work`` (under entryUUID)."""
    from eapkit.serve import ServeConfig, open_directory, open_second_factors
    from eapkit.verify.otp import OtpCredential

    cfg = ServeConfig.from_toml(_serve_toml(work, slapd))
    cfg.db = work / "eapkit.db"
    users = open_directory(cfg)
    second = open_second_factors(cfg, users)
    now = time.time()
    secrets: dict[str, bytes] = {}
    for name in names:
        secret = os.urandom(20)
        second.totp.enroll(second.key(name), OtpCredential(secret), now)
        users.set_second_factor(name, "totp")
        secrets[name] = secret
    second.store.close()
    users.close()
    return secrets


def _totp_requests(secrets: dict[str, bytes]) -> str:
    from eapkit.verify.otp import totp

    now = time.time()
    if now % 30 > 15:  # the run stays inside one 30 s step (and the verifiers' windows)
        time.sleep(30 - now % 30 + 0.5)
        now = time.time()
    return pap_requests([(u, u + "-pw" + totp(s, now)) for u, s in secrets.items()])


def measure_all(quick: bool) -> list[Measured]:
    from tests.interop.ldap_server import add_users, running_slapd

    pap_count = 500 if quick else 3000
    totp_count = 200 if quick else 1000
    results: list[Measured] = []

    def keep(m: Measured | None) -> None:
        if m is not None:
            results.append(m)
            print(
                f"  {m.method:10} {m.server:28} {m.rate:7.0f}/s"
                f" server {m.cpu_us_per_auth:7.0f} µs/auth  {m.failures or ''}",
                file=sys.stderr,
                flush=True,
            )

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_slapd(Path(tmp) / "slapd", ("localhost", socket.gethostname())) as slapd,
    ):
        work = Path(tmp)
        make_pki(work)  # radclient needs none; keeps the layout bench_serve has
        names = [f"b{i:05d}" for i in range(totp_count)]
        add_users(slapd, {n: n + "-pw" for n in names})
        plans: list[tuple[str, Callable[[Path, bool, str], Any]]] = [
            (EAPKIT_1, lambda d, totp, users: _eapkit(d, slapd)),
            (FREERADIUS_LDAP, lambda d, totp, users: _freeradius(d, slapd, users, totp)),
        ]
        pap = pap_requests([(USER, USER_PASSWORD)])
        for i, (server, make) in enumerate(plans):
            with running(make(work / f"pap-{i}", False, "")) as found:
                if found is not None:
                    pid, port, secret = found
                    keep(measure_radclient(server, "PAP", pid, port, secret, pap, work, pap_count))
        # PAP+TOTP: each server gets its own half of the users (a code is used once)
        halves = [names[: len(names) // 2], names[len(names) // 2 :]]
        for i, (server, make) in enumerate(plans):
            d = work / f"totp-{i}"
            if server == EAPKIT_1:
                secrets = _enroll_totp(d, slapd, halves[i])
                users = ""
            else:
                secrets = {n: os.urandom(20) for n in halves[i]}
                users = "".join(
                    f'{n} TOTP-Secret := "{base64.b32encode(s).decode()}"\n'
                    for n, s in secrets.items()
                )
            with running(make(d, True, users)) as found:
                if found is not None:
                    pid, port, secret = found
                    requests = _totp_requests(secrets)
                    keep(measure_radclient(server, "PAP+TOTP", pid, port, secret, requests, work))
    return results


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [
        {**r, "op": r["op"].replace("serve ", "serve LDAP ", 1)} for r in rows(measure_all(quick))
    ]


def main(argv: list[str]) -> int:
    table = run(quick="--quick" in argv)
    for r in table:
        print(
            f"{r['op']:44} eapkit {r['eapkit_us']:7.0f} µs {r['eapkit_rate']:6.0f}/s"
            f"  {r['anchor']} {r['anchor_us']:7.0f} µs {r['anchor_rate']:6.0f}/s"
            f"  CPU ratio {r['eapkit_us'] / r['anchor_us']:.2f}"
        )
        if r["eapkit_failures"] or r["anchor_failures"]:
            print(
                f"    failures: eapkit {r['eapkit_failures']}  {r['anchor']} {r['anchor_failures']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
