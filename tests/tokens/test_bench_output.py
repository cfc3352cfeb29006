"""``eapkit token bench``'s progress and figures: rich on a terminal, plain lines (no
carriage returns) in a pipe or a log (issue 22).  No card needed: a fake operation."""

from __future__ import annotations

import argparse
import io

import pytest

from tokens import cli
from tokens.errors import TokenError


def bench(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tty: bool
) -> tuple[str, str]:
    monkeypatch.setattr(cli, "_transport", lambda args: _NoCard())
    monkeypatch.setattr(cli, "_bench_operation", lambda args, transport: lambda: None)
    args = argparse.Namespace(kind="oath", count=20, quiet=False)
    if tty:
        out, err = io.StringIO(), io.StringIO()
        out.isatty = err.isatty = lambda: True  # type: ignore[method-assign]
        monkeypatch.setattr("sys.stdout", out)
        monkeypatch.setattr("sys.stderr", err)
        assert cli.cmd_bench(args) == 0
        return out.getvalue(), err.getvalue()
    assert cli.cmd_bench(args) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


class _NoCard:
    def __enter__(self) -> object:
        return object()

    def __exit__(self, *exc: object) -> None:
        return None


def test_plain_lines_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = bench(monkeypatch, capsys, tty=False)
    assert "\r" not in out + err
    assert err.splitlines() == [f"{n}/20" for n in range(2, 21, 2)]
    assert out.startswith("oath: 20/20 ok") and "latency ms: p50=" in out


def test_rich_table_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = bench(monkeypatch, capsys, tty=True)
    assert "eapkit token bench oath" in out and "p99 ms" in out and "20/20 in" in out


def test_bench_refuses_a_count_below_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenError):
        cli.cmd_bench(argparse.Namespace(kind="oath", count=0, quiet=True))
