"""``eapkit probe --reauth 2`` as the peer against servers no one here wrote (issue 16):
hostapd 2.10 (``tls_session_lifetime`` set) and FreeRADIUS 3.2 (its eap module's
``cache { enable = yes }``), for EAP-TLS, TTLS (PAP, MS-CHAP-V2, EAP-MSCHAPv2) and PEAP
(EAP-MSCHAPv2), TLS 1.2 and 1.3.  Every authentication must succeed with matching keys;
the second and third must resume the first one's TLS session, as the probe's report and
the server's own log say.  Where a server does not resume (see ``NOT_RESUMED`` and
docs/interop.md, "Reauthentication with eapkit probe"), the test asserts what it does
instead: full handshakes that succeed.

``eapkit serve`` is the server in tests/radius/test_probe_reauth.py (in process) and in
the last test here (the real commands: ``eapkit serve``, ``eapkit user del``,
``eapkit probe --reauth``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eapkit import pki
from eapkit.probe import Authentication, ProbeOptions, ok, reauth_report, reauthenticate
from tests.interop.tools import EapkitServe, FreeRadius, HostapdRadius

pytestmark = pytest.mark.interop

SECRET = "reauth-secret"
SERVER_NAME = "radius.reauth.test"
PASSWORD = "wonderland"
METHODS = ["tls", "ttls-pap", "ttls-mschapv2", "ttls-eap-mschapv2", "peap-mschapv2"]
VERSIONS = ["1.2", "1.3"]

# Where a server does not resume both reauthentications: (server, method, TLS version) ->
# (accepted, resumed as the peer saw it, handshakes the server's log says it resumed), per
# authentication.  docs/interop.md, "Reauthentication with eapkit probe", says why.
_TUNNELS = ("ttls-pap", "ttls-mschapv2", "ttls-eap-mschapv2", "peap-mschapv2")
Expected = tuple[list[bool], list[bool | None], int]
RESUMES_BOTH: Expected = ([True] * 3, [False, True, True], 2)
DIFFERENT: dict[tuple[str, str, str], Expected] = {
    # hostapd resumes, skips phase 2 and sends its Result TLV in a record the peer cannot
    # decrypt (bad_record_mac); the peer forgets the session, the third login is full.
    ("hostapd", "peap-mschapv2", "1.3"): ([True, False, True], [False, None, False], 1),
    # FreeRADIUS over TLS 1.3 resumes the first session once: the tickets it sends on a
    # resumed handshake do not resume again (wpa_supplicant 2.10 sees the same in TTLS
    # and PEAP; for EAP-TLS it resumes twice, eapkit once).
    **{("freeradius", m, "1.3"): ([True] * 3, [False, True, False], 1) for m in _TUNNELS},
    ("freeradius", "tls", "1.3"): ([True] * 3, [False, True, False], 1),
}


@dataclass(frozen=True)
class Files:
    work: Path

    def __getitem__(self, name: str) -> Path:
        return self.work / name


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    work = tmp_path_factory.mktemp("reauth-pki")
    pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="reauth test CA",
        server_names=[SERVER_NAME],
        client_name="alice",
    )
    return Files(work)


@pytest.fixture(scope="module")
def hostapd(files: Files) -> Iterator[HostapdRadius]:
    users = f'* TLS,TTLS,PEAP\n"alice" MSCHAPV2,TTLS-PAP,TTLS-MSCHAPV2 "{PASSWORD}" [2]\n'
    with HostapdRadius(
        files.work / "hostapd",
        users,
        secret=SECRET,
        ca_cert=files["ca.pem"],
        server_cert=files["server.pem"],
        private_key=files["server.key"],
        extra=["tls_session_lifetime=3600"],
    ) as server:
        yield server


class ResumingFreeRadius(FreeRadius):
    """FreeRADIUS whose session cache resumes: 3.2 keeps sessions only on disk (its
    OpenSSL cache is "permanently disabled"), so ``cache`` needs ``name`` and
    ``persist_dir`` besides ``enable = yes``; without them it caches and never resumes,
    for wpa_supplicant as for eapkit."""

    def tls_common(self) -> str:
        store = self.workdir / "tlscache"
        store.mkdir(parents=True, exist_ok=True)
        extra = f'            name = "eapkit-reauth"\n            persist_dir = "{store}"\n'
        text = super().tls_common()
        assert "            lifetime = 1\n" in text
        return text.replace("            lifetime = 1\n", "            lifetime = 1\n" + extra)


@pytest.fixture(scope="module")
def freeradius(files: Files) -> Iterator[FreeRadius]:
    with ResumingFreeRadius(
        files.work / "freeradius",
        f'alice Cleartext-Password := "{PASSWORD}"\n',
        secret=SECRET,
        ca_cert=files["ca.pem"],
        server_cert=files["server.pem"],
        private_key=files["server.key"],
        tls_max_version="1.3",
        tls_cache=True,
    ) as server:
        yield server


def _opts(port: int, files: Files, method: str, tls: str) -> ProbeOptions:
    opts = ProbeOptions(
        server=("127.0.0.1", port),
        secret=SECRET.encode(),
        method=method,
        identity="alice",
        ca=files["ca.pem"],
        server_name=SERVER_NAME,
        tls=tls,
        reauth=2,
    )
    if method == "tls":
        opts.cert, opts.key = files["alice.pem"], files["alice.key"]
    else:
        opts.password = PASSWORD
        opts.anonymous_identity = "anonymous"
    return opts


def _run(port: int, files: Files, method: str, tls: str) -> list[Authentication]:
    return asyncio.run(reauthenticate(_opts(port, files, method, tls)))


def _check(
    runs: list[Authentication], server: str, method: str, tls: str, log: str, resumed_in_log: int
) -> None:
    explain = "\n".join(reauth_report(runs)) + f"\n--- {server} log (tail) ---\n" + log[-5000:]
    accepted, resumed, server_resumed = DIFFERENT.get((server, method, tls), RESUMES_BOTH)
    assert [ok(r.result) for r in runs] == accepted, explain
    assert all(r.result.keys_match for r, good in zip(runs, accepted, strict=True) if good)
    assert [r.offered for r in runs] == [False, True, accepted[1]], explain
    assert [r.resumed for r in runs] == resumed, explain
    if method != "tls":  # a resumed tunnel skips phase 2, a full one runs it
        phase2 = [None if r is None else ("skipped" if r else "ran") for r in resumed]
        assert [r.phase2 for r in runs] == phase2, explain
    assert resumed_in_log == server_resumed, explain


@pytest.mark.parametrize("tls", VERSIONS)
@pytest.mark.parametrize("method", METHODS)
def test_hostapd(hostapd: HostapdRadius, files: Files, method: str, tls: str) -> None:
    assert hostapd.daemon is not None
    marker = "Handshake finished - resumed=1"  # hostapd's OpenSSL layer, every handshake
    before = hostapd.daemon.output().count(marker)
    runs = _run(hostapd.port, files, method, tls)
    log = hostapd.daemon.output()
    _check(runs, "hostapd", method, tls, log, log.count(marker) - before)


@pytest.mark.parametrize("tls", VERSIONS)
@pytest.mark.parametrize("method", METHODS)
def test_freeradius(freeradius: FreeRadius, files: Files, method: str, tls: str) -> None:
    marker = "&request:EAP-Session-Resumed := 1"  # set by the eap module on resumption
    before = freeradius.output().count(marker)
    runs = _run(freeradius.port, files, method, tls)
    log = freeradius.output()
    _check(runs, "freeradius", method, tls, log, log.count(marker) - before)


def test_serve_deleted_user_cannot_resume(tmp_path: Path) -> None:
    """``eapkit serve`` as a process: a TTLS login, ``eapkit user del`` through the command
    line, then the probe's resumed login is refused (``unknown_user`` in the decision
    log); the same probe run without the deletion resumes and is accepted."""
    with EapkitServe(tmp_path / "serve", users=(("bob", PASSWORD), ("carol", PASSWORD))) as srv:

        def opts(user: str) -> ProbeOptions:
            return ProbeOptions(
                server=("127.0.0.1", srv.port),
                secret=srv.secret.encode(),
                method="ttls-pap",
                identity=user,
                anonymous_identity="anonymous",
                password=PASSWORD,
                ca=srv.pki / "ca.pem",
                server_name="radius.eapkit.test",
                reauth=1,
            )

        # the command as a user runs it
        argv = [sys.executable, "-m", "eapkit", "probe", "--server", f"127.0.0.1:{srv.port}"]
        argv += ["--method", "ttls-pap", "--identity", "carol", "--password", PASSWORD]
        argv += ["--ca", str(srv.pki / "ca.pem"), "--server-name", "radius.eapkit.test"]
        kept = subprocess.run(
            [*argv, "--reauth", "2"], capture_output=True, text=True, timeout=60, check=False
        )
        assert kept.returncode == 0, kept.stdout + kept.stderr
        lines = kept.stdout.splitlines()
        assert lines.count("TLS session offered=yes resumed=yes phase2=skipped") == 2, lines
        assert lines[-2:] == [
            "reauthentication: 3 of 3 accepted, 2 resumed, phase 2 skipped in 2",
            "ACCEPT",
        ]

        def delete(_: Authentication) -> None:
            db = str(srv.workdir / "eapkit.db")
            argv = [sys.executable, "-m", "eapkit", "user", "del", "bob", "--db", db]
            subprocess.run(argv, check=True, capture_output=True, timeout=60)

        runs = asyncio.run(reauthenticate(opts("bob"), between=delete))
        assert [ok(r.result) for r in runs] == [True, False], reauth_report(runs)
        assert runs[1].offered
        decisions = srv.decisions
    assert [(d["user"], d["result"], d["reason"]) for d in decisions[-2:]] == [
        ("bob", "accept", "ok"),
        ("bob", "reject", "unknown_user"),
    ]
