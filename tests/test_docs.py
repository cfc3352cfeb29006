"""docs/embedding.md's example runs as written: a foreign asyncio RADIUS server drives
eapkit's EAP conversations, and eapkit's probe authenticates against it."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from eapkit.probe import ProbeOptions, ok, probe
from tests.conftest import free_udp_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"


def test_embedding_example_authenticates() -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    namespace: dict[str, Any] = {"__name__": "embedding_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    port = free_udp_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(namespace["serve_forever"]("127.0.0.1", port, stop),),
        daemon=True,
    )
    thread.start()
    try:
        for method, password, expected in (
            ("mschapv2", "wonderland", True),
            ("gtc", "wonderland", True),
            ("mschapv2", "guess", False),
        ):
            opts = ProbeOptions(
                server=("127.0.0.1", port),
                secret=b"testing123",
                method=method,
                identity="alice",
                password=password,
                timeout=1.0,
            )
            result = asyncio.run(probe(opts))
            assert ok(result) is expected, (method, result)
            if expected and method == "mschapv2":
                assert result.keys_match is True
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    decisions = namespace["decisions"]
    assert [d["result"] for d in decisions] == ["accept", "accept", "reject"]
    assert decisions[0]["method"] == "MSCHAPV2"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
