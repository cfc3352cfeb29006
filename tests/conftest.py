"""Shared test policy.

Interop tests run software no one here wrote.  On a machine without the tool they skip
with the reason; under CI (``CI=true``) a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# For long runs: HYPOTHESIS_PROFILE=long pytest -m slow (10,000 inputs per decoder and more)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(*names: str) -> dict[str, str]:
    """Paths of the named executables; skip (or, under CI, fail) when one is missing."""
    found: dict[str, str] = {}
    for name in names:
        path = shutil.which(name) or next(
            (
                str(p)
                for d in ("/usr/sbin", "/sbin", "/usr/lib/ipsec")
                if (p := Path(d) / name).exists()
            ),
            None,
        )
        if path is None:
            message = f"{name} is not installed (see .ci/run for the packages)"
            if IN_CI:
                pytest.fail(f"interop tool missing under CI: {message}")
            pytest.skip(message)
        found[name] = path
    return found


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on loopback that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
