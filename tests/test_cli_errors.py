"""No traceback from any ``eapkit`` subcommand on bad input (issue 22).

The subcommands are enumerated from the argparse parser itself, so a new one is covered
without editing this file.  Each runs with missing files, a missing or blocked
directory, wrong types and (``eapkit token``: no reader, no card) an empty bench, and
must end with a non-zero exit and a clear last line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.cli import build_parser, main
from tests.conftest import free_udp_port
from tokens.sim import make_card
from tokens.sim.card import SimLink

# the options that name a file eapkit reads
FILE_OPTIONS = {
    "--config",
    "--cert",
    "--key",
    "--ca",
    "--input",
    "--secret-file",
    "--password-file",
    "--demo-user-file",
}


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


COMMANDS = sorted(leaves(build_parser()))


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if action.nargs in ("?", "*"):
            continue
        out.append(action.choices[0] if action.choices else "x")  # type: ignore[index]
    return out


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def required(parser: argparse.ArgumentParser) -> list[str]:
    argv = []
    for action in parser._actions:
        if action.option_strings and action.required:
            value = action.choices[0] if action.choices else "x"  # type: ignore[index]
            argv += [action.option_strings[-1], "0" if action.type is int else str(value)]
    return argv


def variants(
    path: tuple[str, ...], parser: argparse.ArgumentParser, tmp: Path
) -> Iterator[tuple[str, list[str]]]:
    base = [*path, *positionals(parser), *required(parser)]
    opts = options(parser)
    blocked = tmp / "a-file"
    blocked.write_text("not a directory\n")
    if "--server" in opts:  # a RADIUS server that is not there, quickly
        base += ["--server", f"127.0.0.1:{free_udp_port()}", "--timeout", "0.2"]
    if "--listen" in opts:
        base += ["--listen", f"127.0.0.1:{free_udp_port()}"]
    for name in sorted(FILE_OPTIONS & opts.keys()):
        yield f"missing {name}", [*base, name, str(tmp / "missing" / "file")]
    if "--db" in opts:
        yield "db under a file", [*base, "--db", str(blocked / "sub" / "eapkit.db")]
    for name, action in sorted(opts.items()):
        if action.type in (int, float):
            yield f"{name} not a number", [*base, name, "many"]
    if path[0] == "token":  # no reader, or a reader without the card it needs
        yield "as is", base


PRINT = bool(os.environ.get("EAPKIT_TEST_SHOW_ERRORS"))

# Commands that read no file and take no number: nothing they are given can be wrong.
NOTHING_TO_GET_WRONG = {("methods",), ("demo",)}


def test_every_subcommand_is_enumerated() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("serve", "probe", "user add", "user set", "store seal", "enroll totp"):
        assert expected in names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path_parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_no_traceback(
    path_parser: tuple[tuple[str, ...], argparse.ArgumentParser],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EAPKIT_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 - a prompt gets EOF
    path, parser = path_parser
    ran = 0
    runs = list(variants(path, parser, tmp_path))
    if path[0] == "token" and path[1] != "fido2":
        runs += [(f"empty {kind} card", argv) for kind in ("oath", "piv") for _, argv in runs[-1:]]
    for label, argv in runs:
        if label.startswith("empty"):
            card = label.split()[1]  # a reader holding a card without the applet or data
            monkeypatch.setattr("tokens.cli.connect", lambda reader, c=card: SimLink(make_card(c)))
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("{")]
        where = f"{' '.join(argv)} ({label}):\n{err}"
        assert "Traceback" not in err, where
        ran += 1
        if code == 0 and label.startswith("empty"):
            continue  # listing what an empty card holds is no error
        assert code != 0, where
        assert lines, where
        assert "eapkit" in lines[-1] or ": error:" in lines[-1], where
        if PRINT:
            print(f"{' '.join(argv)}\n    -> {code}: {lines[-1]}", file=sys.__stderr__)
        assert len(lines[-1]) < 400, where
    assert ran or path in NOTHING_TO_GET_WRONG, f"no bad input tried for {' '.join(path)}"
