"""kill -9 between accept and reply, many times: no code is ever accepted twice.

A child process verifies fresh codes from four threads on one group-committing
:class:`~eapkit.store.SqliteStore` and "replies" (a line on stdout) after each accept.
The test kills it with SIGKILL at a random moment (mid-batch, between COMMIT and reply,
while replying), then, before the next child starts:

- every code replied as accepted is refused by the reopened store (its counter is at or
  above it), and
- the next child starts a few steps back, so it offers again codes that may have been
  accepted without a reply; a replied code offered again is never replied twice.

SIGKILL loses the process, not the kernel's page cache, so this checks the order "commit,
then answer" and the atomicity of each operation across a crash; surviving a power cut
rests on ``synchronous=FULL`` (docs/benchmarks.md, "Group commit").  Rounds: 12 by
default, ``EAPKIT_CRASH_ROUNDS`` for a long run (say 300).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from eapkit.store import SqliteStore

USERS = 4
CHILD = """
import sys, threading
from eapkit.store import SqliteStore
path, first = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
store = SqliteStore(path)
out = threading.Lock()

def user(u):
    step = first[u]
    while True:
        if store.advance_unless_locked(f"c{u}", step, f"f{u}", 5, 0.0)[0]:
            with out:
                sys.stdout.write(f"{u} {step}\\n")
                sys.stdout.flush()
        step += 1

threads = [threading.Thread(target=user, args=(u,)) for u in range(4)]
sys.stdout.write("ready\\n")
sys.stdout.flush()
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_kill_between_accept_and_reply_never_accepts_a_code_twice(tmp_path: Path) -> None:
    rounds = int(os.environ.get("EAPKIT_CRASH_ROUNDS", "12"))
    path = tmp_path / "crash.db"
    rng = random.Random(21)
    replied: dict[int, set[int]] = {u: set() for u in range(USERS)}
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    kills = 0
    for _ in range(rounds):
        # offer again each user's last few accepted codes
        first = ",".join(str(max(1, max(replied[u], default=0) - 3)) for u in range(USERS))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), first],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        lines: list[str] = []
        for _ in range(rng.randint(1, 40)):
            lines.append(child.stdout.readline())
        time.sleep(rng.random() * 0.002)
        os.kill(child.pid, signal.SIGKILL)
        lines += child.stdout.read().splitlines(keepends=True)  # replied before the kill
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        kills += 1
        for line in lines:
            if not line.endswith("\n"):
                continue  # cut off mid-reply: never reached the caller whole
            u, step = (int(x) for x in line.split())
            assert step not in replied[u], f"user {u} step {step} accepted twice"
            replied[u].add(step)
        store = SqliteStore(path, group_commit=False)
        for u, steps in replied.items():
            for step in steps:
                assert store.advance_unless_locked(f"c{u}", step, f"f{u}", 5, 0.0)[0] is False
        store.close()
    assert kills == rounds
    assert sum(len(s) for s in replied.values()) >= rounds
