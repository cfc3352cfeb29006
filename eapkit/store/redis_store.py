"""The cluster store: Redis, every read-modify-write a Lua script (atomic on the server).

Several RADIUS nodes share one Redis (or a Sentinel/Cluster front); a TOTP step or
YubiKey counter one node accepted is refused on all of them, because ``advance`` runs
as one script and Redis runs scripts one at a time (DESIGN.md, "State that must survive
and be shared").

Expiry follows the ``now`` the caller passes, like the other backends: a script compares
stored deadlines with ``now``.  Redis's own key expiry (PEXPIRE, relative, with a
margin) is only garbage collection, so a skew between the nodes' clocks and the Redis
host's clock does not change an answer.

Key layout: ``<prefix>r:<key>`` records, ``c:`` counters, ``f:`` tallies (a hash
n/t/e), ``o:`` tokens (a hash v/e).  ``advance_unless_locked`` reads and writes a counter and
a tally in one script: fine on one Redis (or Sentinel's master); a Redis Cluster would
need both keys in one hash slot.  Every error of the client (connection refused,
timeout, READONLY replica, OOM) becomes :class:`~eapkit.store.base.StoreUnavailable`.

Pipelining: the writing scripts of concurrent threads (``advance``,
``advance_unless_locked``, ``incr``, ``put_once``, ``take``) go to Redis in one pipeline
per batch (:mod:`eapkit.store.group_commit`'s leader/follower queue), one round trip
instead of one each.  Redis runs the pipelined scripts one after another, each atomic,
in queue order, so every answer is the one the script would have given alone; a caller
gets its answer only after the whole pipeline was answered, and a connection error
fails every caller of the batch closed.  A script Redis does not have (NOSCRIPT after a
restart or SCRIPT FLUSH) did not run: it is loaded and that operation sent again.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eapkit.store.base import StoreUnavailable, check_counter, check_ttl
from eapkit.store.group_commit import CommitQueue, Entry

try:
    import redis
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Redis store needs the 'redis' extra: pip install eapkit[redis]") from exc

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS[1] counter; ARGV[1] value.  Lua numbers are doubles: values stay below 2**53.
_ADVANCE = """
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] counter, KEYS[2] tally hash; ARGV value ('' for none), limit, now.
# Returns {advanced 0/1, count, time of the last failure as text (a double, kept exact)}.
_ADVANCE_UNLESS_LOCKED = """
local now = tonumber(ARGV[3])
local t = redis.call('HMGET', KEYS[2], 'n', 't', 'e')
local n, last = 0, '0'
if t[1] and t[3] and tonumber(t[3]) > now then n = tonumber(t[1]); last = t[2] end
if n >= tonumber(ARGV[2]) or ARGV[1] == '' then return {0, n, last} end
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return {0, n, last} end
redis.call('SET', KEYS[1], ARGV[1])
if t[1] then redis.call('DEL', KEYS[2]) end
return {1, n, last}
"""

# KEYS[1] tally hash; ARGV now, ttl, gc-ms.  Returns the new count.
_INCR = """
local now = tonumber(ARGV[1])
local exp = tonumber(redis.call('HGET', KEYS[1], 'e'))
local n = 1
if exp and exp > now then n = tonumber(redis.call('HGET', KEYS[1], 'n')) + 1 end
redis.call('HSET', KEYS[1], 'n', n, 't', ARGV[1], 'e', now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n
"""

