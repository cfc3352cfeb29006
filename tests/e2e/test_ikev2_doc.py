"""docs/ikev2.md's eapkit configuration is one ``eapkit serve`` accepts, with the
settings the end-to-end tests rely on (a second listen address for accounting, the
code-only GTC of the two-round patterns, a CRL)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from eapkit.serve import ServeConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "ikev2.md"


def test_the_guide_toml_is_a_serve_config() -> None:
    [block] = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    cfg = ServeConfig.from_dict(tomllib.loads(block))
    assert cfg.listen == [("127.0.0.1", 1812), ("127.0.0.1", 1813)]
    assert cfg.gtc == "code"
    assert cfg.methods == ["tls", "ttls", "mschapv2", "gtc"]
    assert cfg.tls.crl and cfg.tls.ca is not None
    assert [c.name for c in cfg.clients] == ["vpn-gateway"]
