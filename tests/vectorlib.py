"""Loader for the conformance vectors in ``vectors/`` (DESIGN.md, "Tests").

A vector file is JSON::

    {
      "description": "what these cases exercise",
      "cases": [
        {"name": "short-unique-name",
         "source": "RFC 3748 §5.1" | "eapol_test 2.10 (wpa_supplicant) against hostapd 2.10",
         ...case fields, bytes as lowercase hex strings...}
      ]
    }

Every case must name its source; :func:`load` refuses a file where one does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

Case = dict[str, Any]


def load(name: str) -> list[Case]:
    """The cases of ``vectors/<name>.json``, each checked to have a name and a source."""
    path = VECTORS / (name if name.endswith(".json") else f"{name}.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    cases = doc["cases"]
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{path.name}: no cases")
    seen: set[str] = set()
    for case in cases:
        case_name = case.get("name")
        if not isinstance(case_name, str) or not case_name:
            raise ValueError(f"{path.name}: a case has no name")
        if case_name in seen:
            raise ValueError(f"{path.name}: case name {case_name!r} repeats")
        seen.add(case_name)
        source = case.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"{path.name}: case {case_name!r} names no source")
    return cases


def hexbytes(value: str) -> bytes:
    """A hex string from a vector (spaces and colons allowed) as bytes."""
    return bytes.fromhex(value.replace(":", "").replace(" ", ""))


def ids(cases: list[Case]) -> list[str]:
    return [c["name"] for c in cases]


def all_files() -> list[Path]:
    return sorted(VECTORS.glob("*.json"))
