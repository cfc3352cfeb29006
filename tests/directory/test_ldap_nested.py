"""Groups in groups for the LDAP directory (issue 18): the walk
(:func:`eapkit.directory.groups.nested_groups`) on made-up graphs, then against the
private slapd (tests/interop/ldap_server.py), where cleo is a contractor only through
contractors-eu and lola's loop-a and loop-b are members of each other: policy matching
through the nested group, with the memberOf overlay and with a group filter, the cycle,
what it costs in searches, ``eapkit directory test``, and failing closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eapkit.cli import main
from eapkit.directory.base import DirectoryUnavailable
from eapkit.directory.groups import (
    MAX_GROUPS,
    MAX_NESTING,
    GroupPolicy,
    LdapSettings,
    nested_groups,
)
from eapkit.directory.ldap import LdapDirectory
from tests.directory.test_ldap_state import _serve_toml
from tests.directory.test_ldap_state import directory as state_directory
from tests.interop.ldap_server import (
    GROUPS,
    Slapd,
    running_slapd,
)

# -- the walk, on graphs made up here ---------------------------------------------------


def _parents_of(edges: dict[str, list[str]], calls: list[list[str]] | None = None) -> Any:
    def parents(level: list[str]) -> list[str]:
        if calls is not None:
            calls.append(list(level))
        return [p for g in level for p in edges.get(g, [])]

    return parents


def _reachable(direct: list[str], edges: dict[str, list[str]]) -> set[str]:
    seen, todo = set(direct), list(direct)
    while todo:
        for p in edges.get(todo.pop(), []):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen - set(direct)


def test_walk_breadth_first_each_once_one_call_per_level() -> None:
    edges = {"cn=a": ["cn=b", "cn=c"], "cn=b": ["cn=d"], "cn=c": ["cn=d", "cn=a"]}
    calls: list[list[str]] = []
    assert nested_groups(["cn=a"], _parents_of(edges, calls)) == ("cn=b", "cn=c", "cn=d")
    assert calls == [["cn=a"], ["cn=b", "cn=c"], ["cn=d"]]


def test_walk_ends_a_cycle_and_compares_dns_as_policies_do() -> None:
    edges = {"cn=a,dc=x": ["CN=B, DC=X"], "CN=B, DC=X": ["cn=a,dc=x", "cn=A,dc=X"]}
    assert nested_groups(["cn=a,dc=x"], _parents_of(edges)) == ("CN=B, DC=X",)
    assert nested_groups([], _parents_of(edges)) == ()


def test_walk_fails_closed_deeper_than_the_cap() -> None:
    chain = {f"cn=g{i}": [f"cn=g{i + 1}"] for i in range(MAX_NESTING)}  # 8 levels up
    assert len(nested_groups(["cn=g0"], _parents_of(chain))) == MAX_NESTING
    deeper = {**chain, f"cn=g{MAX_NESTING}": [f"cn=g{MAX_NESTING + 1}"]}
    with pytest.raises(DirectoryUnavailable, match="deeper than 8"):
        nested_groups(["cn=g0"], _parents_of(deeper))


def test_walk_fails_closed_beyond_the_group_cap() -> None:
    wide = {"cn=u": [f"cn=g{i}" for i in range(MAX_GROUPS - 1)]}
    assert len(nested_groups(["cn=u"], _parents_of(wide))) == MAX_GROUPS - 1
    wider = {"cn=u": [f"cn=g{i}" for i in range(MAX_GROUPS)]}
    with pytest.raises(DirectoryUnavailable, match="more than 1000"):
        nested_groups(["cn=u"], _parents_of(wider))


_NAMES = st.sampled_from([f"cn=g{i}" for i in range(12)])


@given(
    direct=st.lists(_NAMES, max_size=4),
    edges=st.dictionaries(_NAMES, st.lists(_NAMES, max_size=4), max_size=12),
)
def test_walk_finds_exactly_what_is_reachable(
    direct: list[str], edges: dict[str, list[str]]
) -> None:
    found = nested_groups(direct, _parents_of(edges), depth=12)
    assert len(found) == len(set(found))
    assert set(found) == _reachable(direct, edges)


# -- against slapd -----------------------------------------------------------------------

CONTRACTORS = f"cn=contractors,{GROUPS}"
EU = f"cn=contractors-eu,{GROUPS}"
LOOP_A, LOOP_B = f"cn=loop-a,{GROUPS}", f"cn=loop-b,{GROUPS}"
POLICIES = (
    GroupPolicy(CONTRACTORS, None, name="contractors-8h"),
    GroupPolicy("loop-b", "totp", name="looped"),
)
GROUP_FILTER = "(&(objectClass=groupOfNames)(member={dn}))"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd-nested"))) as server:
        yield server


def directory(slapd: Slapd, **kw: Any) -> LdapDirectory:
    """test_ldap_state's directory, uncached, with this module's group policies."""
    return state_directory(slapd, **{"cache_ttl": 0.0, "groups": POLICIES, **kw})


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["memberOf", "group_filter"])
def test_policy_matches_through_the_nested_group(slapd: Slapd, mode: str) -> None:
    kw: dict[str, Any] = {}
    if mode == "group_filter":
        kw = {"group_attribute": "cn", "group_base": GROUPS, "group_filter": GROUP_FILTER}
    d = directory(slapd, **kw)
    cleo = d.explain("cleo")
    assert cleo is not None
    assert cleo.nested == (CONTRACTORS,) and cleo.matched == "contractors-8h"
    direct = cleo.member_of if mode == "memberOf" else cleo.searched
    assert direct == (EU,)
    assert d.check_password("cleo", "cleo-pw", 0.0).ok
    carl = d.explain("carl")  # directly in contractors, which is in nothing
    assert carl is not None and carl.nested == () and carl.matched == "contractors-8h"
    # off: cleo is only in contractors-eu, which no policy names
    flat = directory(slapd, nested_groups=False, **kw).explain("cleo")
    assert flat is not None and flat.nested == () and flat.matched is None


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["memberOf", "group_filter"])
def test_a_cycle_of_groups_ends(slapd: Slapd, mode: str) -> None:
    kw: dict[str, Any] = {}
    if mode == "group_filter":
        kw = {"group_attribute": "cn", "group_base": GROUPS, "group_filter": GROUP_FILTER}
    lola = directory(slapd, **kw).explain("lola")
    assert lola is not None
    assert lola.matched == "looped" and lola.user.second_factor == "totp"
    direct = lola.member_of if mode == "memberOf" else lola.searched
    assert direct == (LOOP_A,) and lola.nested == (LOOP_B,)


class _Counting(LdapDirectory):
    """Counts the searches of one lookup."""

    searches = 0

    def _search(self, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        self.searches += 1
        return super()._search(*args, **kw)


@pytest.mark.interop
@pytest.mark.parametrize(
    ("user", "flat", "nested"),
    [
        # user search, then (nested) one group read per group met, one more for a
        # level that brings nothing; a user in no group and a name nobody has pay one
        ("dave", 1, 2),
        ("nobody", 1, 2),
        ("amy", 1, 2),  # vpn-admins, in nothing
        ("cleo", 1, 3),  # contractors-eu, then contractors
        ("lola", 1, 3),  # loop-a, then loop-b (whose parent loop-a was seen)
    ],
)
def test_what_nesting_costs_in_searches(slapd: Slapd, user: str, flat: int, nested: int) -> None:
    settings = _fields(directory(slapd, disabled_filter=None).settings)
    for on, expected in ((False, flat), (True, nested)):
        d = _Counting(LdapSettings(**{**settings, "nested_groups": on}))
        d.get(user)
        assert d.searches == expected, (user, on)
    # no [[policy.groups]]: groups decide nothing, so no walk
    d = _Counting(LdapSettings(**{**settings, "groups": ()}))
    d.get(user)
    assert d.searches == flat


def _fields(settings: LdapSettings) -> dict[str, Any]:
    return {f: getattr(settings, f) for f in settings.__dataclass_fields__}


@pytest.mark.interop
def test_a_failing_nested_search_fails_closed(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = directory(slapd)
    real = LdapDirectory._search

    def group_reads_fail(self: LdapDirectory, base: str, *args: Any, **kw: Any) -> Any:
        if base == EU:
            raise DirectoryUnavailable("LDAP search failed")
        return real(self, base, *args, **kw)

    monkeypatch.setattr(LdapDirectory, "_search", group_reads_fail)
    assert d.check_password("cleo", "cleo-pw", 0.0).reason == "directory_unavailable"
    assert d.check_password("carl", "carl-pw", 0.0).ok  # never reads contractors-eu


@pytest.mark.interop
def test_directory_test_shows_the_nested_groups(
    slapd: Slapd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _serve_toml(slapd, tmp_path)
    with toml.open("a") as f:
        f.write(
            f"""
[[policy.groups]]
group = "{CONTRACTORS}"
name = "contractors-8h"
session_timeout = 28800
"""
        )
    assert main(["directory", "test", "cleo", "--config", str(toml)]) == 0
    rows = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    fields = {k: v.strip() for k, v in rows.items()}
    assert fields["groups (memberOf)"] == EU
    assert fields["groups (nested)"] == CONTRACTORS
    assert fields["policy"] == "contractors-8h ([[policy.groups]])"
    assert fields["reply attributes"] == "session_timeout=28800"
    toml.write_text(
        toml.read_text().replace("timeout = 2\n", "timeout = 2\nnested_groups = false\n")
    )
    assert main(["directory", "test", "cleo", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "groups (nested)" not in out and "none matched" in out
