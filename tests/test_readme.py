"""The README's example runs as written, and its main-job command works."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from eapkit.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_example_runs_and_prints_what_it_says() -> None:
    blocks = python_blocks()
    assert blocks, "README has a Python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert out.getvalue().split("\n")[:2] == ["True alice", "True"]


def test_demo_command_succeeds() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo"]) == 0
    assert "EAP-GTC right password: Success" in out.getvalue()
    assert "EAP-GTC wrong password: Failure (reason=bad_password" in out.getvalue()


def test_readme_names_the_commands_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "scripts/test" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in ci
