"""FreeRADIUS 3.2 loading :mod:`eapkit.integrations.freeradius` through rlm_python3.

FreeRADIUS runs on a private copy of its config (the :class:`FreeRadius` harness), its
embedded Python is Debian's ``/usr/bin/python3`` with Debian's ``python3-cryptography``,
and ``python_path`` points at this checkout.  The users, their TOTP secrets and YubiKey
AES keys are enrolled by this (virtualenv) process in one SQLite file with sealing keys
beside it, exactly as ``eapkit serve --db`` keeps them; FreeRADIUS reads the same file.

- ``eapol_test`` TTLS/PAP with password+TOTP: accepted; the same code again: refused
  (replayed); a wrong code: refused.
- ``radclient`` plain PAP: password+TOTP, password+YubiKey OTP, replays, and the RFC 2865
  challenge round (password alone -> Access-Challenge with State -> the code).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import eapkit
from eapkit import pki
from eapkit.directory import LocalDirectory
from eapkit.rand import DeterministicRandom
from eapkit.second_factor import SecondFactors
from eapkit.store import open_store
from eapkit.store.sealing import Sealer
from eapkit.verify.otp import OtpCredential, totp, totp_step
from eapkit.verify.yubico import YubikeyCredential, YubikeyToken, encode_otp
from tests.conftest import require_tool
from tests.interop.tools import FreeRadius, eapol_test

pytestmark = pytest.mark.interop

REPO = Path(eapkit.__file__).resolve().parent.parent
SECRET = "fr-eapkit-secret"
PASSWORD = "wonderland"
TOTP_USERS = ("alice", "carol", "dave", "erin", "frank")  # one current code each
TOTP_SECRET = {u: bytes(range(i, i + 20)) for i, u in enumerate(TOTP_USERS)}
AES = bytes.fromhex("00112233445566778899aabbccddeeff")
UID = bytes.fromhex("0a0b0c0d0e0f")
PUBLIC = "vvcccccdefgh"
SERVER_NAME = "radius.eapkit.test"


def yubikey_otp(usage: int, session: int) -> str:
    return encode_otp(YubikeyToken(UID, usage, 0x010203, session, 0x4242), AES, PUBLIC)


DOC = REPO / "docs" / "freeradius.md"


def module_conf(db: Path) -> str:
    """docs/freeradius.md's module instance, with this checkout and database."""
    found = re.search(r"```\n(python3 eapkit \{\n.*?\n\})\n```", DOC.read_text(), re.S)
    assert found is not None, "docs/freeradius.md lost its module instance"
    text = found.group(1).replace('"/opt/eapkit"', f'"{REPO}"')
    assert "challenge = yes" in text  # the challenge test relies on it
    return text.replace('"/srv/eapkit/eapkit.db"', f'"{db}"') + "\n"


AUTH_TYPE = ("Auth-Type eapkit {", "    eapkit", "}")


@dataclass
class Deployment:
    work: Path
    db: Path
    second: SecondFactors
    server: FreeRadius
    ca: Path

    def log_events(self) -> list[dict[str, object]]:
        return [
            json.loads(m) for m in re.findall(r"eapkit: (\{.*\})\s*$", self.server.output(), re.M)
        ]


