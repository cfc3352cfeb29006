"""The LDAP lookup cache under attack (issue 18): a user changed in LDAP (password,
lock, delete, rename, disable, delete and re-create) must not keep logging in from the
positive cache beyond its bounded TTL.  The windows measured here are the ones
docs/directories.md states: 0 for what the bind itself tells (password, lock, delete,
rename), ``cache_ttl`` for what only the lookup tells (disabled_filter, groups, the
entryUUID of a re-created name)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eapkit.directory.groups import MAX_CACHE_TTL, LdapSettings
from eapkit.directory.ldap import _TRUSTED, LdapDirectory
from eapkit.errors import ConfigError
from eapkit.store.memory import MemoryStore
from tests.interop.ldap_server import (
    DISABLED_FILTER,
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    add_user,
    delete_user,
    rename,
    replace_attributes,
    running_slapd,
)

pytestmark = pytest.mark.interop

TTL = 1.0  # short, so the test waits it out
LONG_TTL = 30.0  # longer than any test waits: what is refused was refused despite the cache
TRUSTED = _TRUSTED


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-cache"))) as server:
        yield server


def cached(slapd: Slapd, ttl: float = TTL, **kw: Any) -> LdapDirectory:
    return LdapDirectory(
        LdapSettings(
            servers=(slapd.ldaps_url,),
            base=PEOPLE,
            bind_dn=READER,
            bind_password=READER_PASSWORD,
            ca=slapd.ca,
            timeout=2.0,
            cache_ttl=ttl,
            disabled_filter=DISABLED_FILTER,
            **kw,
        ),
        MemoryStore(),
    )


def test_cache_ttl_is_bounded() -> None:
    with pytest.raises(ConfigError, match="cache_ttl"):
        LdapSettings(servers=("ldaps://x",), base=PEOPLE, cache_ttl=MAX_CACHE_TTL + 1)
    with pytest.raises(ConfigError, match="cache_ttl"):
        LdapSettings(servers=("ldaps://x",), base=PEOPLE, cache_ttl=float("inf"))
    LdapSettings(servers=("ldaps://x",), base=PEOPLE, cache_ttl=MAX_CACHE_TTL)


@pytest.mark.parametrize("change", ["password", "lock", "delete", "rename"])
def test_what_the_bind_tells_ends_at_once(slapd: Slapd, change: str) -> None:
    name = f"c-{change}"
    add_user(slapd, name, "old-pw")
    d = cached(slapd)
    assert d.check_password(name, "old-pw", 0.0).ok  # now cached
    if change == "password":
        replace_attributes(slapd, name, {"userPassword": ["new-pw"]})
        # an operator's reset (pwdMustChange): the new password binds, then must change
        assert d.check_password(name, "new-pw", 0.0).reason == "password_must_change"
        expected = "bad_password"
    elif change == "lock":
        replace_attributes(slapd, name, {"pwdAccountLockedTime": ["000001010000Z"]})
        expected = "account_locked"
    elif change == "delete":
        delete_user(slapd, name)
        expected = "bad_password"  # the cached DN no longer binds
    else:
        rename(slapd, name, f"{name}-new")
        assert d.check_password(f"{name}-new", "old-pw", 0.0).ok
        expected = "bad_password"
    assert name in d._cache  # still cached: the bind, not the cache, refuses
    assert d.check_password(name, "old-pw", 0.0).reason == expected
    d.close()


def test_disabled_user_refused_within_a_second_not_the_ttl(slapd: Slapd) -> None:
    # The cached lookup said "not disabled" for cache_ttl (up to 300 s); a cached entry
    # older than a second is now checked again after the bind.
    add_user(slapd, "c-disable", "pw")
    d = cached(slapd, ttl=LONG_TTL)
    assert d.check_password("c-disable", "pw", 0.0).ok
    replace_attributes(slapd, "c-disable", {"employeeType": ["disabled"]})
    changed = time.monotonic()
    refused_at = None
    while time.monotonic() - changed < LONG_TTL / 4:
        if d.check_password("c-disable", "pw", 0.0).reason == "account_disabled":
            refused_at = time.monotonic() - changed
            break
        time.sleep(0.1)
    assert refused_at is not None and refused_at < LONG_TTL / 4
    assert d.check_password("c-disable", "pw", 0.0).reason == "account_disabled"
    d.close()


def test_recreated_name_gets_no_factors_of_the_old_entry(slapd: Slapd) -> None:
    # Deleted and re-created under the same name (same DN, new entryUUID): the cached
    # lookup kept the old entryUUID, so the new person was asked for, and had, the old
    # one's enrollments for cache_ttl.
    add_user(slapd, "c-again", "first-pw")
    d = cached(slapd, ttl=LONG_TTL)
    assert d.set_second_factor("c-again", "totp")
    old = d.get("c-again")
    assert old is not None and old.second_factor == "totp"
    delete_user(slapd, "c-again")
    add_user(slapd, "c-again", "second-pw")
    fresh = d.explain("c-again")
    assert fresh is not None and fresh.key != old.factor_key
    assert fresh.user.second_factor == "none"
    time.sleep(TRUSTED + 0.2)
    # the request holding the old record is refused; the next one sees the new entry
    assert d.check_password("c-again", "second-pw", 0.0).reason == "entry_replaced"
    new = d.get("c-again")
    assert new is not None and new.factor_key == fresh.key and new.second_factor == "none"
    assert d.check_password("c-again", "second-pw", 0.0).ok
    assert d.check_password("c-again", "first-pw", 0.0).reason == "bad_password"
    d.close()
