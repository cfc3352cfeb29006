"""The approval bridge in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) with a virtual authenticator (WebDriver's WebAuthn extension, the
DevTools ``WebAuthn`` domain underneath) enrolls a key from the link that ``eapkit enroll
webauthn`` prints, then approves a pending ``eapkit probe`` login, which succeeds; a
denied login and one nobody approves end in Access-Reject.  Everything is a real process
on loopback: ``eapkit serve``, ``eapkit probe``, chromedriver and Chromium.

A screenshot of the approval page goes to the test's tmp dir and to ``artifacts/`` at the
repository root (gitignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_tcp_port, free_udp_port, require_tool

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=900,900",
)


def eapkit(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eapkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kw,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Server:
    """``eapkit serve`` with a [bridge] table, as a process."""

    def __init__(self, directory: Path, timeout: float, extra_toml: str = "") -> None:
        self.dir = directory
        self.udp = free_udp_port()
        self.tcp = free_tcp_port()
        self.url = f"http://localhost:{self.tcp}"
        self.config = directory / f"serve-{self.tcp}.toml"
        self.log = directory / f"decisions-{self.tcp}.log"
        self.config.write_text(
            f'listen = ["127.0.0.1:{self.udp}"]\n'
            'db = "eapkit.db"\n'
            'methods = ["gtc"]\n'
            f'log = "{self.log.name}"\n'
            "[bridge]\n"
            f'listen = "127.0.0.1:{self.tcp}"\n'
            f'url = "{self.url}"\n'
            f"timeout = {timeout}\n" + extra_toml
        )
        self.stderr = (directory / f"serve-{self.tcp}.err").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eapkit", "serve", "--config", str(self.config)],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"eapkit serve exited: {(self.dir / self.stderr.name).read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.tcp}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail("eapkit serve's approval page did not come up")

    def probe(self) -> subprocess.Popen[str]:
        """``eapkit probe`` as the NAS: EAP-GTC, 5 s per try, 4 tries (20 s of patience)."""
        return subprocess.Popen(
            [
                sys.executable, "-m", "eapkit", "probe",
                "--server", f"127.0.0.1:{self.udp}", "--secret", "testing123",
                "--method", "gtc", "--identity", "alice", "--password", PASSWORD,
                "--timeout", "5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip

    def decisions(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        stop(self.proc)
        self.stderr.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    tools = require_tool("chromium", "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.virtual_authenticator import (
            Protocol,
            Transport,
            VirtualAuthenticatorOptions,
        )
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("selenium is missing under CI (pip install -e '.[browser]')")
        pytest.skip("selenium is not installed (pip install -e '.[browser]')")
    options = webdriver.ChromeOptions()
    options.binary_location = tools["chromium"]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(
        executable_path=tools["chromedriver"], log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        # a passkey-capable security key: resident keys, user verification (PIN) done
        driver.add_virtual_authenticator(
            VirtualAuthenticatorOptions(
                protocol=Protocol.CTAP2,
                transport=Transport.USB,
                has_resident_key=True,
                has_user_verification=True,
                is_user_consenting=True,
                is_user_verified=True,
            )
        )
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, what: str, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception:
        status = driver.find_element("id", "status").text
        pytest.fail(f"timed out waiting for {what}; page status: {status!r}")


def status_is(text: str) -> Any:
    return lambda d: text in d.find_element("id", "status").text


def enroll_from_link(browser: Any, link: str, user: str) -> None:
    """Open a one-time enrollment link and register the virtual authenticator's key."""
    from selenium.webdriver.common.by import By

    browser.get(link)
    wait_for(browser, lambda d: d.find_element(By.ID, "enroll").is_enabled(), "the link to load")
    assert browser.find_element(By.ID, "enroll-user").text == user
    assert "#" not in browser.current_url  # the token left the address bar
    browser.find_element(By.ID, "enroll").click()
    wait_for(browser, status_is(f"Security key registered for {user}"), "registration")


def approve_next_login(browser: Any, server: Server, screenshot: Path | None = None) -> str:
    """Start ``eapkit probe``, sign in on the page with the passkey (no user name) and
    approve the login it waits for; ``eapkit probe``'s output once it has ended."""
    from selenium.webdriver.common.by import By

    def pending() -> int:
        return sum(r.get("reason") == "approval_pending" for r in server.decisions())

    before = pending()
    login = server.probe()
    try:
        browser.get(server.url + "/")
        wait_for(browser, lambda d: d.find_element(By.ID, "signin").is_displayed(), "page")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and pending() == before:
            time.sleep(0.2)
        browser.find_element(By.ID, "signin").click()
        card = wait_for(
            browser, lambda d: d.find_element(By.CSS_SELECTOR, ".approval"), "pending login"
        )
        text = card.text
        assert "alice is logging in" in text and "localhost" in text, text
        if screenshot is not None:
            browser.save_screenshot(str(screenshot))
        card.find_element(By.CSS_SELECTOR, "button.approve").click()
        wait_for(browser, status_is("Login approved"), "approval")
        out, _ = login.communicate(timeout=30)
    finally:
        stop(login)
    assert login.returncode == 0, out
    return out


