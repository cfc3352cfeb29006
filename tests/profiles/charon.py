"""A private charon for the profile tests: in a network namespace of its own
(``unshare --net``, gone with the process), with its VICI socket in a temporary
directory; stopped by pid.

charon writes ``/var/run/charon.pid`` (compiled in) and refuses to start while it names a
live charon, so, as tests/e2e/lab.py does, each charon also gets a private mount
namespace (``unshare --mount``, private propagation) with a temp dir bind-mounted on
``/run``: the lab's charons and these never see each other's pid file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PLUGINS = (
    "random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pkcs12 pem openssl "
    "eap-identity eap-mschapv2 eap-tls eap-gtc vici socket-default kernel-netlink attr "
    "aes gcm sha1 sha2 hmac kdf md5"
)


@contextmanager
def private_charon(
    tools: dict[str, str], directory: Path, *, port: int = 0, extra_plugins: str = ""
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """(process, VICI socket path).  ``port`` 0: the kernel picks the IKE ports."""
    directory.mkdir(parents=True, exist_ok=True)
    vici = directory / "charon.vici"
    log = directory / "charon.log"
    conf = directory / "strongswan.conf"
    routes = "yes" if extra_plugins else "no"  # kernel-libipsec routes into its TUN device
    ports = f"  port = {port}\n  port_nat_t = {port and 4500}\n"
    conf.write_text(
        "charon {\n"
        f"{ports}"
        f"  load = {extra_plugins} {PLUGINS}\n"  # kernel-libipsec before kernel-netlink
        f"  install_routes = {routes}\n  install_virtual_ip = {routes}\n  retransmit_tries = 2\n"
        f"  plugins {{\n    vici {{\n      socket = unix://{vici}\n    }}\n  }}\n"
        f"  filelog {{\n    log {{\n      path = {log}\n      flush_line = yes\n      default = 1\n"
        "      ike = 2\n      cfg = 2\n    }\n  }\n"
        "}\n"
    )
    env = dict(os.environ, STRONGSWAN_CONF=str(conf))
    run_dir = directory / "run"
    run_dir.mkdir(exist_ok=True)
    script = f'mount --bind "{run_dir}" /run && exec "{tools["charon"]}"'
    process = subprocess.Popen(  # unshare and sh exec: the pid is charon's
        [tools["unshare"], "--net", "--mount", "--propagation", "private", "sh", "-c", script],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if vici.exists():
                break
            if process.poll() is not None:
                text = log.read_text()[-2000:] if log.exists() else ""
                pytest.fail(f"charon exited: {text}")
            time.sleep(0.05)
        else:
            pytest.fail("charon's VICI socket never appeared")
        yield process, vici
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def swanctl(
    tool: str, vici: Path, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args, "--uri", f"unix://{vici}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
