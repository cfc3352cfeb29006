"""``token`` commands (tokens.cli) against virtual cards through pcscd."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from eapkit.verify.otp import totp
from tests.tokens.cards import RFC_SECRET_SHA1, TOTP_B32, oath_state, otp_state, piv_state
from tests.tokens.conftest import READERS, CardFactory
from tokens.cli import main, percentile, register, run_bench
from tokens.errors import StatusError


def test_percentiles_and_bench_accounting() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    outcomes = iter([None, "bad signature", None])

    def op() -> str | None:
        outcome = next(outcomes, None)
        if outcome == "boom":
            raise StatusError(0x6982)
        return outcome

    seen: list[int] = []
    result = run_bench(op, 4, progress=lambda done, total: seen.append(done))
    assert result["ok"] == 3 and result["failures"] == {"bad signature": 1}
    assert seen == [1, 2, 3, 4]
    failing = run_bench(lambda: (_ for _ in ()).throw(StatusError(0x6983)), 2)
    assert failing["failures"] == {"SW 6983 authentication method blocked": 2}


def test_register_adds_a_token_tree() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["token", "bench", "piv", "-n", "3", "--slot", "9c"])
    assert (args.kind, args.count, args.slot) == ("piv", 3, "9c")


@pytest.mark.interop
def test_list_oath_and_bench(virtual_card: CardFactory, capsys: pytest.CaptureFixture[str]) -> None:
    virtual_card(
        "yubikey", {"oath": oath_state(), "otp": otp_state(b"k" * 20, serial=321)}, READERS[0]
    )
    virtual_card("piv", {"piv": piv_state()}, READERS[1])
    assert main(["token", "list"]) == 0
    out = capsys.readouterr().out
    assert "Virtual PCD 00 00" in out and "OATH, YubiKey OTP, PIV, FIDO" in out
    assert "serial 321" in out

    assert (
        main(["token", "oath", "add", "--reader", "00 00", "new", TOTP_B32, "--issuer", "X"]) == 0
    )
    assert main(["token", "oath", "code", "--reader", "00 00", "X:new"]) == 0
    code = capsys.readouterr().out.strip().splitlines()[-1].split("\t")[1]
    assert re.fullmatch(r"\d{6}", code)

    argv = ["token", "bench", "oath", "--reader", "00 00", "-n", "5", "--quiet"]
    assert main([*argv, "--account", "X:new", "--secret", TOTP_B32]) == 0
    assert "oath: 5/5 ok" in capsys.readouterr().out
    # a wrong expected secret shows up as failures with their reason, exit status 1
    assert main([*argv, "--account", "X:new", "--secret", "MFRGGZDFMZTWQ2LK"]) == 1
    assert "failed 5x: code differs" in capsys.readouterr().out

    assert (
        main(
            [
                "token",
                "bench",
                "otp",
                "--reader",
                "00 00",
                "-n",
                "3",
                "--quiet",
                "--secret",
                (b"k" * 20).hex(),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "token",
                "bench",
                "piv",
                "--reader",
                "00 01",
                "-n",
                "3",
                "--quiet",
                "--pin",
                "123456",
                "--slot",
                "9c",
            ]
        )
        == 0
    )
    assert "piv: 3/3 ok" in capsys.readouterr().out
    assert totp(RFC_SECRET_SHA1, 59) == "287082"


@pytest.mark.interop
def test_piv_and_fido2_commands(
    virtual_card: CardFactory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    virtual_card("piv", {"piv": piv_state()}, READERS[0])
    virtual_card("fido2", {"fido2": {"pin": "1357"}}, READERS[1])
    assert main(["token", "piv", "certs", "--reader", "00 00"]) == 0
    assert "9C (digital signature)" in capsys.readouterr().out
    assert main(["token", "piv", "sign", "--reader", "00 00", "--pin", "123456"]) == 0
    assert "verifies" in capsys.readouterr().out
    assert main(["token", "piv", "sign", "--reader", "00 00", "--pin", "000000"]) == 2
    assert "wrong PIN, 2 tries left" in capsys.readouterr().err

    db = str(tmp_path / "rp.sqlite")
    common = ["--reader", "00 01", "--pin", "1357", "--db", db]
    assert main(["token", "fido2", "register", *common, "--user", "dora"]) == 0
    assert main(["token", "fido2", "assert", *common, "--user", "dora"]) == 0
    assert "assertion ok: ok user=dora UV=True" in capsys.readouterr().out
    assert (
        main(
            ["token", "bench", "fido2", "--reader", "00 01", "--pin", "1357", "-n", "3", "--quiet"]
        )
        == 0
    )
    assert "fido2: 3/3 ok" in capsys.readouterr().out
