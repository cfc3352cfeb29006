"""``eapkit profile``: the input is checked before anything is written, and each failure
is one clear line with nothing left behind."""

from __future__ import annotations

import datetime as dt
import json
import os
import plistlib
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from eapkit import cli
from eapkit.pki import Issued, make_client
from eapkit.profiles import windows
from tests.profiles.helpers import NOW, P12_PASSWORD, eap_host_config_errors, pki, script_eap_xml


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user database with alice, the lab's CA and certificates, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EAPKIT_PASSWORD", "wonderland-1")
    monkeypatch.setenv("EAPKIT_P12_PASSWORD", P12_PASSWORD)
    assert cli.main(["user", "add", "alice", "--db", "users.db"]) == 0
    (tmp_path / "serve.toml").write_text(
        'db = "users.db"\n[tls]\nrealms = ["example.org"]\nserver_name = "radius.example.org"\n'
    )
    ca, gateway, alice, laptop = pki()
    _write(tmp_path / "ca.pem", ca.cert_pem)
    for name, issued in (("gateway", gateway), ("alice", alice), ("laptop", laptop)):
        _write(tmp_path / f"{name}.pem", issued.cert_pem)
        _write(tmp_path / f"{name}.key", issued.key_pem)
    return tmp_path


def _run(*args: str) -> int:
    base = ["profile", *args[:2], "--config", "serve.toml", "--ca", "ca.pem"]
    return cli.main([*base, "--gateway", "vpn.example.org", *args[2:]])


def _listing(directory: Path) -> set[str]:
    """The files in ``directory``, but SQLite's own -wal/-shm beside the user database
    (reading users opens it; the fixture's connection keeps them)."""
    return {p.name for p in directory.iterdir() if not p.name.startswith("users.db-")}


