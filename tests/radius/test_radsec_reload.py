"""``[[radsec.clients]]`` reloaded while ``eapkit serve`` runs (issue 17): on SIGHUP and
when the TOML file changes, new connections use the new list, a removed client's new
connections are refused and its open ones closed, with a log line."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.pki import Issued, make_ca, make_client, make_server
from eapkit.radius.packet import Code
from eapkit.radsec_config import ClientsFile
from tests.interop.tools import EapkitServe
from tests.radius.test_radsec import NOW, TlsNas
from tests.radius.test_radsec_config import _free_tcp_port

ENTRY = """
[[radsec.clients]]
name = "{name}"
ca = "nas-ca.pem"
san = "{name}.vpn.test"
"""


class Lab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.server_ca, self.nas_ca = make_ca("radsec CA", now=NOW), make_ca("NAS CA", now=NOW)
        leaf = make_server(self.server_ca, ["radius.test"], now=NOW)
        work.mkdir()
        (work / "server.pem").write_bytes(leaf.chain_pem)
        (work / "server.key").write_bytes(leaf.key_pem)
        (work / "server.key").chmod(0o600)
        (work / "server-ca.pem").write_bytes(self.server_ca.cert_pem)
        (work / "nas-ca.pem").write_bytes(self.nas_ca.cert_pem)
        self.port = _free_tcp_port()
        self.config = work / "eapkit.toml"

    def write(self, *names: str) -> None:
        text = f"""
[radsec]
listen = ["127.0.0.1:{self.port}"]
cert = "server.pem"
key = "server.key"
idle_timeout = 30
""" + "".join(ENTRY.format(name=n) for n in names)
        # a new inode, as editors and config managers write: rename into place
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)

    def context(self, name: str) -> ssl.SSLContext:
        nas: Issued = make_client(self.nas_ca, name, dns_names=[f"{name}.vpn.test"], now=NOW)
        cert, key = self.work / f"{name}.pem", self.work / f"{name}.key"
        cert.write_bytes(nas.chain_pem)
        key.write_bytes(nas.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.work / "server-ca.pem"))
        ctx.load_cert_chain(cert, key)
        return ctx


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, EapkitServe]]:
    lab = Lab(tmp_path / "serve")
    lab.write("gw1", "gw2")
    serve = EapkitServe(lab.work, extra=["--config", str(lab.config)])
    with serve:
        assert serve.daemon is not None
        serve.daemon.wait_for("radsec listening on")
        yield lab, serve


async def _login(lab: Lab, name: str) -> int:
    """PAP over a new connection: the reply's Code, or 0 when the server closed it."""
    try:
        nas = await TlsNas.connect(("127.0.0.1", lab.port), lab.context(name))
        try:
            return (await nas.pap("alice", "wonderland")).code
        finally:
            await nas.close()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        return 0


def test_sighup_drops_a_removed_client_and_closes_its_connection(
    lab: tuple[Lab, EapkitServe],
) -> None:
    lab_, serve = lab
    assert serve.daemon is not None

    async def run() -> tuple[int, bool, int, int]:
        nas = await TlsNas.connect(("127.0.0.1", lab_.port), lab_.context("gw2"))
        first = (await nas.pap("alice", "wonderland")).code
        lab_.write("gw1")
        assert serve.daemon is not None
        serve.daemon.proc.send_signal(signal.SIGHUP)
        # the open connection of gw2 is closed by the server: its reader ends
        await asyncio.wait_for(asyncio.gather(nas.task, return_exceptions=True), 10)
        closed = nas.reader.at_eof()
        await nas.close()
        return first, closed, await _login(lab_, "gw2"), await _login(lab_, "gw1")

    first, closed, gw2_again, gw1 = asyncio.run(run())
    assert first == Code.ACCESS_ACCEPT
    assert closed
    assert gw2_again == 0  # refused: no [[radsec.clients]] entry matches any more
    assert gw1 == Code.ACCESS_ACCEPT
    serve.daemon.wait_for(r"closed: client_removed gw2")
    serve.daemon.wait_for(r"closed: unknown_client")


def test_a_changed_file_is_read_when_a_connection_arrives(
    lab: tuple[Lab, EapkitServe],
) -> None:
    lab_, serve = lab
    assert asyncio.run(_login(lab_, "gw3")) == 0
    lab_.write("gw1", "gw2", "gw3")
    time.sleep(1.1)  # looked at, at most once a second
    assert asyncio.run(_login(lab_, "gw3")) == Code.ACCESS_ACCEPT
    lines = [d for d in serve.decisions if d.get("result") == "accept"]
    assert [d["client"] for d in lines] == ["gw3"]


def test_a_broken_file_keeps_the_clients_in_force(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "serve")
    lab.write("gw1")
    now = [0.0]
    warnings: list[str] = []
    source = ClientsFile(lab.config, [], clock=lambda: now[0], warn=warnings.append)
    lab.write("gw1", "gw2")
    source.poll()
    assert source.generation == 0  # not yet: at most once per interval
    now[0] = 1.0
    source.poll()
    assert (source.generation, [c.name for c in source.clients]) == (1, ["gw1", "gw2"])
    lab.config.write_text("[radsec]\ncert = 'server.pem'\n")  # no key, no clients
    source.force()
    source.poll()
    assert (source.generation, [c.name for c in source.clients]) == (1, ["gw1", "gw2"])
    assert len(warnings) == 1 and "not reloaded" in warnings[0]
    source.force()
    source.poll()
    assert len(warnings) == 1  # reported once per version of the file
