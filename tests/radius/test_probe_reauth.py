"""``eapkit probe --reauth N`` against ``eapkit serve``'s core in this process (issue 16):
every authentication after the first offers the last TLS session; the server resumes it,
skips phase 2 of TTLS/PEAP, and answers with the reply attributes of the first login; with
``resume_lifetime = 0`` nothing resumes; a user deleted since the first login is refused
on the resumed one (reason ``unknown_user``)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.directory import LocalDirectory
from eapkit.policy import UserPolicy
from eapkit.probe import Authentication, ProbeOptions, ok, reauth_report, reauthenticate, run_probe
from eapkit.radius.clients import Client
from eapkit.radius.nas import ProbeResult
from eapkit.serve import ServeConfig, TlsFiles, build_core, ensure_demo_pki
from tests.radius.test_server import running

SECRET = "reauth-secret"
POLICY = UserPolicy(session_timeout=1800, framed_ip="10.9.8.7", klass=b"gold")
TUNNELS = ["ttls-pap", "ttls-mschapv2", "ttls-eap-mschapv2", "peap-mschapv2"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ensure_demo_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def serve(
    tmp_path: Path, pki: dict[str, Path]
) -> Iterator[tuple[LocalDirectory, io.StringIO, list[tuple[str, int]], ServeConfig]]:
    """A directory with alice (and her policy), and a place for the server's address."""
    users = LocalDirectory(tmp_path / "eapkit.db")
    users.add("alice", "wonderland", iterations=1000, policy=POLICY)
    cfg = ServeConfig(
        db=tmp_path / "eapkit.db",
        methods=["tls", "ttls", "peap"],
        # the demo certificate's alice@eapkit.test names alice (eapkit.authz)
        tls=TlsFiles(cert=pki["cert"], key=pki["key"], ca=pki["ca"], realms=("eapkit.test",)),
    )
    cfg.clients = [Client.of("127.0.0.1/32", SECRET)]
    yield users, io.StringIO(), [], cfg
    users.close()


def _opts(port: int, pki: dict[str, Path], method: str, tls: str, reauth: int) -> ProbeOptions:
    opts = ProbeOptions(
        server=("127.0.0.1", port),
        secret=SECRET.encode(),
        method=method,
        identity="alice",
        anonymous_identity="anonymous",
        password="wonderland",
        ca=pki["ca"],
        server_name="radius.eapkit.test",
        tls=tls,
        reauth=reauth,
    )
    if method == "tls":
        opts = replace(
            opts,
            cert=pki["client_cert"],
            key=pki["client_key"],
            password=None,
            anonymous_identity=None,
        )
    return opts


def assert_true(value: bool) -> None:
    assert value


def _reply(run: Authentication) -> dict[str, str]:
    attrs = dict(run.result.reply_attributes)
    assert attrs.pop("CLASS", None) == "gold"  # the policy's Class, every time
    return attrs


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("method", [*TUNNELS, "tls"])
def test_reauth_resumes_and_skips_phase2(
    serve: tuple[LocalDirectory, io.StringIO, list[tuple[str, int]], ServeConfig],
    pki: dict[str, Path],
    method: str,
    tls: str,
) -> None:
    users, log, _, cfg = serve
    with running(build_core(cfg, users, log_stream=log)) as (_, port):
        runs = asyncio.run(reauthenticate(_opts(port, pki, method, tls, reauth=2)))
    assert [ok(r.result) for r in runs] == [True, True, True], reauth_report(runs)
    assert all(r.result.keys_match for r in runs)
    assert [r.offered for r in runs] == [False, True, True]
    assert [r.resumed for r in runs] == [False, True, True], reauth_report(runs)
    tunnel = method != "tls"
    assert [r.phase2 for r in runs] == (["ran", "skipped", "skipped"] if tunnel else [None] * 3)
    first = _reply(runs[0])
    assert first == {
        "USER_NAME": "alice",
        "SESSION_TIMEOUT": "1800",
        "FRAMED_IP_ADDRESS": "10.9.8.7",
    }
    assert [_reply(r) for r in runs[1:]] == [first, first]
    # fresh keys each time: a resumed session derives new ones
    assert len({r.result.peer.keys.msk for r in runs if r.result.peer and r.result.peer.keys}) == 3
    decisions = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(d["result"], d["user"]) for d in decisions] == [("accept", "alice")] * 3


