"""The real-peer interop matrix (issue 16): every row of :mod:`tests.interop.matrix` run
by ``eapol_test`` 2.10 against hostapd 2.10 (the reference) and ``eapkit serve``, with
the same users and certificates.

The servers start once for the module (one hostapd and one ``eapkit serve`` per server
profile); the rows run in parallel threads (each ``eapol_test`` is its own process with
its own RADIUS identifiers and State, so rows do not share anything but the servers).
Per row, one test checks hostapd against its recorded outcome (so ``docs/interop.md``
stays true) and one checks eapkit against hostapd; rows in ``KNOWN_GAPS`` are strict
xfails, rows in ``EXCEPTIONS`` assert eapkit's documented outcome.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop import matrix
from tests.interop.matrix import EXCEPTIONS, KNOWN_GAPS, ROWS, Row
from tests.interop.tools import EapkitServe, EapolResult, HostapdRadius

PARALLEL = int(os.environ.get("EAPKIT_MATRIX_PARALLEL", "6"))


@dataclass(frozen=True)
class Observed:
    hostapd: EapolResult
    eapkit: EapolResult


def _servers(stack: ExitStack, tmp: Path, files: dict[str, Path]) -> dict[tuple[str, str], int]:
    """One hostapd and one ``eapkit serve`` per server profile the rows use."""
    ports: dict[tuple[str, str], int] = {}
    for profile in sorted({r.server for r in ROWS}):
        key_type, fragment_size = matrix.SERVERS[profile]
        cert = files[f"server-{key_type}"]
        pkey = cert.with_suffix(".key")
        # hostapd resumes only with a session cache; eapkit always offers resumption.
        hostapd_extra = ["tls_session_lifetime=3600"]
        config = tmp / f"serve-{profile}.toml"
        config.write_text(matrix.EAPKIT_CONFIG)
        serve_extra = ["--config", str(config), "--cert", str(cert), "--key", str(pkey)]
        serve_extra += ["--ca", str(files["ca"])]
        if fragment_size is not None:
            hostapd_extra.append(f"fragment_size={fragment_size}")
            serve_extra += ["--fragment-size", str(fragment_size)]
        serve_extra += matrix.SERVE_FLAGS.get(profile, ())
        hostapd = HostapdRadius(
            tmp / f"hostapd-{profile}",
            users=matrix.hostapd_users(),
            ca_cert=files["ca"],
            server_cert=cert,
            private_key=pkey,
            extra=hostapd_extra,
        )
        ports["hostapd", profile] = stack.enter_context(hostapd).port
        users = matrix.USERS + matrix.CERTIFICATE_USERS
        serve = EapkitServe(tmp / f"serve-{profile}", users=users, extra=serve_extra)
        ports["eapkit", profile] = stack.enter_context(serve).port
    return ports


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Observed]]:
    tmp = tmp_path_factory.mktemp("matrix")
    files = matrix.write_pki(tmp / "pki")
    with ExitStack() as stack:
        ports = _servers(stack, tmp, files)

        def run(row: Row, impl: str) -> EapolResult:
            work = tmp / "rows" / row.name / impl
            return matrix.run_row(row, ports[impl, row.server], files, work)

        with ThreadPoolExecutor(PARALLEL) as pool:
            jobs = {
                r.name: (pool.submit(run, r, "hostapd"), pool.submit(run, r, "eapkit"))
                for r in ROWS
            }
            yield {name: Observed(h.result(), e.result()) for name, (h, e) in jobs.items()}


def _tail(result: EapolResult) -> str:
    return result.output[-2500:]


@pytest.mark.interop
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_hostapd_gives_the_recorded_outcome(observed: dict[str, Observed], row: Row) -> None:
    seen = observed[row.name].hostapd
    assert matrix.outcome(seen, row.reauth) == row.hostapd, _tail(seen)


@pytest.mark.interop
@pytest.mark.parametrize(
    "row", [r for r in ROWS if r.reauth and r.hostapd == "SUCCESS"], ids=lambda r: r.name
)
def test_reauthentication_rows_resume(observed: dict[str, Observed], row: Row) -> None:
    """The reference resumes the TLS session at every reauthentication, so these rows
    measure resumption, not only a second full handshake."""
    seen = observed[row.name].hostapd
    assert seen.resumptions >= row.reauth, _tail(seen)


def _eapkit_params() -> list[object]:
    params: list[object] = []
    for row in ROWS:
        marks = []
        if row.name in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[row.name], strict=True))
        params.append(pytest.param(row, id=row.name, marks=marks))
    return params


@pytest.mark.interop
@pytest.mark.parametrize("row", _eapkit_params())
def test_eapkit_matches_hostapd(observed: dict[str, Observed], row: Row) -> None:
    seen = observed[row.name]
    got = matrix.outcome(seen.eapkit, row.reauth)
    if row.name in EXCEPTIONS:
        assert got == EXCEPTIONS[row.name][0], _tail(seen.eapkit)
    else:
        assert got == matrix.outcome(seen.hostapd, row.reauth), _tail(seen.eapkit)


@pytest.mark.interop
def test_known_gaps_look_as_documented(observed: dict[str, Observed]) -> None:
    """A gap row shows today's outcome (the doc's eapkit column) or, once fixed,
    hostapd's (then the strict xfail above fails and the entry must go).  One test over
    all gap rows, so an empty KNOWN_GAPS (every finding fixed) is no skipped test."""
    for row in (r for r in ROWS if r.name in KNOWN_GAPS):
        seen = observed[row.name]
        got = matrix.outcome(seen.eapkit, row.reauth)
        assert got in (matrix.TODAY[row.name], row.hostapd), _tail(seen.eapkit)


# -- the matrix's own bookkeeping (no tools needed) -----------------------------------------


def test_rows_are_many_and_named_once() -> None:
    names = [r.name for r in ROWS]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


def test_exceptions_and_gaps_name_rows() -> None:
    names = {r.name for r in ROWS}
    assert set(EXCEPTIONS) <= names
    assert set(KNOWN_GAPS) <= names
    assert not set(EXCEPTIONS) & set(KNOWN_GAPS)
    assert set(KNOWN_GAPS) <= set(matrix.TODAY), "record eapkit's outcome today in TODAY"


def test_doc_shows_the_table() -> None:
    text = matrix.DOC.read_text()
    assert matrix.markdown_table() in text, (
        "docs/interop.md is out of date: run `python -m tests.interop.matrix`"
    )
    for name, (_, reason) in EXCEPTIONS.items():
        assert name in text and reason in text