def _pki(work: Path) -> tuple[Path, Path, Path]:
    files = pki.write_pki(
        work,
        now=dt.datetime.now(dt.UTC),
        ca_name="eapkit freeradius test CA",
        server_names=[SERVER_NAME],
    )
    return files.ca, files.server_cert, files.server_key


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_tool("freeradius", "eapol_test", "radclient")
    if not Path("/usr/lib/freeradius/rlm_python3.so").exists():
        require_tool("rlm_python3.so (Debian freeradius-python3)")
    work = tmp_path_factory.mktemp("freeradius-eapkit")
    db = work / "eapkit.db"
    # What `eapkit serve --db eapkit.db` keeps: users, and beside them the store's
    # sealing keys (a file the server would have made on first use).
    (work / "eapkit-store.key").write_text("k1:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    (work / "eapkit-store.key").chmod(0o600)
    users = LocalDirectory(db)
    for name in TOTP_USERS:
        users.add(name, PASSWORD, second_factor="totp", nt_hash=False, iterations=10_000)
    users.add("bob", PASSWORD, second_factor="yubikey", nt_hash=False, iterations=10_000)
    users.add("plain", PASSWORD, nt_hash=False, iterations=10_000)
    sealer = Sealer.from_config((work / "eapkit-store.key").read_text().strip())
    second = SecondFactors(users, open_store(f"sqlite:{db}"), sealer, random=DeterministicRandom(5))
    now = time.time()
    for name in TOTP_USERS:
        second.totp.enroll(name, OtpCredential(TOTP_SECRET[name]), now)
    second.yubikey.enroll("bob", YubikeyCredential(PUBLIC, UID, AES), now)

    ca, cert, key = _pki(work)
    server = FreeRadius(
        work / "fr",
        "",
        secret=SECRET,
        ca_cert=ca,
        server_cert=cert,
        private_key=key,
        eap_types=("ttls",),
        default_eap_type="ttls",
        inner_eap_type="gtc",
        modules={"eapkit": module_conf(db)},
        authorize=("eapkit",),
        authenticate=AUTH_TYPE,
        inner_authorize=("eapkit",),
        inner_authenticate=AUTH_TYPE,
    )
    with server:
        yield Deployment(work, db, second, server, ca)
    second.store.close()
    users.close()


def fresh_code(user: str) -> str:
    """The code of the current step, not too close to a step boundary (the verifier
    accepts one step either side, so a boundary would still pass; the margin keeps the
    replay assertions about *this* step)."""
    if time.time() % 30 > 27:
        time.sleep(30 - time.time() % 30 + 0.2)
    return totp(TOTP_SECRET[user], time.time())


def wrong_code(user: str) -> str:
    """A code matching no step of the verifier's window (nor the two beyond it)."""
    step = totp_step(time.time())
    near = {totp(TOTP_SECRET[user], (step + d) * 30) for d in range(-3, 4)}
    return next(c for c in (f"{i:06d}" for i in range(1_000_000)) if c not in near)


def ttls_pap(d: Deployment, user: str, response: str, tag: str) -> bool:
    result = eapol_test(
        "key_mgmt=WPA-EAP\n"
        "eap=TTLS\n"
        f'identity="{user}"\n'
        'anonymous_identity="anonymous"\n'
        f'password="{response}"\n'
        f'ca_cert="{d.ca}"\n'
        'phase2="auth=PAP"\n',
        d.server.port,
        d.work / f"eapol-{tag}",
        secret=SECRET,
    )
    if result.success:
        assert result.mppe_ok, result.output[-3000:]
    return result.success


def radclient(d: Deployment, attrs: str) -> str:
    exe = require_tool("radclient")["radclient"]
    out = subprocess.run(
        [exe, "-x", "-r", "1", "-t", "5", f"127.0.0.1:{d.server.port}", "auth", SECRET],
        input=attrs,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return out.stdout + out.stderr


def pap(d: Deployment, user: str, password: str, state: str | None = None) -> str:
    attrs = f'User-Name = "{user}"\nUser-Password = "{password}"\n'
    if state is not None:
        attrs += f"State = {state}\n"
    return radclient(d, attrs)


def last_decision(d: Deployment, user: str) -> dict[str, object]:
    events = [e for e in d.log_events() if e.get("event") == "decision" and e["user"] == user]
    assert events, d.server.output()[-4000:]
    return events[-1]


# -- eapol_test: TTLS with PAP inside ------------------------------------------------------


def test_ttls_pap_password_and_totp_then_replay_then_wrong_code(d: Deployment) -> None:
    code = fresh_code("alice")
    assert ttls_pap(d, "alice", PASSWORD + code, "ok"), d.server.output()[-6000:]
    assert last_decision(d, "alice")["reason"] == "ok"

    assert not ttls_pap(d, "alice", PASSWORD + code, "replay")
    assert last_decision(d, "alice")["reason"] == "replayed"

    assert not ttls_pap(d, "alice", PASSWORD + wrong_code("alice"), "wrong")
    assert last_decision(d, "alice")["reason"] == "bad_code"


def test_ttls_pap_wrong_password_with_a_good_code(d: Deployment) -> None:
    assert not ttls_pap(d, "carol", "guess" + fresh_code("carol"), "badpw")
    assert last_decision(d, "carol")["reason"] == "bad_password"


def test_ttls_pap_password_alone_is_refused_inside_the_tunnel(d: Deployment) -> None:
    # Inside TTLS there is no Access-Challenge to ask with (the module has challenge =
    # yes, for plain RADIUS): the code must come with the password.
    assert not ttls_pap(d, "dave", PASSWORD, "alone")
    assert last_decision(d, "dave")["reason"] == "malformed"


# -- radclient: plain PAP ------------------------------------------------------------------


def test_radclient_pap_password_and_totp(d: Deployment) -> None:
    code = fresh_code("erin")
    out = pap(d, "erin", PASSWORD + code)
    assert "Received Access-Accept" in out, out + d.server.output()[-4000:]
    out = pap(d, "erin", PASSWORD + code)
    assert "Received Access-Reject" in out, out
    assert last_decision(d, "erin")["reason"] == "replayed"


def test_radclient_pap_password_and_yubikey_otp(d: Deployment) -> None:
    first = yubikey_otp(1, 0)
    assert "Received Access-Accept" in pap(d, "bob", PASSWORD + first)
    assert "Received Access-Reject" in pap(d, "bob", PASSWORD + first)
    assert last_decision(d, "bob")["reason"] == "replayed"
    assert "Received Access-Accept" in pap(d, "bob", PASSWORD + yubikey_otp(1, 1))
    assert "Received Access-Reject" in pap(d, "bob", "nope" + yubikey_otp(1, 2))


def test_radclient_user_without_second_factor(d: Deployment) -> None:
    assert "Received Access-Accept" in pap(d, "plain", PASSWORD)
    assert "Received Access-Reject" in pap(d, "plain", PASSWORD + "123456")
    assert "Received Access-Reject" in pap(d, "nobody", PASSWORD + "123456")
    assert last_decision(d, "nobody")["reason"] == "unknown_user"


def test_radclient_challenge_round(d: Deployment) -> None:
    out = pap(d, "frank", PASSWORD)
    assert "Received Access-Challenge" in out, out + d.server.output()[-4000:]
    state = re.search(r"State = (0x[0-9a-f]+)", out)
    assert state is not None, out
    assert "One-time code" in out  # the prompt, as Reply-Message
    code = fresh_code("frank")
    assert "Received Access-Accept" in pap(d, "frank", code, state.group(1))
    # the State is single-use, and bound to the user it was issued to
    assert "Received Access-Reject" in pap(d, "frank", code, state.group(1))
    out = pap(d, "frank", PASSWORD)
    other = re.search(r"State = (0x[0-9a-f]+)", out)
    assert other is not None
    assert "Received Access-Reject" in pap(d, "carol", fresh_code("carol"), other.group(1))


@pytest.fixture
def d(deployment: Deployment) -> Deployment:
    return deployment