# KEYS[1] token hash; ARGV value, now, ttl, gc-ms.  1 if stored.
_PUT_ONCE = """
local now = tonumber(ARGV[2])
local exp = tonumber(redis.call('HGET', KEYS[1], 'e'))
if exp and exp > now then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] token hash; ARGV now.  The value if live, else false; removes it either way.
_TAKE = """
local got = redis.call('HMGET', KEYS[1], 'v', 'e')
redis.call('DEL', KEYS[1])
if got[1] and tonumber(got[2]) > tonumber(ARGV[1]) then return got[1] end
return false
"""


# KEYS[1] record, KEYS[2..] names to delete; ARGV old, new.  1 if the record was still
# ``old`` and is now ``new`` (and the others are gone), else 0 and nothing changed.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


_FAMILIES = ("r:", "c:", "f:", "o:")


class RedisStore:
    """A :class:`~eapkit.store.base.Store` on Redis.

    ``url`` as redis-py takes it (``redis://host:6379/0``, ``rediss://``, ``unix://``),
    or pass a ready ``client``.  ``timeout`` (seconds) bounds connect and each command:
    a RADIUS request should be rejected, not hang, when Redis is gone.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "eapkit:",
        timeout: float = 1.0,
        client: Any = None,
        pipeline: bool = True,
        pipeline_window: float = 0.0005,
        pipeline_max: int = 128,
    ) -> None:
        self._prefix = prefix
        self._r: Any = client or redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._advance = self._r.register_script(_ADVANCE)
        self._incr = self._r.register_script(_INCR)
        self._advance_unless_locked = self._r.register_script(_ADVANCE_UNLESS_LOCKED)
        self._put_once = self._r.register_script(_PUT_ONCE)
        self._take = self._r.register_script(_TAKE)
        self._swap = self._r.register_script(_SWAP)
        self._queue = (
            CommitQueue(self._pipeline_batch, window=pipeline_window, max_batch=pipeline_max)
            if pipeline
            else None
        )
        if self._queue is not None:  # a forked worker must not inherit a held queue lock
            ref = weakref.ref(self._queue)
            os.register_at_fork(after_in_child=lambda: _queue_after_fork(ref))

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RedisError as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}") from exc

    def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a writing script: alone, or in the next pipeline of concurrent callers."""
        if self._queue is None:
            return self._call(lambda: script(keys=keys, args=args))
        call = (script, keys, args)
        return self._queue.submit(lambda _pipe: call)

    def _pipeline_batch(self, batch: list[Entry[Any]]) -> None:
        """One pipeline (no MULTI: each script is atomic on its own) for the batch;
        results handed out only once every reply arrived."""
        calls = [e.op(None) for e in batch]
        todo = list(range(len(batch)))
        for attempt in range(2):
            try:
                pipe = self._r.pipeline(transaction=False)
                for i in todo:
                    script, keys, args = calls[i]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = pipe.execute(raise_on_error=False)
            except RedisError as exc:
                error = StoreUnavailable(f"redis store: {type(exc).__name__}")
                for i in todo:
                    batch[i].error = error
                return
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)  # it did not run: load it and send it again
                elif isinstance(reply, Exception):
                    batch[i].error = StoreUnavailable(f"redis store: {type(reply).__name__}")
                else:
                    batch[i].value = reply
            if not missing:
                return
            try:
                for sha_script in {calls[i][0] for i in missing}:
                    self._r.script_load(sha_script.script)
            except RedisError as exc:
                error = StoreUnavailable(f"redis store: {type(exc).__name__}")
                for i in missing:
                    batch[i].error = error
                return
            todo = missing

    def get(self, key: str) -> bytes | None:
        value = self._call(lambda: self._r.get(self._prefix + "r:" + key))
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> None:
        self._call(lambda: self._r.set(self._prefix + "r:" + key, bytes(value)))

    def record_keys(self, after: str = "", limit: int | None = None) -> list[str]:
        """The records' keys after ``after`` in order, at most ``limit`` of them (SCAN
        walks the whole key space: ``eapkit store rekey``, not a hot path)."""
        start = self._prefix + "r:"
        found = self._call(lambda: list(self._r.scan_iter(match=_glob(start) + "*", count=1000)))
        keys = sorted(k for k in (bytes(n)[len(start) :].decode() for n in found) if k > after)
        return keys if limit is None else keys[:limit]

    def swap(self, key: str, old: bytes, new: bytes, delete: Sequence[str] = ()) -> bool:
        """Replace the record under ``key`` with ``new`` iff it is still ``old`` and
        delete ``delete`` (every family): one script, atomic on the server."""
        doomed = [self._prefix + f + k for k in delete if k != key for f in _FAMILIES]
        keys = [self._prefix + "r:" + key, *doomed]
        args: list[bytes | str | int] = [bytes(old), bytes(new)]
        return int(self._call(lambda: self._swap(keys=keys, args=args))) == 1

    def delete(self, key: str) -> bool:
        names = [self._prefix + family + key for family in _FAMILIES]
        return int(self._call(lambda: self._r.delete(*names))) > 0

    def counter(self, key: str) -> int | None:
        value = self._call(lambda: self._r.get(self._prefix + "c:" + key))
        return None if value is None else int(value)

    def advance(self, key: str, value: int) -> bool:
        check_counter(value)
        keys = [self._prefix + "c:" + key]
        return int(self._script(self._advance, keys, [value])) == 1

    def advance_unless_locked(
        self, key: str, value: int | None, tally_key: str, limit: int, now: float
    ) -> tuple[bool, int, float]:
        # One script, one round trip; both keys go to the one server this client talks to.
        if value is not None:
            check_counter(value)
        keys = [self._prefix + "c:" + key, self._prefix + "f:" + tally_key]
        args: list[bytes | str | int] = [
            "" if value is None else value,
            limit,
            repr(float(now)),
        ]
        got = self._script(self._advance_unless_locked, keys, args)
        return (int(got[0]) == 1, int(got[1]), float(got[2]))

    def incr(self, key: str, ttl: float, now: float) -> int:
        check_ttl(ttl)
        keys = [self._prefix + "f:" + key]
        args: list[bytes | str | int] = [repr(float(now)), repr(float(ttl)), _gc_ms(ttl)]
        return int(self._script(self._incr, keys, args))

    def tally(self, key: str, now: float) -> tuple[int, float]:
        got = self._call(lambda: self._r.hmget(self._prefix + "f:" + key, "n", "t", "e"))
        if got[0] is None or got[2] is None or float(got[2]) <= now:
            return (0, 0.0)
        return (int(got[0]), float(got[1]))

    def put_once(self, key: str, value: bytes, ttl: float, now: float) -> bool:
        check_ttl(ttl)
        keys = [self._prefix + "o:" + key]
        args: list[bytes | str | int] = [
            bytes(value),
            repr(float(now)),
            repr(float(ttl)),
            _gc_ms(ttl),
        ]
        return int(self._script(self._put_once, keys, args)) == 1

    def take(self, key: str, now: float) -> bytes | None:
        keys = [self._prefix + "o:" + key]
        value = self._script(self._take, keys, [repr(float(now))])
        return None if value is None else bytes(value)

    def peek(self, key: str, now: float) -> bytes | None:
        got = self._call(lambda: self._r.hmget(self._prefix + "o:" + key, "v", "e"))
        if got[0] is None or got[1] is None or float(got[1]) <= now:
            return None
        return bytes(got[0])

    def close(self) -> None:
        self._call(lambda: self._r.close())


def _gc_ms(ttl: float) -> int:
    # Garbage collection only (see the module docstring): the deadline plus a minute of
    # slack for clock skew between the nodes and the Redis host.
    return int(ttl * 1000) + 60_000


def _glob(text: str) -> str:
    """``text`` with the glob characters of a SCAN MATCH pattern escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _queue_after_fork(ref: weakref.ReferenceType[CommitQueue]) -> None:
    queue = ref()
    if queue is not None:
        queue.after_fork()