@pytest.mark.parametrize("method", ["ttls-pap", "peap-mschapv2", "tls"])
def test_resume_lifetime_zero_resumes_nothing(
    serve: tuple[LocalDirectory, io.StringIO, list[tuple[str, int]], ServeConfig],
    pki: dict[str, Path],
    method: str,
) -> None:
    users, log, _, cfg = serve
    cfg.tls.resume_lifetime = 0
    with running(build_core(cfg, users, log_stream=log)) as (_, port):
        runs = asyncio.run(reauthenticate(_opts(port, pki, method, "1.3", reauth=2)))
    assert all(ok(r.result) for r in runs), reauth_report(runs)
    assert [r.offered for r in runs] == [False, True, True]  # the peer offers ...
    assert [r.resumed for r in runs] == [False, False, False]  # ... the server declines
    if method != "tls":
        assert [r.phase2 for r in runs] == ["ran"] * 3


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("method", TUNNELS)
def test_deleted_user_not_resumed(
    serve: tuple[LocalDirectory, io.StringIO, list[tuple[str, int]], ServeConfig],
    pki: dict[str, Path],
    method: str,
    tls: str,
) -> None:
    """The resumed login runs no phase 2, so no password check reads the directory: the
    server's last word must (it did not before this test: the login was accepted)."""
    users, log, _, cfg = serve
    with running(build_core(cfg, users, log_stream=log)) as (_, port):
        first, second = asyncio.run(
            reauthenticate(
                _opts(port, pki, method, tls, reauth=1),
                between=lambda _: assert_true(users.delete("alice")),
            )
        )
    assert ok(first.result)
    assert second.offered and not ok(second.result)
    assert second.result.reply is not None and second.result.reply.code == 3  # Access-Reject
    decisions = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(d["result"], d["reason"]) for d in decisions] == [
        ("accept", "ok"),
        ("reject", "unknown_user"),
    ]


def test_report_and_exit_code(
    serve: tuple[LocalDirectory, io.StringIO, list[tuple[str, int]], ServeConfig],
    pki: dict[str, Path],
) -> None:
    users, log, _, cfg = serve
    with running(build_core(cfg, users, log_stream=log)) as (_, port):
        code, lines = run_probe(_opts(port, pki, "ttls-pap", "1.2", reauth=1))
        bad = replace(_opts(port, pki, "ttls-pap", "1.2", reauth=1), password="guess")
        bad_code, bad_lines = run_probe(bad)
    assert code == 0, lines
    assert lines.count("TLS session offered=no resumed=no phase2=ran") == 1
    assert lines.count("TLS session offered=yes resumed=yes phase2=skipped") == 1
    assert lines[-2:] == [
        "reauthentication: 2 of 2 accepted, 1 resumed, phase 2 skipped in 1",
        "ACCEPT",
    ]
    # a failure leaves no session to offer: the second login is a full one, and fails too
    assert bad_code == 1
    assert bad_lines.count("TLS session offered=no resumed=- phase2=-") == 2, "\n".join(bad_lines)
    assert bad_lines[-1] == "REJECT"


@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.sampled_from([None, "pap", "none"])),
        min_size=1,
        max_size=6,
    )
)
def test_report_summary_counts_what_each_authentication_says(
    runs: list[tuple[bool, bool, str | None]],
) -> None:
    """The summary line and the verdict follow the per-authentication results: ACCEPT only
    when every one was accepted."""
    done = []
    for accepted, resumed, inner in runs:
        attrs = {"tls_resumed": "yes" if resumed else "no"}
        if inner is not None:
            attrs["inner_method"] = inner
        done.append(Authentication(ProbeResult(accepted, None), True, attrs))
    lines = reauth_report(done)
    n_ok = sum(a for a, _, _ in runs)
    n_resumed = sum(r for _, r, _ in runs)
    n_skipped = sum(i == "none" for _, _, i in runs)
    assert lines[-2] == (
        f"reauthentication: {n_ok} of {len(runs)} accepted, {n_resumed} resumed,"
        f" phase 2 skipped in {n_skipped}"
    )
    assert lines[-1] == ("ACCEPT" if n_ok == len(runs) else "REJECT")
    assert sum(line.startswith("== authentication ") for line in lines) == len(runs)
