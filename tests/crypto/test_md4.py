"""MD4 (RFC 1320) against the RFC's examples and, where installed, OpenSSL's legacy MD4."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.crypto.md4 import md4, md4_pure
from tests.vectorlib import Case, ids, load

CASES = load("mschap_md4")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_rfc1320_examples(case: Case) -> None:
    message = case["message"].encode("ascii")
    assert md4_pure(message).hex() == case["digest"]
    assert md4(message).hex() == case["digest"]


OPENSSL = shutil.which("openssl")


def _openssl_md4(data: bytes) -> str | None:
    assert OPENSSL is not None
    proc = subprocess.run(
        [OPENSSL, "dgst", "-md4", "-provider", "legacy", "-provider", "default"],
        input=data,
        capture_output=True,
        check=False,
        timeout=10,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().rsplit("= ", 1)[-1].strip()


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
@pytest.mark.parametrize("length", [1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000])
def test_padding_boundaries_agree_with_openssl(length: int) -> None:
    # the padding changes shape at 55/56 bytes mod 64
    data = (bytes(range(256)) * 4)[:length]
    expected = _openssl_md4(data)
    if expected is None:
        pytest.skip("this OpenSSL has no legacy provider")
    assert md4_pure(data).hex() == expected


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
@settings(max_examples=15)
@given(st.binary(max_size=300))
def test_agrees_with_openssl_legacy_md4(data: bytes) -> None:
    expected = _openssl_md4(data)
    if expected is None:
        pytest.skip("this OpenSSL has no legacy provider")
    assert md4_pure(data).hex() == expected
