"""Who is where, across every server process, and stale-proof: a presence store with a TTL.

A feature keeps one `Presence` per kind of place (rooms: "who has a room open"; accounts: "who
has any page open") and calls `arrive(key, member_id)` / `depart(key, member_id)` for every
socket that opens and closes. Both answer whether that changed the member's presence under
`key` site-wide: the first socket anywhere, the last socket anywhere.

Without REDIS_URL there is one process and its counts are the whole truth.

With Redis, each process counts its own sockets and writes one entry per member and key,
`member:process`, into a sorted set per key, scored by when the entry expires (now + TTL). While
its sockets stay open the process refreshes its entries every REFRESH seconds; a process that
dies (SIGKILL) stops refreshing. Every process with entries also sweeps every SWEEP seconds:
one Lua script per key removes the expired entries, and ZREM's answer inside it says which
process removed each, so the members who lost their last entry are reported (`on_gone`) by
exactly one process. A killed process's members are therefore gone within TTL + SWEEP seconds
of the kill (45 + 5 = 50 s by default; settings PRESENCE_TTL, PRESENCE_REFRESH, PRESENCE_SWEEP).

A process writes its entries in the order its sockets changed: every arrive, depart and refresh
is queued and sent by one writer, in batches, each batch one pipeline on one connection. So a
refresh can never write back an entry that a depart queued after it removed (the refresh's
ZADD reaches Redis first), and a thousand sockets closing at once are a few pipelines, not a
thousand connections (redis-py's pool stops at 100 and then refuses).

Keys start with settings.REDIS_PREFIX, so deployments sharing one Redis server stay apart.

Nothing here imports a feature app.
"""

import asyncio
import logging
import os
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import redis
import redis.asyncio
from django.conf import settings

logger = logging.getLogger(__name__)

PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

# Reports members whose presence under a key ended (or came back) without a socket of this
# process saying so: (key, member ids).
Report = Callable[[str, set[int]], Awaitable[None]]

# Whether this member has another live entry under the key than `entry`; then write `entry`.
_ARRIVE = """
local others = 0
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], '+inf')) do
  if e ~= ARGV[1] and string.sub(e, 1, #ARGV[2]) == ARGV[2] then others = others + 1 end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[5])
if others == 0 then return 1 end
return 0
"""

