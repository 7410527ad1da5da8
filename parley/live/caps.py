"""How many sockets each member, and each network address, has open on the whole site: the caps.

Every Parley socket takes a slot before it runs and gives it back however it ends (LiveSocket).
A socket over either cap is refused: settings.SOCKETS_PER_MEMBER stops one account (a script, a
stolen session) from holding thousands of sockets; settings.SOCKETS_PER_ADDRESS stops one
address from doing it with many accounts. 0 turns a cap off.

Without REDIS_URL there is one process and its counts are the whole truth. With Redis, every
slot is an entry in two sorted sets (the member's, the address's), scored by when it expires;
one Lua script drops expired entries, checks both caps and adds the entry, so two processes
cannot both take the last slot. Each process refreshes its entries every PRESENCE_REFRESH
seconds and they expire PRESENCE_TTL seconds after the last refresh, so the slots of a process
that was killed are free again within PRESENCE_TTL seconds, with nobody sweeping. When Redis
cannot be reached a socket opens uncounted: the caps protect the server, and refusing every
socket while Redis restarts would harm it more.

Addresses are counted as daphne gives them in scope["client"] (the proxy's X-Forwarded-For with
--proxy-headers); IPv6 addresses by their /64 network, which one household or phone usually has
whole.

Nothing here imports a feature app.
"""

import asyncio
import ipaddress
import itertools
import logging
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass

import redis.asyncio
from django.conf import settings

from parley.live.presence import PROCESS_ID

logger = logging.getLogger(__name__)

# For each key: drop expired entries, refuse when at its cap. Then add the entry to every key.
# KEYS: the member's set, the address's set (optional). ARGV: entry, now, expires, ttl, caps...
# Answers 0 when taken, else which key (1: member, 2: address) was full.
_TAKE = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[2])
  local cap = tonumber(ARGV[4 + i])
  if cap > 0 and redis.call('ZCARD', key) >= cap then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[3], ARGV[1])
  redis.call('EXPIRE', key, ARGV[4])
end
return 0
"""

MEMBER, ADDRESS = "member", "address"
_numbers = itertools.count(1)


def address_of(scope: dict) -> str | None:
    """The address a socket's sockets are counted under: IPv4 as is, IPv6 by its /64."""
    client = scope.get("client")
    if not client or not client[0]:
        return None
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])  # not an IP (a unix socket's peer): counted by name
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)


@dataclass(eq=False)
class Slot:
    member_id: int
    address: str | None
    entry: str
    counted: bool = True  # False: taken while Redis was unreachable, nothing to give back


class _LocalCounts:
    def __init__(self):
        self.members: Counter[int] = Counter()
        self.addresses: Counter[str] = Counter()

    async def take(self, slot: Slot, member_cap: int, address_cap: int) -> str | None:
        if member_cap and self.members[slot.member_id] >= member_cap:
            return MEMBER
        if slot.address and address_cap and self.addresses[slot.address] >= address_cap:
            return ADDRESS
        self.members[slot.member_id] += 1
        if slot.address:
            self.addresses[slot.address] += 1
        return None

    async def give_back(self, slot: Slot) -> None:
        self.members[slot.member_id] -= 1
        if self.members[slot.member_id] <= 0:
            del self.members[slot.member_id]
        if slot.address:
            self.addresses[slot.address] -= 1
            if self.addresses[slot.address] <= 0:
                del self.addresses[slot.address]


class _RedisCounts:
    """One per event loop: redis-py's asyncio connections belong to the loop that made them."""

    def __init__(self):
        # Short timeouts: a socket waits for its count, and an unreachable Redis opens it
        # uncounted rather than holding every page's socket back.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=20,
            timeout=5,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        self.redis = redis.asyncio.Redis(connection_pool=pool)
        self.take_script = self.redis.register_script(_TAKE)
        self.slots: set[Slot] = set()
        self.keeper: asyncio.Task | None = None

    @staticmethod
    def keys(slot: Slot) -> list[str]:
        base = f"{settings.REDIS_PREFIX}:sockets"
        keys = [f"{base}:{MEMBER}:{slot.member_id}"]
        if slot.address:
            keys.append(f"{base}:{ADDRESS}:{slot.address}")
        return keys

    async def take(self, slot: Slot, member_cap: int, address_cap: int) -> str | None:
        now, ttl = time.time(), settings.PRESENCE_TTL
        try:
            full = await self.take_script(
                keys=self.keys(slot),
                args=[slot.entry, now, now + ttl, math.ceil(ttl), member_cap, address_cap],
            )
        except Exception:
            logger.warning("Counting sockets in Redis failed; this socket opens uncounted")
            slot.counted = False
            return None
        if full:
            return MEMBER if full == 1 else ADDRESS
        self.slots.add(slot)
        if self.keeper is None or self.keeper.done():
            self.keeper = asyncio.create_task(self._keep())
        return None

    async def give_back(self, slot: Slot) -> None:
        if not slot.counted:
            return
        self.slots.discard(slot)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.keys(slot):
                pipe.zrem(key, slot.entry)
            await pipe.execute()

    async def _keep(self) -> None:
        """Refresh this process's entries while it has any; a failed round is logged and the
        next tries again (entries outlive one missed refresh: TTL is 3 refreshes)."""
        while self.slots:
            await asyncio.sleep(settings.PRESENCE_REFRESH)
            try:
                await self.refresh()
            except Exception:
                logger.exception("Refreshing this process's socket counts failed")

    async def refresh(self) -> None:
        # XX: an entry that expired meanwhile (this process stalled past the TTL) is not
        # written back, which could pass a cap; its socket goes on uncounted.
        ttl = settings.PRESENCE_TTL
        expires = time.time() + ttl
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot in list(self.slots):
                for key in self.keys(slot):
                    pipe.zadd(key, {slot.entry: expires}, xx=True)
                    pipe.expire(key, math.ceil(ttl))
            await pipe.execute()


class SocketCaps:
    def __init__(self):
        self._local = _LocalCounts()
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _RedisCounts] = (
            weakref.WeakKeyDictionary()
        )

    def _backend(self) -> _LocalCounts | _RedisCounts:
        if not settings.REDIS_URL:
            return self._local
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            backend = self._backends[loop] = _RedisCounts()
        return backend

    async def take(self, *, member_id: int, address: str | None) -> tuple[Slot | None, str]:
        """A slot for one more socket, or (None, which cap is full: MEMBER or ADDRESS)."""
        slot = Slot(member_id, address, f"{PROCESS_ID}:{next(_numbers)}")
        full = await self._backend().take(
            slot, settings.SOCKETS_PER_MEMBER, settings.SOCKETS_PER_ADDRESS
        )
        return (None, full) if full else (slot, "")

    async def give_back(self, slot: Slot) -> None:
        await self._backend().give_back(slot)

    async def refresh(self) -> None:
        """Refresh this process's entries now (the keeper does it every PRESENCE_REFRESH)."""
        backend = self._backend()
        if isinstance(backend, _RedisCounts):
            await backend.refresh()


socket_caps = SocketCaps()
