"""Who is online in a room, across every server process.

A member is online in a room while at least one of their sockets to it is open, in any process.
Each process counts its own sockets (the hub); this module shares "member M is here" between
processes. In one process (no REDIS_URL) the hub's own count is the whole truth. With Redis,
each process writes `member:process` into a sorted set per room, scored by when the entry
expires, and refreshes its entries while the sockets stay open: a process that dies stops
refreshing, and its members drop out within PRESENCE_TTL seconds.
"""

import asyncio
import os
import time
import uuid
import weakref

from django.conf import settings

from rooms.hub import get_hub

PRESENCE_TTL = 45
REFRESH_EVERY = 15
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _key(room_id: int) -> str:
    return f"parley:online:{room_id}"


class LocalPresence:
    async def arrived(self, room_id: int, member_id: int) -> None:
        pass

    async def departed(self, room_id: int, member_id: int) -> None:
        pass

    async def online(self, room_id: int) -> set[int]:
        return get_hub().online_here(room_id)


class RedisPresence:
    def __init__(self, url: str):
        import redis.asyncio as redis

        self.redis = redis.from_url(url)
        self.refresher: asyncio.Task | None = None

    def _entry(self, member_id: int) -> str:
        return f"{member_id}:{PROCESS_ID}"

    async def arrived(self, room_id: int, member_id: int) -> None:
        await self.redis.zadd(_key(room_id), {self._entry(member_id): time.time() + PRESENCE_TTL})
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.create_task(self._refresh())

    async def departed(self, room_id: int, member_id: int) -> None:
        await self.redis.zrem(_key(room_id), self._entry(member_id))

    async def online(self, room_id: int) -> set[int]:
        entries = await self.redis.zrangebyscore(_key(room_id), time.time(), "+inf")
        return {int(entry.split(b":", 1)[0]) for entry in entries}

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            rooms = get_hub().local_rooms()
            if not rooms:
                return
            expires = time.time() + PRESENCE_TTL
            async with self.redis.pipeline(transaction=False) as pipe:
                for room_id, members in rooms.items():
                    if members:
                        pipe.zadd(_key(room_id), {self._entry(m): expires for m in members})
                    pipe.zremrangebyscore(_key(room_id), "-inf", time.time())
                await pipe.execute()


_stores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = (
    weakref.WeakKeyDictionary()
)


def get_presence() -> LocalPresence | RedisPresence:
    """The store for the running event loop (Redis connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else LocalPresence()
        _stores[loop] = store
    return store
