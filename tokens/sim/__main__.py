"""``python -m tokens.sim --card KIND [--port 35963] [--state FILE]``: insert a virtual card.

The card connects to vpcd (pcscd's virtual reader driver) and stays inserted, with
reconnection, until SIGTERM or SIGINT.  With ``--state`` it loads the credentials and
keys from FILE (JSON: one object per applet, see the applet modules) and writes every
change back to it, as a real token keeps what it was given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from tokens.sim import CARD_KINDS, make_card
from tokens.sim.vpcd import VPCD_PORTS, serve


def _save(path: Path, state: dict[str, Any]) -> None:
    # write-then-rename: a reader of the file never sees half a state
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokens.sim", description=__doc__)
    parser.add_argument("--card", choices=CARD_KINDS, required=True)
    parser.add_argument("--port", type=int, default=VPCD_PORTS[0], help="vpcd TCP port")
    parser.add_argument("--host", default="127.0.0.1", help="where vpcd listens")
    parser.add_argument("--state", type=Path, help="JSON file with the card's contents")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)

    state: dict[str, Any] = {}
    if args.state is not None and args.state.exists():
        state = json.loads(args.state.read_text())
    card = make_card(args.card, state)
    if args.state is not None:
        path: Path = args.state
        for applet in card.applets:
            applet.on_change = lambda: _save(path, {**state, **card.state()})
        _save(path, {**state, **card.state()})

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(card, args.host, args.port, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
