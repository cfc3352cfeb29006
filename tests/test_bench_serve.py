"""benchmarks/bench_serve.py gives FreeRADIUS the stored password eapkit checks (issue 21:
both servers do the same work per PAP login); the conversion is checked against
FreeRADIUS's own PBKDF2-Password vectors (vectors/freeradius_pbkdf2.json)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.bench_serve import bench_user, freeradius_pbkdf2
from eapkit.passwords import hash_password, verify_password

VECTORS = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "freeradius_pbkdf2.json").read_text()
)["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_eapkit_hash_in_freeradius_form_is_freeradius_vector(case: dict[str, str]) -> None:
    _, count, salt, _ = case["value"].split(":")
    iterations = int.from_bytes(base64.b64decode(count + "=" * (-len(count) % 4)), "big")
    stored = hash_password(case["password"], iterations=iterations, salt=base64.b64decode(salt))
    assert freeradius_pbkdf2(stored) == case["value"]


@given(st.binary(min_size=0, max_size=64), st.integers(1000, 1200))
def test_conversion_keeps_iterations_salt_and_hash(salt: bytes, iterations: int) -> None:
    value = freeradius_pbkdf2(hash_password("pw", iterations=iterations, salt=salt))
    method, count, salt64, digest64 = value.split(":")
    assert method == "HMACSHA2+256"
    assert int.from_bytes(base64.b64decode(count + "=" * (-len(count) % 4)), "big") == iterations
    assert base64.b64decode(salt64) == salt
    assert len(base64.b64decode(digest64)) == 32


def test_not_pbkdf2_sha256_is_refused() -> None:
    with pytest.raises(ValueError):
        freeradius_pbkdf2("sha1$1000$c2FsdA$aGFzaA")


def test_bench_user_line_matches_the_user_file(tmp_path: Path) -> None:
    from eapkit.directory import LocalDirectory

    line = bench_user(tmp_path / "users.db")
    record = LocalDirectory(tmp_path / "users.db").get("alice")
    assert record is not None and record.password_hash and record.nt_hash
    assert verify_password("wonderland", record.password_hash)
    assert freeradius_pbkdf2(record.password_hash) in line
    assert f"NT-Password := 0x{record.nt_hash.hex()}" in line
