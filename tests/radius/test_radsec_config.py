"""``[radsec]`` in ``eapkit serve``'s TOML: the schema knows every key the parser reads,
mistakes are refused, and a real ``eapkit serve`` runs UDP and RadSec side by side with
one decision log that names each line's transport."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import time
from pathlib import Path

import pytest

from eapkit import radsec_config
from eapkit.config_schema import RADSEC, RADSEC_CLIENTS, validate
from eapkit.errors import ConfigError
from eapkit.pki import make_ca, make_client, make_server
from eapkit.radius.dictionary import Attr
from eapkit.radius.hiding import hide_password
from eapkit.radius.nas import RadiusClient
from eapkit.radius.packet import Code, new_request_authenticator
from eapkit.serve import ServeConfig
from tests.interop.tools import EapkitServe
from tests.radius.test_radsec import NOW, TlsNas


def test_the_schema_knows_every_radsec_key_serve_reads() -> None:
    source = inspect.getsource(radsec_config.radsec_settings)
    tables = {"table": RADSEC, "nas": RADSEC_CLIENTS}
    found = re.findall(r'\b(table|nas)(?:\.get\(|\[)"(\w+)"', source)
    found += [(t, k) for k, t in re.findall(r'"(\w+)" (?:not )?in (table|nas)\b', source)]
    assert len(found) > 10
    for table, key in found:
        assert key in tables[table].keys, f"{table}: {key}"
    for table, key in re.findall(r'_text\((nas), "(\w+)"\)', source):
        assert key in tables[table].keys


def _radsec(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "radsec": {
            "listen": "127.0.0.1:2083",
            "cert": "s.pem",
            "key": "s.key",
            "crl": "nas.crl",
            "clients": [{"name": "gw1", "ca": "nas-ca.pem", "san": "gw1.*"}],
            **extra,
        }
    }


def test_radsec_table_parses(tmp_path: Path) -> None:
    cfg = ServeConfig.from_dict(_radsec(tmp_path, idle_timeout=5), base=tmp_path)
    assert cfg.radsec is not None
    assert cfg.radsec.listen == [("127.0.0.1", 2083)]
    assert cfg.radsec.cert == tmp_path / "s.pem"
    assert cfg.radsec.crl == [tmp_path / "nas.crl"]
    assert cfg.radsec.idle_timeout == 5
    [entry] = cfg.radsec.clients
    assert (entry.name, entry.ca, entry.san, entry.subject) == (
        "gw1",
        tmp_path / "nas-ca.pem",
        "gw1.*",
        None,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"idle_timout": 3}, "did you mean 'idle_timeout'"),
        ({"clients": []}, "no [[radsec.clients]]"),
        ({"clients": [{"name": "gw1"}]}, "no ca given"),
        ({"min_version": "1.1"}, "is not one of 1.2, 1.3"),
    ],
)
def test_radsec_mistakes_are_refused(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        ServeConfig.from_dict(_radsec(tmp_path, **change), base=tmp_path)
    assert message in str(err.value)


def test_radsec_without_a_certificate_is_refused(tmp_path: Path) -> None:
    data = _radsec(tmp_path)
    radsec = data["radsec"]
    assert isinstance(radsec, dict)
    del radsec["key"]
    assert validate(data) == []
    with pytest.raises(ConfigError, match="needs cert and key"):
        ServeConfig.from_dict(data, base=tmp_path)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_udp_and_radsec_with_one_decision_log(tmp_path: Path) -> None:
    work = tmp_path / "serve"
    work.mkdir()
    server_ca, nas_ca = make_ca("radsec CA", now=NOW), make_ca("NAS CA", now=NOW)
    leaf = make_server(server_ca, ["radius.test"], now=NOW)
    files = {
        "server.pem": leaf.chain_pem,
        "server.key": leaf.key_pem,
        "server-ca.pem": server_ca.cert_pem,
        "nas-ca.pem": nas_ca.cert_pem,
    }
    for name, data in files.items():
        (work / name).write_bytes(data)
    (work / "server.key").chmod(0o600)
    port = _free_tcp_port()
    (work / "eapkit.toml").write_text(
        f"""
[radsec]
listen = ["127.0.0.1:{port}"]
cert = "server.pem"
key = "server.key"
idle_timeout = 30

[[radsec.clients]]
name = "gw-radsec"
ca = "nas-ca.pem"
san = "gw1.vpn.test"
"""
    )
    nas = make_client(nas_ca, "gw1", dns_names=["gw1.vpn.test"], now=NOW)
    (work / "nas.pem").write_bytes(nas.chain_pem)
    (work / "nas.key").write_bytes(nas.key_pem)
    serve = EapkitServe(work, extra=["--config", str(work / "eapkit.toml")])
    with serve:
        assert serve.daemon is not None
        deadline = time.monotonic() + 15
        while "radsec listening on" not in serve.daemon.output():
            assert time.monotonic() < deadline, serve.daemon.output()
            time.sleep(0.05)

        async def run() -> tuple[int, int, int]:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cafile=str(work / "server-ca.pem"))
            ctx.load_cert_chain(work / "nas.pem", work / "nas.key")
            tls = await TlsNas.connect(("127.0.0.1", port), ctx)
            over_tls = (await tls.pap("alice", "wonderland")).code
            await tls.close()
            async with RadiusClient(("127.0.0.1", serve.port), b"testing123") as udp:
                status, _ = await udp.request([], Code.STATUS_SERVER)
                auth = new_request_authenticator()
                password = hide_password(b"wonderland", b"testing123", auth)
                pap = [(Attr.USER_NAME, b"alice"), (Attr.USER_PASSWORD, password)]
                over_udp, _ = await udp.request(pap, authenticator=auth)
            return over_tls, status.code, over_udp.code

        accept = Code.ACCESS_ACCEPT
        assert asyncio.run(run()) == (accept, accept, accept)
        deadline = time.monotonic() + 5
        while len([d for d in serve.decisions if d.get("result")]) < 2:
            assert time.monotonic() < deadline, serve.decisions
            time.sleep(0.05)
    # one log, each line stamped with the transport and RADIUS version it came through
    lines = [d for d in serve.decisions if d.get("result")]
    assert [(d["result"], d["transport"], d["radius_version"]) for d in lines] == [
        ("accept", "radsec", "1.0"),
        ("accept", "udp", "1.0"),
    ], lines
    assert lines[0]["client"] == "gw-radsec"


def test_the_documented_radsec_table_is_valid(tmp_path: Path) -> None:
    """docs/radsec.md's [radsec] example parses as written."""
    import tomllib

    doc = (Path(__file__).parents[2] / "docs" / "radsec.md").read_text()
    block = re.search(r"```toml\n(\[radsec\].*?)```", doc, re.S)
    assert block is not None
    data = tomllib.loads(block.group(1))
    assert validate(data) == []
    cfg = ServeConfig.from_dict(data, base=tmp_path)
    assert cfg.radsec is not None and cfg.radsec.listen == [("0.0.0.0", 2083)]
    assert [c.name for c in cfg.radsec.clients] == ["vpn-gw1"]


def test_eapkit_check_names_missing_radsec_files(tmp_path: Path) -> None:
    import datetime as dt

    from eapkit.check import check_data

    (tmp_path / "s.pem").write_bytes(b"")
    findings = [str(f) for f in check_data(_radsec(tmp_path), tmp_path, dt.datetime.now(dt.UTC))]
    assert any("[radsec] key" in f and "does not exist" in f for f in findings)
    assert any("[[radsec.clients]] gw1 ca" in f for f in findings)
    assert not any("[radsec] cert" in f for f in findings)