@pytest.mark.parametrize("kind", ["apple", "windows", "android", "linux"])
def test_each_kind_writes_its_default_file(site: Path, kind: str, capsys: Any) -> None:
    before = _listing(site)
    assert _run(kind, "alice") == 0
    (made,) = _listing(site) - before
    assert (
        made
        == {
            "apple": "alice.mobileconfig",
            "windows": "alice-vpn.ps1",
            "android": "alice.sswan",
            "linux": "alice-swanctl",
        }[kind]
    )
    assert f"wrote {made}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("apple", "bob"), "no user bob: add it first"),
        (("apple", "alice", "--method", "eap-tls"), "alice has no device certificate for eap-tls"),
        (("android", "alice", "--method", "cert-eap", "--cert", "laptop.pem"),
         "give --cert and --key"),
        (("apple", "alice", "--method", "eap-tls", "--cert", "laptop.pem", "--key", "laptop.key"),
         "names laptop.example.org, not alice"),
        (("apple", "alice", "--method", "eap-tls", "--cert", "alice.pem", "--key", "laptop.key"),
         "laptop.key is not the key of alice.pem"),
        (("apple", "alice", "--method", "eap-tls", "--cert", "ca.pem", "--key", "alice.key"),
         "is not the key of"),
        (("windows", "alice", "--method", "cert-eap", "--cert", "laptop.pem", "--key",
          "laptop.key"), "windows profiles take"),
        (("windows", "alice", "--method", "teap"), "teap needs teap in its methods"),
        (("apple", "alice", "--ca", "alice.pem"), "not a CA certificate"),
        (("apple", "alice", "--ca", "alice.key"), "no X.509 certificate"),
        (("apple", "alice", "--sign-cert", "gateway.pem"), "both --sign-cert and --sign-key"),
        (("android", "alice", "--sign-cert", "gateway.pem", "--sign-key", "gateway.key"),
         "signs Apple profiles only"),
        (("apple", "alice", "--gateway", "vpn\\n.example.org\x07"), "printable"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    site: Path, args: tuple[str, ...], message: str, capsys: Any
) -> None:
    before = _listing(site)
    assert _run(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("eapkit: ") and err.count("\n") == 1, err
    assert message in err
    assert _listing(site) == before


def test_a_method_the_server_does_not_offer_is_refused(site: Path, capsys: Any) -> None:
    (site / "tls-only.toml").write_text('db = "users.db"\nmethods = ["tls"]\n')
    args = ["profile", "apple", "alice", "--config", "tls-only.toml", "--ca", "ca.pem"]
    assert cli.main([*args, "--gateway", "g"]) == 2
    assert "offers tls: eap-mschapv2 needs mschapv2" in capsys.readouterr().err
    assert cli.main([*args, "--gateway", "g", "--method", "cert-eap"]) == 2
    assert "cert-eap needs gtc or mschapv2" in capsys.readouterr().err
    assert not (site / "alice.mobileconfig").exists()


def test_a_windows_teap_profile_for_a_server_that_offers_teap(site: Path, capsys: Any) -> None:
    """TEAP is in the method catalog (RFC 9930), so what decides is serve's own
    ``methods``: with teap there, the script's EapHostConfig is TEAP (type 55) and valid
    against Microsoft's EAPHost schemas, with inner EAP-MSCHAPv2."""
    (site / "teap.toml").write_text(
        'db = "users.db"\nmethods = ["teap", "mschapv2"]\n'
        '[tls]\nserver_name = "radius.example.org"\n'
    )
    args = ["profile", "windows", "alice", "--config", "teap.toml", "--ca", "ca.pem"]
    assert cli.main([*args, "--gateway", "vpn.example.org", "--method", "teap"]) == 0
    assert "wrote alice-vpn.ps1" in capsys.readouterr().out
    root = script_eap_xml((site / "alice-vpn.ps1").read_bytes().decode())
    assert eap_host_config_errors(root) == []
    types = [el.text for el in root.iter(f"{{{windows.COMMON}}}Type")]
    assert types == ["55", "26"]  # TEAP, and its inner EAP-MSCHAPv2
    names = root.find(f".//{{{windows.TEAP}}}ServerNames")
    assert names is not None and names.text == "radius.example.org"


def test_an_expired_device_certificate_is_refused(site: Path, capsys: Any) -> None:
    ca = pki()[0]
    old: Issued = make_client(ca, "alice", now=NOW - dt.timedelta(days=400), days=30)
    _write(site / "old.pem", old.cert_pem)
    _write(site / "old.key", old.key_pem)
    assert (
        _run("apple", "alice", "--method", "eap-tls", "--cert", "old.pem", "--key", "old.key") == 2
    )
    assert "is not valid now" in capsys.readouterr().err
    assert not (site / "alice.mobileconfig").exists()


def test_a_key_ikev2_clients_cannot_use_is_refused(site: Path, capsys: Any) -> None:
    """ECDSA on secp256k1: no IKEv2 client signs with it (RFC 4754 has P-256/384/521)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = pki()[0]
    key = ec.generate_private_key(ec.SECP256K1())
    ca_key: Any = ca.key
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    _write(site / "k1.pem", cert.public_bytes(serialization.Encoding.PEM))
    _write(
        site / "k1.key",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    assert _run("linux", "alice", "--method", "eap-tls", "--cert", "k1.pem", "--key", "k1.key") == 2
    assert "secp256k1; IKEv2 clients take P-256, P-384 or P-521" in capsys.readouterr().err
    assert not (site / "alice-swanctl").exists()


def test_a_short_pkcs12_password_is_refused(site: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("EAPKIT_P12_PASSWORD", "short")
    assert (
        _run("android", "alice", "--method", "eap-tls", "--cert", "alice.pem", "--key", "alice.key")
        == 2
    )
    assert "at least 8 characters" in capsys.readouterr().err
    assert not (site / "alice.sswan").exists()


def test_an_existing_file_is_never_overwritten(site: Path, capsys: Any) -> None:
    (site / "mine.sswan").write_text("keep me")
    assert _run("android", "alice", "--out", "mine.sswan") == 2
    assert "exists" in capsys.readouterr().err
    assert (site / "mine.sswan").read_text() == "keep me"


@pytest.mark.parametrize(("kind", "out"), [("apple", "p.mobileconfig"), ("linux", "tree")])
def test_a_symlink_at_out_is_refused_and_not_followed(
    site: Path, kind: str, out: str, capsys: Any
) -> None:
    """A dangling symlink at --out (``Path.exists`` says False for it) is refused; the
    place it points to is not written."""
    (site / out).symlink_to(site / "elsewhere")
    args = ("--method", "eap-tls", "--cert", "alice.pem", "--key", "alice.key", "--out", out)
    assert _run(kind, "alice", *args) == 2
    assert "exists" in capsys.readouterr().err
    assert (site / out).is_symlink() and not (site / "elsewhere").exists()


def test_a_file_that_appears_before_the_move_is_kept(site: Path, monkeypatch: Any) -> None:
    """Someone writes --out between the check and the move: theirs stays, ours is refused."""
    real_fdopen = os.fdopen

    def appear(fd: int, *args: Any, **kw: Any) -> Any:
        (site / "p.mobileconfig").write_text("theirs")
        return real_fdopen(fd, *args, **kw)

    monkeypatch.setattr(os, "fdopen", appear)
    assert _run("apple", "alice", "--out", "p.mobileconfig") == 2
    assert (site / "p.mobileconfig").read_text() == "theirs"
    assert not [p for p in site.iterdir() if p.name.startswith(".p.mobileconfig")]


def test_profiles_with_a_key_are_private(site: Path) -> None:
    args = ("--method", "eap-tls", "--cert", "alice.pem", "--key", "alice.key")
    assert _run("apple", "alice", *args) == 0
    assert stat.S_IMODE((site / "alice.mobileconfig").stat().st_mode) == 0o600
    assert _run("linux", "alice", *args) == 0
    tree = site / "alice-swanctl"
    for path in [tree, *tree.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    loaded = pkcs12.load_pkcs12((tree / "pkcs12/alice.p12").read_bytes(), P12_PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == pki()[2].certificate
    assert _run("android", "alice") == 0  # no key in it: readable
    assert stat.S_IMODE((site / "alice.sswan").stat().st_mode) == 0o644


def test_a_failed_write_leaves_neither_file_nor_temporary(site: Path, monkeypatch: Any) -> None:
    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    before = _listing(site)
    monkeypatch.setattr(os, "link", refuse)
    assert _run("apple", "alice") == 2
    monkeypatch.setattr(os, "rename", refuse)
    assert _run("linux", "alice") == 2
    assert _listing(site) == before


def test_the_decision_log_says_who_got_a_profile(site: Path) -> None:
    (site / "serve.toml").write_text(
        (site / "serve.toml")
        .read_text()
        .replace('db = "users.db"', 'db = "users.db"\nlog = "d.log"')
    )
    args = ("--method", "eap-tls", "--cert", "alice.pem", "--key", "alice.key")
    assert _run("android", "alice", *args) == 0
    (line,) = [json.loads(x) for x in (site / "d.log").read_text().splitlines()]
    assert line["action"] == "profile_written" and line["event"] == "admin"
    assert (line["user"], line["kind"], line["method"]) == ("alice", "android", "eap-tls")
    assert line["device_certificate"] is True
    assert P12_PASSWORD not in (site / "d.log").read_text()


def test_an_encrypted_signing_key_is_a_clear_refusal(site: Path, capsys: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    key: Any = pki()[1].key
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"locked-key"),
    )
    _write(site / "locked.key", locked)
    assert _run("apple", "alice", "--sign-cert", "gateway.pem", "--sign-key", "locked.key") == 2
    assert "cannot read the signing certificate or key" in capsys.readouterr().err
    assert not (site / "alice.mobileconfig").exists()


def test_signed_apple_profile_is_cms_around_the_plist(site: Path) -> None:
    args = ("--sign-cert", "gateway.pem", "--sign-key", "gateway.key", "--out", "s.mobileconfig")
    assert _run("apple", "alice", *args) == 0
    signed = (site / "s.mobileconfig").read_bytes()
    assert signed[0] == 0x30  # DER
    start = signed.index(b"<?xml")
    end = signed.index(b"</plist>") + len(b"</plist>\n")
    profile = plistlib.loads(signed[start:end])
    assert profile["PayloadContent"][0]["IKEv2"]["AuthName"] == "alice"


def test_eap_server_name_defaults_to_the_servers_tls_server_name(site: Path) -> None:
    assert _run("windows", "alice", "--method", "peap") == 0
    assert "ServerNames>radius.example.org<" in (site / "alice-vpn.ps1").read_text()
    assert _run("windows", "alice", "--method", "peap", "--eap-server-name", "aaa.example.org",
                "--out", "other.ps1") == 0  # fmt: skip
    assert "ServerNames>aaa.example.org<" in (site / "other.ps1").read_text()


def test_eap_tls_certificate_must_map_to_the_user_as_eapkit_serve_maps_it(
    site: Path, capsys: Any
) -> None:
    """Without ``[tls] realms``, eapkit serve takes alice@example.org whole as the user:
    a profile for alice with that certificate would never log in, so none is made."""
    args = ["profile", "apple", "alice", "--db", "users.db", "--ca", "ca.pem"]
    args += ["--gateway", "g", "--method", "eap-tls", "--cert", "alice.pem", "--key", "alice.key"]
    assert cli.main(args) == 2
    assert "names alice@example.org, not alice" in capsys.readouterr().err
    assert not (site / "alice.mobileconfig").exists()