# Remove `entry`; 1 when this call removed it and the member has no live entry left.
_DEPART = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')) do
  if string.sub(e, 1, #ARGV[2]) == ARGV[2] then return 0 end
end
return 1
"""

# Remove the expired entries; return those this call removed whose member has none left.
_SWEEP = """
local gone = {}
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  if redis.call('ZREM', KEYS[1], e) == 1 then table.insert(gone, e) end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
local lost = {}
for _, e in ipairs(gone) do
  local prefix = string.match(e, '^[^:]*:')
  local still = false
  for _, l in ipairs(live) do
    if string.sub(l, 1, #prefix) == prefix then still = true break end
  end
  if not still then table.insert(lost, e) end
end
return lost
"""


def _member_of(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split(":", 1)[0])


class _Counts:
    """How many sockets of each member this process has under each key; thread-safe, because
    views read it from their thread while the sockets change it on the event loop."""

    def __init__(self):
        self.counts: dict[str, Counter[int]] = {}
        self.lock = threading.Lock()

    def add(self, key: str, member_id: int) -> bool:
        """True when this is the member's first socket under `key` here."""
        with self.lock:
            members = self.counts.setdefault(key, Counter())
            members[member_id] += 1
            return members[member_id] == 1

    def remove(self, key: str, member_id: int) -> bool:
        """True when that was the member's last socket under `key` here."""
        with self.lock:
            members = self.counts.get(key)
            if not members or members[member_id] <= 0:
                return False
            members[member_id] -= 1
            if members[member_id] > 0:
                return False
            del members[member_id]
            if not members:
                del self.counts[key]
            return True

    def members(self, key: str) -> set[int]:
        with self.lock:
            return set(self.counts.get(key, ()))

    def entries(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(key, m) for key, members in self.counts.items() for m in members]

    def __bool__(self) -> bool:
        with self.lock:
            return bool(self.counts)


@dataclass
class _Write:
    """Commands for one pipeline, added by `add(pipe)`, and whoever waits for their answers."""

    add: Callable[[object], Awaitable[None]]
    count: int
    done: asyncio.Future


class _RedisBackend:
    """One per event loop: redis-py's asyncio connections belong to the loop that made them."""

    def __init__(self, presence: "Presence"):
        self.presence = presence
        self.counts = _Counts()
        # Blocking: a burst of reads waits for a connection rather than failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=50, timeout=20
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        self.arrive_script = self.redis.register_script(_ARRIVE)
        self.depart_script = self.redis.register_script(_DEPART)
        self.sweep_script = self.redis.register_script(_SWEEP)
        self.keeper: asyncio.Task | None = None
        self.writes: list[_Write] = []
        self.writer: asyncio.Task | None = None

    def _entry(self, member_id: int) -> str:
        return f"{member_id}:{PROCESS_ID}"

    def _write(self, add: Callable[[object], Awaitable[None]], count: int) -> asyncio.Future:
        """Queue commands for Redis; the future gets their answers. Call it in the same step
        as the change to the counts it writes: the queue's order is then the counts' order."""
        write = _Write(add, count, asyncio.get_running_loop().create_future())
        self.writes.append(write)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._send_writes())
        return write.done

    async def _send_writes(self) -> None:
        while self.writes:
            batch, self.writes = self.writes, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for write in batch:
                        await write.add(pipe)
                    answers = await pipe.execute(raise_on_error=False)
            except Exception as error:
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(error)
                continue
            start = 0
            for write in batch:
                mine = answers[start : start + write.count]
                start += write.count
                if write.done.done():
                    continue  # its caller was cancelled; the write happened all the same
                failed = next((a for a in mine if isinstance(a, Exception)), None)
                if failed is not None:
                    write.done.set_exception(failed)
                else:
                    write.done.set_result(mine)

    async def arrive(self, key: str, member_id: int) -> bool:
        if not self.counts.add(key, member_id):
            return False
        p = self.presence
        now = time.time()
        keys = [p.zset(key), p.index]
        args = [self._entry(member_id), f"{member_id}:", now + p.ttl, now, key]

        async def add(pipe):
            await self.arrive_script(keys=keys, args=args, client=pipe)

        written = self._write(add, 1)
        if self.keeper is None or self.keeper.done():
            self.keeper = asyncio.create_task(self._keep())
        (first,) = await written
        return bool(first)

    async def depart(self, key: str, member_id: int) -> bool:
        if not self.counts.remove(key, member_id):
            return False
        keys = [self.presence.zset(key)]
        args = [self._entry(member_id), f"{member_id}:", time.time()]

        async def add(pipe):
            await self.depart_script(keys=keys, args=args, client=pipe)

        (last,) = await self._write(add, 1)
        return bool(last)

    async def members(self, key: str) -> set[int]:
        entries = await self.redis.zrangebyscore(self.presence.zset(key), f"({time.time()}", "+inf")
        return {_member_of(entry) for entry in entries}

    async def _keep(self) -> None:
        """Refresh this process's entries and sweep everybody's expired ones, while this
        process has entries. An error is logged and the next round tries again: a keeper that
        died would let every member of this process expire."""
        p = self.presence
        refreshed = time.monotonic()
        while self.counts:
            await asyncio.sleep(p.sweep_every)
            if time.monotonic() - refreshed >= p.refresh_every:
                try:
                    await self.refresh()
                    refreshed = time.monotonic()
                except Exception:
                    logger.exception(
                        "Presence %s: refreshing this process's entries failed", p.name
                    )
            try:
                await self.sweep()
            except Exception:
                logger.exception("Presence %s: sweeping expired entries failed", p.name)

    async def refresh(self) -> None:
        p = self.presence
        entries = self.counts.entries()
        if not entries:
            return
        expires = time.time() + p.ttl
        zsets, index = [p.zset(key) for key, _ in entries], p.index

        async def add(pipe):
            for zset, (key, member_id) in zip(zsets, entries, strict=True):
                pipe.zadd(zset, {self._entry(member_id): expires})
                pipe.sadd(index, key)

        # Queued in the same step as reading the counts: a depart after this read is written
        # after these ZADDs, so none of them can bring back an entry a depart removed.
        answers = await self._write(add, 2 * len(entries))
        # So an entry that was missing had been swept (this process stalled for longer than
        # the TTL): it is back, and whoever was told it had gone is told it came back.
        back: dict[str, set[int]] = {}
        for (key, member_id), added in zip(entries, answers[::2], strict=True):
            if added:
                back.setdefault(key, set()).add(member_id)
        for key, members in back.items():
            await p.report(p.on_back, key, members)

    async def sweep(self) -> None:
        p = self.presence
        keys = [k.decode() for k in await self.redis.smembers(p.index)]
        if not keys:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                await self.sweep_script(keys=[p.zset(key), p.index], args=[now, key], client=pipe)
            answers = await pipe.execute()
        for key, lost in zip(keys, answers, strict=True):
            if lost:
                await p.report(p.on_gone, key, {_member_of(entry) for entry in lost})


class _LocalBackend:
    def __init__(self):
        self.counts = _Counts()

    async def arrive(self, key: str, member_id: int) -> bool:
        return self.counts.add(key, member_id)

    async def depart(self, key: str, member_id: int) -> bool:
        return self.counts.remove(key, member_id)

    async def members(self, key: str) -> set[int]:
        return self.counts.members(key)

    async def sweep(self) -> None:
        pass  # one process: nobody else's entries can go stale


class Presence:
    """A named presence store. Keep one per kind of place, at module level.

    `on_gone(key, member_ids)` is called (in one process only) for members whose last entry
    under `key` expired: their process died or stalled. `on_back` for entries of this process
    that had expired and are written again.
    """

    def __init__(self, name: str, *, on_gone: Report | None = None, on_back: Report | None = None):
        self.name = name
        self.on_gone = on_gone
        self.on_back = on_back
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RedisBackend] = (
            weakref.WeakKeyDictionary()
        )
        self._local = _LocalBackend()
        self._sync_client = None

    @property
    def index(self) -> str:
        """The set of keys with entries; every key of this store starts with it."""
        return f"{settings.REDIS_PREFIX}:presence:{self.name}"

    @property
    def ttl(self) -> float:
        return settings.PRESENCE_TTL

    @property
    def refresh_every(self) -> float:
        return settings.PRESENCE_REFRESH

    @property
    def sweep_every(self) -> float:
        return settings.PRESENCE_SWEEP

    def zset(self, key: str) -> str:
        return f"{self.index}:{key}"

    def _backend(self) -> _RedisBackend | _LocalBackend:
        if not settings.REDIS_URL:
            return self._local
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            backend = self._backends[loop] = _RedisBackend(self)
        return backend

    async def arrive(self, key: object, member_id: int) -> bool:
        """A socket of `member_id` opened under `key`: True when it is their first anywhere."""
        return await self._backend().arrive(str(key), member_id)

    async def depart(self, key: object, member_id: int) -> bool:
        """A socket of `member_id` under `key` closed: True when it was their last anywhere."""
        return await self._backend().depart(str(key), member_id)

    async def members(self, key: object) -> set[int]:
        """Who is present under `key` now, in any process."""
        return await self._backend().members(str(key))

    async def sweep(self) -> None:
        """Remove expired entries now (each process with entries also does it every SWEEP s)."""
        await self._backend().sweep()

    def present_now(self, pairs: Iterable[tuple[object, int]]) -> set[tuple[str, int]]:
        """Which (key, member_id) pairs are present now; callable from sync code (a view)."""
        pairs = [(str(key), member_id) for key, member_id in pairs]
        if not settings.REDIS_URL:
            counts = self._local.counts
            return {(key, m) for key, m in pairs if m in counts.members(key)}
        client = self._sync_redis()
        now = time.time()
        with client.pipeline(transaction=False) as pipe:
            for key, _ in pairs:
                pipe.zrangebyscore(self.zset(key), f"({now}", "+inf")
            answers = pipe.execute()
        return {
            (key, m)
            for (key, m), entries in zip(pairs, answers, strict=True)
            if any(_member_of(entry) == m for entry in entries)
        }

    def _sync_redis(self):
        if self._sync_client is None:
            self._sync_client = redis.Redis.from_url(settings.REDIS_URL)
        return self._sync_client

    async def report(self, callback: Report | None, key: str, member_ids: set[int]) -> None:
        if callback is None or not member_ids:
            return
        try:
            await callback(key, member_ids)
        except Exception:
            logger.exception("Presence %s: reporting a change under %s failed", self.name, key)
