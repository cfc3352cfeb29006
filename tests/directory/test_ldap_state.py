"""OpenLDAP account state and stable keys against a real slapd with the ppolicy overlay
(tests/interop/ldap_server.py): a locked account, a password that must be changed, an
expired password and a disabled account each get their own reason; second factors are
stored under entryUUID, so a renamed user keeps them and a new user with an old name
does not inherit them; ``eapkit enroll`` checks the user exists in LDAP."""

from __future__ import annotations

import re
import time
from base64 import b32decode
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.cli import main
from eapkit.directory import DirectoryUnavailable
from eapkit.directory.groups import LdapSettings
from eapkit.directory.ldap import LdapDirectory
from eapkit.second_factor import SecondFactors
from eapkit.serve import ServeConfig, open_directory, open_second_factors
from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.verify.otp import OtpCredential, totp
from tests.conftest import free_tcp_port
from tests.interop.ldap_server import (
    DISABLED_FILTER,
    GROUPS,
    PEOPLE,
    READER,
    READER_PASSWORD,
    Slapd,
    add_user,
    directory_table,
    rename,
    running_slapd,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(Path(tmp_path_factory.mktemp("slapd"))) as server:
        server.wait_expired()
        yield server


def directory(slapd: Slapd, store: MemoryStore | None = None, **kw: object) -> LdapDirectory:
    base: dict[str, object] = {
        "servers": (slapd.ldaps_url,),
        "base": PEOPLE,
        "bind_dn": READER,
        "bind_password": READER_PASSWORD,
        "ca": slapd.ca,
        "timeout": 2.0,
        "disabled_filter": DISABLED_FILTER,
    }
    base.update(kw)
    return LdapDirectory(LdapSettings(**base), store)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("lou", "lou-pw", "account_locked"),
        ("lou", "wrong", "account_locked"),  # slapd refuses a locked account outright
        ("rita", "rita-pw", "password_must_change"),
        ("rita", "wrong", "bad_password"),
        ("eve", "eve-pw", "password_expired"),
        ("eve", "wrong", "bad_password"),
        ("dora", "dora-pw", "account_disabled"),
        ("dora", "wrong", "bad_password"),
        ("dave", "dave-pw", "ok"),
    ],
)
def test_account_state_reasons(slapd: Slapd, user: str, password: str, reason: str) -> None:
    verdict = directory(slapd).check_password(user, password, time.time())
    assert verdict.reason == reason
    assert verdict.ok == (reason == "ok")


def test_disabled_only_by_the_configured_filter(slapd: Slapd) -> None:
    assert directory(slapd, disabled_filter=None).check_password("dora", "dora-pw", 0.0).ok


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("lou", "lou-pw", "account_locked"),
        ("rita", "rita-pw", "password_must_change"),
        ("dave", "dave-pw", "ok"),
    ],
)
def test_state_from_the_entry_when_no_control_comes_back(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch, user: str, password: str, reason: str
) -> None:
    # A bind without the request control gets no response control (a server without
    # ppolicy): pwdAccountLockedTime and pwdReset, read by the bind account, decide.
    monkeypatch.setattr("eapkit.directory.ldap._PPOLICY_REQUEST", None)
    assert directory(slapd).check_password(user, password, 0.0).reason == reason


def test_records_carry_the_entry_uuid(slapd: Slapd) -> None:
    d = directory(slapd)
    dave, carl = d.get("dave"), d.get("carl")
    assert dave is not None and carl is not None
    assert re.fullmatch(r"entryUUID:[0-9a-f-]{36}", dave.factor_key)
    assert dave.factor_key != carl.factor_key


def test_an_entry_without_the_stable_id_fails_closed(slapd: Slapd) -> None:
    # no entry has an employeeNumber: their factors would have nowhere stable to live
    d = directory(slapd, id_attribute="employeeNumber")
    with pytest.raises(DirectoryUnavailable, match="employeeNumber"):
        d.get("dave")
    assert d.check_password("dave", "dave-pw", 0.0).reason == "directory_unavailable"


def _factors(d: LdapDirectory, store: MemoryStore) -> SecondFactors:
    return SecondFactors(d, store, Sealer({"k1": bytes(32)}))


