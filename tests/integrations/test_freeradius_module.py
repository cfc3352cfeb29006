"""The rlm_python3 module without FreeRADIUS: its configuration, the rcode of every
verdict, arbitrary requests, and that it loads under Debian's own Python (which
FreeRADIUS embeds) with Debian's python3-cryptography and without pyOpenSSL."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eapkit
from eapkit.directory import LocalDirectory, RequestScoped, StoredDirectory, User
from eapkit.errors import ConfigError
from eapkit.integrations import freeradius as fr
from eapkit.integrations.freeradius import Adapter
from eapkit.second_factor import SecondFactors
from eapkit.store import open_store
from eapkit.store.sealing import Sealer
from eapkit.verify.otp import OtpCredential, totp
from tests.conftest import IN_CI

REPO = Path(eapkit.__file__).resolve().parent.parent
SECRET = bytes(range(20))
KEYS = "k1:" + base64.b64encode(bytes(32)).decode()


def make_db(tmp_path: Path) -> Path:
    db = tmp_path / "eapkit.db"
    users = LocalDirectory(db)
    users.add("alice", "pw", second_factor="totp", nt_hash=False, iterations=1000)
    users.add("plain", "pw", nt_hash=False, iterations=1000)
    (tmp_path / "eapkit-store.key").write_text(KEYS + "\n")
    second = SecondFactors(users, open_store(f"sqlite:{db}"), Sealer.from_config(KEYS))
    second.totp.enroll("alice", OtpCredential(SECRET), time.time())
    second.store.close()
    users.close()
    return db


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def adapter(tmp_path: Path, **config: str) -> tuple[Adapter, list[str]]:
    lines: list[str] = []
    a = Adapter.from_config(
        {"db": str(make_db(tmp_path)), **config},
        environ={},
        log=lambda level, text: lines.append(text),
    )
    return a, lines


def req(user: str, password: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("User-Name", user), ("User-Password", password), *extra)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs db"):
        Adapter.from_config({}, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        Adapter.from_config({"db": str(tmp_path / "none.db")}, environ={})
    db = make_db(tmp_path)
    (tmp_path / "eapkit-store.key").unlink()
    with pytest.raises(ConfigError, match="EAPKIT_STORE_KEYS"):
        Adapter.from_config({"db": str(db)}, environ={})
    # the environment variable serve reads works here too
    assert Adapter.from_config({"db": str(db)}, environ={"EAPKIT_STORE_KEYS": KEYS})
    (tmp_path / "other.key").write_text(KEYS)
    assert Adapter.from_config({"db": str(db), "store_keys_file": str(tmp_path / "other.key")})


def test_authorize_claims_pap_requests_only(tmp_path: Path) -> None:
    a, _ = adapter(tmp_path, auth_type="otp2")
    assert a.authorize((("User-Name", "alice"),)) == fr.NOOP
    assert a.authorize(req("alice", "x")) == (fr.UPDATED, (), (("Auth-Type", ":=", "otp2"),))


def test_rcodes(tmp_path: Path) -> None:
    a, lines = adapter(tmp_path)
    now = time.time()
    a._clock = Clock(now)
    code = totp(SECRET, now)
    assert a.authenticate(req("alice", "pw" + code)) == fr.OK
    assert a.authenticate(req("alice", "pw" + code)) == fr.REJECT  # replayed
    assert a.authenticate(req("alice", "nope" + code)) == fr.REJECT
    assert a.authenticate(req("nobody", "pw123456")) == fr.NOTFOUND
    assert a.authenticate(req("plain", "pw")) == fr.OK
    assert a.authenticate(req("alice", "pw")) == fr.REJECT  # no challenge configured
    assert a.authenticate((("User-Name", "alice"),)) == fr.INVALID
    wrong = "000000" if code != "000000" else "111111"
    results = [a.authenticate(req("alice", "pw" + wrong)) for _ in range(6)]
    assert results[-1] == fr.USERLOCK
    reasons = [json.loads(line.removeprefix("eapkit: ")).get("reason") for line in lines]
    assert reasons[:7] == [
        "ok",
        "replayed",
        "bad_password",
        "unknown_user",
        "ok",
        "malformed",
        "bad_code",
    ]
    assert "locked_out" in reasons
    assert not any(code in line or "pw" + wrong in line for line in lines)  # no secrets


def test_users_in_the_store_read_once_per_request(tmp_path: Path) -> None:
    db = make_db(tmp_path)
    StoredDirectory(open_store(f"sqlite:{db}"), owns_store=True).add(
        "stella", "pw", nt_hash=False, iterations=1000
    )
    a = Adapter.from_config({"db": str(db), "directory": "store"}, environ={})
    assert a.authenticate(req("stella", "pw")) == fr.OK
    assert a.authenticate(req("alice", "pw")) == fr.NOTFOUND  # alice is in the local table
    scoped = a.second.users
    assert isinstance(scoped, RequestScoped)
    reads: list[str] = []
    inner = scoped.directory
    real_get = inner.get

    def counting_get(name: str) -> User | None:
        reads.append(name)
        return real_get(name)

    inner.get = counting_get  # type: ignore[method-assign]
    assert a.authenticate(req("stella", "pw")) == fr.OK
    assert reads == ["stella"]


def test_store_unavailable_fails_closed(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from tests.conftest import free_tcp_port

    # a Redis store nobody listens for: every store call fails
    a, lines = adapter(tmp_path, store=f"redis://127.0.0.1:{free_tcp_port()}/0")
    assert a.authenticate(req("alice", "pw" + totp(SECRET, time.time()))) == fr.FAIL
    assert json.loads(lines[-1].removeprefix("eapkit: "))["reason"] == "store_unavailable"


def test_challenge_round(tmp_path: Path) -> None:
    a, _ = adapter(tmp_path, challenge="yes")
    now = time.time()
    a._clock = Clock(now)
    answer = a.authenticate(req("alice", "pw"))
    assert isinstance(answer, tuple) and answer[0] == fr.HANDLED
    reply = {pair[0]: pair[-1] for pair in answer[1]}
    assert answer[2] == (("Response-Packet-Type", ":=", "Access-Challenge"),)
    state = reply["State"]
    code = totp(SECRET, now)
    assert a.authenticate(req("alice", code, ("State", state))) == fr.OK
    assert a.authenticate(req("alice", code, ("State", state))) == fr.REJECT  # single use
    # inside a tunnel: no challenge, a reject
    assert a.authenticate(req("alice", "pw", ("FreeRADIUS-Proxied-To", "127.0.0.1"))) == fr.REJECT
    # expired
    answer = a.authenticate(req("alice", "pw"))
    assert isinstance(answer, tuple)
    a._clock = Clock(now + 121)
    late = totp(SECRET, now + 121)
    state = next(pair[-1] for pair in answer[1] if pair[0] == "State")
    assert a.authenticate(req("alice", late, ("State", state))) == fr.REJECT


_PROPERTY: dict[str, Adapter] = {}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["User-Name", "User-Password", "State", "FreeRADIUS-Proxied-To", "X"]),
            st.text(max_size=60),
        ),
        max_size=6,
    )
)
def test_arbitrary_requests_get_an_rcode(
    tmp_path_factory: pytest.TempPathFactory, request: list[tuple[str, str]]
) -> None:
    if "a" not in _PROPERTY:
        _PROPERTY["a"], _ = adapter(tmp_path_factory.mktemp("prop"), challenge="yes")
    a = _PROPERTY["a"]
    for result in (a.authorize(request), a.authenticate(request)):
        rcode = result[0] if isinstance(result, tuple) else result
        assert rcode in range(9)


def test_loads_under_debians_python_without_pyopenssl(tmp_path: Path) -> None:
    """What rlm_python3 does: Debian's interpreter, python_path appended to sys.path,
    a ``radiusd`` module with the config; here pyOpenSSL is made unimportable."""
    python = Path("/usr/bin/python3")
    probe = (
        subprocess.run([str(python), "-c", "import cryptography"], capture_output=True, check=False)
        if python.exists()
        else None
    )
    if probe is None or probe.returncode != 0:
        message = "Debian's /usr/bin/python3 with python3-cryptography is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    db = make_db(tmp_path)
    code = totp(SECRET, time.time())
    script = textwrap.dedent(
        f"""
        import sys, types
        class NoOpenSSL:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "OpenSSL":
                    raise ImportError("pyOpenSSL is not for rlm_python3")
        sys.meta_path.insert(0, NoOpenSSL())
        radiusd = types.ModuleType("radiusd")
        radiusd.config = {{"db": {str(db)!r}}}
        radiusd.radlog = lambda level, text: print(level, text)
        sys.modules["radiusd"] = radiusd
        sys.path.append({str(REPO)!r})
        import eapkit.integrations.freeradius as m
        assert m.instantiate(None) == 0
        request = (("User-Name", "alice"), ("User-Password", "pw" + {code!r}))
        print("authorize", m.authorize(request))
        print("authenticate", m.authenticate(request))
        print("again", m.authenticate(request))
        print("detach", m.detach(None))
        import cryptography
        print("cryptography", cryptography.__version__)
        """
    )
    out = subprocess.run(
        [str(python), "-I", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout
    assert f"authenticate {fr.OK}" in lines and f"again {fr.REJECT}" in lines, lines
    assert sys.executable != str(python)  # the test itself runs elsewhere (the venv)
