from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eapkit.passwords import VerifiedCache, hash_password, verify_password


@settings(max_examples=20)
@given(st.text(max_size=40), st.text(max_size=40))
def test_hash_verifies_only_its_password(password: str, other: str) -> None:
    stored = hash_password(password, iterations=1000)
    assert verify_password(password, stored)
    assert verify_password(other, stored) == (other == password)


def test_unknown_user_and_garbage_never_verify() -> None:
    assert not verify_password("x", None)
    assert not verify_password("x", "garbage")
    assert not verify_password("x", "md5$1$a$b")
    assert not verify_password("x", "pbkdf2-sha256$10$AAAA$AAAA")


def test_salts_differ() -> None:
    assert hash_password("pw", iterations=1000) != hash_password("pw", iterations=1000)


def test_cache_remembers_success_until_expiry_and_password_change() -> None:
    cache = VerifiedCache(ttl=10)
    stored = hash_password("pw", iterations=1000)
    assert cache.check("u", "pw", stored, now=0)
    assert cache.check("u", "pw", stored, now=5)
    assert not cache.check("u", "wrong", stored, now=5)
    new = hash_password("new", iterations=1000)
    assert not cache.check("u", "pw", new, now=6)
    assert cache.check("u", "pw", stored, now=20)  # expired entry re-verified, still right