def test_renamed_user_keeps_their_totp_and_a_new_namesake_gets_none(slapd: Slapd) -> None:
    store = MemoryStore()
    d = directory(slapd, store)
    factors = _factors(d, store)
    secret, now = bytes(range(20)), time.time()
    record = d.get("ren")
    assert record is not None
    factors.totp.enroll(factors.key("ren"), OtpCredential(secret, "totp"), now)
    assert d.set_second_factor("ren", "totp")
    assert factors.check_code("ren", totp(secret, now), now).ok

    rename(slapd, "ren", "rennie")
    d2 = directory(slapd, store)  # a fresh cache: what a restarted server sees
    renamed = d2.get("rennie")
    assert renamed is not None and renamed.factor_key == record.factor_key
    assert renamed.second_factor == "totp"
    later = now + 60
    verdict = _factors(d2, store).check_code("rennie", totp(secret, later), later)
    assert verdict.ok and verdict.user == "rennie"

    add_user(slapd, "ren", "new-ren-pw")  # someone new gets the old name
    d3 = directory(slapd, store)
    newcomer = d3.get("ren")
    assert newcomer is not None and newcomer.factor_key != record.factor_key
    assert newcomer.second_factor == "none"
    even_later = now + 120
    assert not _factors(d3, store).check_code("ren", totp(secret, even_later), even_later).ok


def _serve_toml(slapd: Slapd, work: Path) -> Path:
    table = directory_table(slapd, work, extra=f'disabled_filter = "{DISABLED_FILTER}"\n')
    toml = work / "serve.toml"
    toml.write_text(f'db = "{work / "eapkit.db"}"\nlog = "{work / "decisions.log"}"\n' + table)
    return toml


def test_enroll_checks_the_directory_and_stores_under_the_stable_key(
    slapd: Slapd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _serve_toml(slapd, tmp_path)
    assert main(["enroll", "totp", "nobody", "--config", str(toml), "--no-terminal"]) != 0
    err = capsys.readouterr().err
    assert "no user nobody in the directory" in err and "Traceback" not in err

    assert main(["enroll", "totp", "ray", "--config", str(toml), "--no-terminal"]) == 0
    uri = capsys.readouterr().out
    found = re.search(r"secret=([A-Z2-7]+)", uri)
    assert found is not None
    secret = b32decode(found.group(1) + "=" * (-len(found.group(1)) % 8))

    cfg = ServeConfig.from_toml(toml)
    users = open_directory(cfg)
    record = users.get("ray")
    assert record is not None and record.key is not None
    second = open_second_factors(cfg, users)
    # stored under entryUUID, not under the name
    keys = second.store.record_keys()  # type: ignore[attr-defined]
    assert f"otp:cred:{record.key}" in keys
    assert not any(k.endswith(":ray") for k in keys)
    now = time.time()
    assert second.check_code("ray", totp(secret, now), now).ok


def _directory_test(
    capsys: pytest.CaptureFixture[str], toml: Path, user: str
) -> tuple[int, str, str]:
    code = main(["directory", "test", user, "--config", str(toml)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_directory_test_shows_what_the_server_sees(
    slapd: Slapd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _serve_toml(slapd, tmp_path)
    with toml.open("a") as f:
        f.write(
            f"""group_base = "{GROUPS}"
group_filter = "(&(objectClass=groupOfNames)(member={{dn}}))"

[[policy.groups]]
group = "vpn-admins"
second_factor = "security_key"
session_timeout = 3600
"""
        )
    code, out, err = _directory_test(capsys, toml, "amy")
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["dn"] == f"uid=amy,{PEOPLE}"
    assert re.fullmatch(r"entryUUID:[0-9a-f-]{36}", fields["stable id"])
    assert fields["groups (memberOf)"] == f"cn=vpn-admins,{GROUPS}"
    assert fields["groups (search)"] == f"cn=vpn-admins,{GROUPS}"
    assert fields["policy"] == "vpn-admins ([[policy.groups]])"
    assert fields["second factor"] == "webauthn"
    assert fields["reply attributes"] == "session_timeout=3600"
    assert fields["server"] == slapd.ldaps_url
    assert fields["account state"].startswith("usable")

    code, out, _ = _directory_test(capsys, toml, "lou")
    assert code == 0 and "account state: account_locked" in " ".join(out.split())
    code, out, _ = _directory_test(capsys, toml, "dora")
    assert code == 0 and "account_disabled" in out and "none matched" in out


def test_directory_test_unknown_user_and_unreachable_directory(
    slapd: Slapd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _serve_toml(slapd, tmp_path)
    code, out, err = _directory_test(capsys, toml, "nobody")
    assert code == 1 and "no user nobody" in err and out == ""
    up = f'servers = ["{slapd.ldaps_url}"]'
    down_url = f"ldaps://localhost:{free_tcp_port()}"
    original = toml.read_text()
    toml.write_text(original.replace(up, f'servers = ["{down_url}"]'))
    code, _, err = _directory_test(capsys, toml, "amy")
    assert code == 2 and "did not answer" in err and "Traceback" not in err
    # the first server down, the second up: the one that answered is named
    toml.write_text(original.replace(up, f'servers = ["{down_url}", "{slapd.ldaps_url}"]'))
    code, out, _ = _directory_test(capsys, toml, "amy")
    assert code == 0
    assert out.splitlines()[0].split(None, 1) == ["server:", slapd.ldaps_url]