def test_enroll_then_approve_deny_and_expire(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    tmp_path.joinpath("eapkit.db").touch()
    server = Server(tmp_path, timeout=20)
    quick = None
    try:
        added = eapkit("user", "add", "alice", "--password", PASSWORD, "--db", "eapkit.db",
                       cwd=tmp_path)  # fmt: skip
        assert added.returncode == 0, added.stderr
        enrolled = eapkit(
            "enroll", "webauthn", "alice", "--config", str(server.config), cwd=tmp_path
        )
        assert enrolled.returncode == 0, enrolled.stderr
        link = enrolled.stdout.strip()
        assert link.startswith(f"{server.url}/enroll#"), link

        # 1. the one-time link registers the virtual authenticator's key
        enroll_from_link(browser, link, "alice")
        credentials = browser.get_credentials()
        assert len(credentials) == 1 and credentials[0].rp_id == "localhost"

        # 2. a login waits; the user signs in with the passkey (no user name) and approves
        shot = tmp_path / "approval-page.png"
        out = approve_next_login(browser, server, screenshot=shot)
        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        shutil.copy(shot, artifacts / "webauthn-approval-page.png")
        assert "RADIUS reply: Access-Accept" in out and "EAP: SUCCESS" in out, out

        # 3. the next login is denied (still signed in: the page lists it by itself)
        login = server.probe()
        try:
            card = wait_for(
                browser, lambda d: d.find_element(By.CSS_SELECTOR, ".approval"), "second login"
            )
            card.find_element(By.CSS_SELECTOR, "button.deny").click()
            wait_for(browser, status_is("Login denied"), "denial")
            out, _ = login.communicate(timeout=30)
        finally:
            stop(login)
        assert login.returncode == 1, out
        assert "RADIUS reply: Access-Reject" in out, out

        # 4. nobody answers: a server on the same database with a 2 s approval timeout
        quick = Server(tmp_path, timeout=2)
        login = quick.probe()
        try:
            out, _ = login.communicate(timeout=30)
        finally:
            stop(login)
        assert login.returncode == 1 and "RADIUS reply: Access-Reject" in out, out
    finally:
        server.close()
        if quick is not None:
            quick.close()

    reasons = [r["reason"] for r in server.decisions() if "event" not in r]
    assert reasons == [
        "approval_pending",
        "approved",
        "approval_pending",
        "approval_denied",
    ], reasons
    assert quick is not None
    assert [r["reason"] for r in quick.decisions() if "event" not in r] == [
        "approval_pending",
        "approval_expired",
    ]


def test_a_resets_re_enrollment_link_enrolls_a_new_security_key(
    browser: Any, tmp_path: Path
) -> None:
    """alice loses her security key: ada asks for a reset, grace approves it, and the
    one-time link ``eapkit approve`` prints registers a new key in the browser, which
    then approves her next login (issue 20's two-person reset, end to end)."""
    tmp_path.joinpath("eapkit.db").touch()
    admins = '[admin]\nadministrators = ["ada", "grace"]\n'
    server = Server(tmp_path, timeout=20, extra_toml=admins)
    config = ("--config", str(server.config))
    try:
        added = eapkit("user", "add", "alice", "--password", PASSWORD, *config, cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        first = eapkit("enroll", "webauthn", "alice", *config, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        enroll_from_link(browser, first.stdout.strip(), "alice")
        (lost,) = browser.get_credentials()
        browser.remove_all_credentials()  # the key is gone with the lost keyring

        asked = eapkit("reset", "alice", "--reason", "lost key", "--by", "ada", *config,
                       cwd=tmp_path)  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        approved = eapkit("approve", asked.stdout.strip(), "--by", "grace", *config,
                          cwd=tmp_path)  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        link = approved.stdout.strip()
        assert link.startswith(f"{server.url}/enroll#"), link

        # opened in the tab still on the first link's page: only the fragment changes,
        # and the page must take the new link all the same
        assert browser.current_url == f"{server.url}/enroll"
        enroll_from_link(browser, link, "alice")
        (new,) = browser.get_credentials()
        assert new.id != lost.id and new.rp_id == "localhost"
        out = approve_next_login(browser, server)
        assert "RADIUS reply: Access-Accept" in out and "EAP: SUCCESS" in out, out
    finally:
        server.close()

    events = [(r["event"], r.get("user")) for r in server.decisions() if "event" in r]
    after = events[events.index(("reset_approved", "alice")) :]
    assert ("webauthn_enrolled", "alice") in after, events
    reasons = [r["reason"] for r in server.decisions() if "event" not in r]
    assert reasons == ["approval_pending", "approved"], reasons
