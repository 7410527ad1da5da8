"""Per-process fan-out of a room's events to the room sockets open in this process.

The stock Channels path gives every socket a channel of its own and delivers a room message once
per member through the channel layer, then hops into a thread before each handler. Here each
process subscribes to a room's group once, with one channel, and hands every event it receives
to its local sockets directly: a message costs the layer one delivery per process, not one per
member, and each socket one write.
"""

import asyncio
import logging
import weakref
from collections import Counter, deque
from typing import Protocol

from channels.layers import get_channel_layer

from rooms.models import room_group

logger = logging.getLogger(__name__)

# Unread counts in sidebars follow a room's messages at most this often, per process; what
# room pages have shown is written as read before that, in one go per room.
UNREAD_DELAY = 1.0
READ_DELAY = 0.5
# A message that arrives before an earlier one (posted in another process, say) waits this long
# for it; then the missing ones are read from the database, once for the whole process.
GAP_WAIT = 0.1
# After a room's last message, the database is asked once whether any message never came (a
# channel layer may drop some), so a loss at the end of a burst does not wait for the next one.
TAIL_CHECK = 1.0


class RoomSocket(Protocol):
    member_id: int

    async def room_event(self, event: dict) -> None: ...


class _Room:
    def __init__(self, room_id: int, group: str):
        self.room_id = room_id
        self.group = group
        self.sockets: set[RoomSocket] = set()  # room pages: they count as online
        self.members: Counter[int] = Counter()
        self.watchers: set = set()  # sidebars: they only want unread counts
        self.channel: str | None = None
        self.listener: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self.delivered: int | None = None  # the newest seq handed to the sockets, in order
        self.held: dict[int, dict] = {}  # messages that came before an earlier one

    @property
    def idle(self) -> bool:
        return not self.sockets and not self.watchers


class RoomHub:
    """One per event loop (one per server process)."""

    def __init__(self):
        self.rooms: dict[int, _Room] = {}
        self.pending: set[object] = set()
        self.tasks: set[asyncio.Task] = set()  # held here so that none is collected mid-run
        self.reads: dict[int, dict[int, int]] = {}  # room -> member -> newest seq shown
        self.layer = get_channel_layer()
        self.loop = asyncio.get_running_loop()
        self.outbox: deque[tuple[str, dict]] = deque()
        self.sender: asyncio.Task | None = None

    async def _subscribed(self, room_id: int, group: str) -> _Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = _Room(room_id, group)
            room.listener = asyncio.create_task(self._listen(room))
        return room

    async def _unsubscribe_if_idle(self, room: _Room) -> None:
        if room.idle and self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]
            room.listener.cancel()
            if room.channel is not None:
                await self.layer.group_discard(room.group, room.channel)

    async def join(self, room_id: int, group: str, socket: RoomSocket) -> bool:
        """Subscribe a room socket; True when its member was not online here before.

        Returns once this process is subscribed, so anything committed after that is delivered.
        """
        room = await self._subscribed(room_id, group)
        room.sockets.add(socket)
        room.members[socket.member_id] += 1
        await room.ready.wait()
        return room.members[socket.member_id] == 1

    async def leave(self, room_id: int, socket: RoomSocket) -> bool:
        """Unsubscribe a room socket; True when that was its member's last socket here."""
        room = self.rooms.get(room_id)
        if room is None or socket not in room.sockets:
            return False
        room.sockets.discard(socket)
        room.members[socket.member_id] -= 1
        last = room.members[socket.member_id] <= 0
        if last:
            del room.members[socket.member_id]
        await self._unsubscribe_if_idle(room)
        return last

    async def watch(self, room_id: int, group: str, watcher) -> None:
        """Subscribe a sidebar to a room's unread count (`watcher.member_id`, `watcher.send`)."""
        room = await self._subscribed(room_id, group)
        room.watchers.add(watcher)
        await room.ready.wait()

    async def unwatch(self, room_id: int, watcher) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.watchers.discard(watcher)
            await self._unsubscribe_if_idle(room)

    def soon(self, key: object, delay: float, work) -> None:
        """Run `work()` once, `delay` seconds after the first call for `key` in that time."""
        if key in self.pending:
            return
        self.pending.add(key)

        async def run():
            await asyncio.sleep(delay)
            self.pending.discard(key)
            try:
                await work()
            except Exception:
                logger.exception("Deferred room work %r failed", key)

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_soon(self, group: str, event: dict) -> None:
        """Send `event` to `group` through the channel layer, from any thread, without waiting.

        Events go out one after another in the order of the calls: the database thread announces
        each message as it commits, so a room's messages leave this process in seq order.
        """
        self.loop.call_soon_threadsafe(self._post, group, event)

    def _post(self, group: str, event: dict) -> None:
        self.outbox.append((group, event))
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send_outbox())

    async def _send_outbox(self) -> None:
        while self.outbox:
            group, event = self.outbox.popleft()
            try:
                await self.layer.group_send(group, event)
            except Exception:
                # A message is saved all the same: sockets read it from the database when the
                # room's next message arrives or when they open again.
                logger.exception("Announcing %s to %s failed", event.get("type"), group)

    def read(self, room_id: int, member_id: int, seq: int) -> None:
        """Note that a room page showed `member_id` everything up to `seq`; written soon."""
        reads = self.reads.setdefault(room_id, {})
        if seq > reads.get(member_id, 0):
            reads[member_id] = seq
            self.soon(("read", room_id), READ_DELAY, lambda: self._write_reads(room_id))

    async def _write_reads(self, room_id: int) -> None:
        from channels.db import database_sync_to_async

        from rooms import services

        reads = self.reads.pop(room_id, {})
        if reads:
            await database_sync_to_async(services.room_mark_read_many)(room_id=room_id, reads=reads)
            # Sidebars in every process recount: a member's sidebar may be in another process
            # than the room page that read the messages.
            await self.layer.group_send(room_group(room_id), {"type": "room.read"})

    def online_here(self, room_id: int) -> set[int]:
        room = self.rooms.get(room_id)
        return set(room.members) if room else set()

    def local_rooms(self) -> dict[int, set[int]]:
        return {room_id: set(room.members) for room_id, room in self.rooms.items()}

    async def _listen(self, room: _Room) -> None:
        try:
            room.channel = await self.layer.new_channel()
            await self.layer.group_add(room.group, room.channel)
        finally:
            room.ready.set()
        while True:
            try:
                event = await self.layer.receive(room.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Keep listening; whatever was missed meanwhile comes from the database.
                logger.exception("Room %s: reading from the channel layer failed", room.room_id)
                await asyncio.sleep(1)
                self.soon(("tail", room.room_id), 0, lambda r=room: self._tail(r))
                continue
            if event["type"] == "room.message":
                await self._sequence(room, event)
            elif event["type"] == "room.read":
                if room.watchers:
                    # The same key as after a message: a recount already due runs after this
                    # write anyway, so one is enough.
                    self.soon(("unread", room.room_id), 0, lambda r=room: self._unread(r))
            else:
                await self._hand_out(room, event)

    async def _hand_out(self, room: _Room, event: dict) -> None:
        for socket in list(room.sockets):
            try:
                await socket.room_event(event)
            except Exception:
                # One broken socket must not cost the others their message.
                logger.exception("Delivering %s to a room socket failed", event.get("type"))

    async def _sequence(self, room: _Room, event: dict) -> None:
        """Hand messages to the sockets in seq order, each once."""
        seq = event["seq"]
        if room.delivered is None:
            # Sockets catch up to here themselves (they say what they have when they open).
            room.delivered = seq - 1
        if seq <= room.delivered:
            return
        room.held[seq] = event
        await self._release(room)
        if room.held:
            self.soon(("gap", room.room_id), GAP_WAIT, lambda r=room: self._fill(r))
        self.soon(("tail", room.room_id), TAIL_CHECK, lambda r=room: self._tail(r))
        if room.watchers:
            self.soon(("unread", room.room_id), UNREAD_DELAY, lambda r=room: self._unread(r))

    async def _release(self, room: _Room) -> None:
        while room.delivered + 1 in room.held:
            room.delivered += 1
            await self._hand_out(room, room.held.pop(room.delivered))

    async def _fill(self, room: _Room, upto: int | None = None) -> None:
        """Read the messages missing before those held (or up to `upto`) from the database."""
        from channels.db import database_sync_to_async

        from rooms import selectors

        if room.delivered is None:
            return
        if upto is None:
            if not room.held:
                return
            upto = min(room.held) - 1
        for event in await database_sync_to_async(selectors.message_events)(
            room.room_id, room.delivered, upto
        ):
            room.held.setdefault(event["seq"], event)
        await self._release(room)

    async def _tail(self, room: _Room) -> None:
        from channels.db import database_sync_to_async

        from rooms import selectors

        last = await database_sync_to_async(selectors.last_seq)(room.room_id)
        if room.delivered is not None and last > room.delivered:
            logger.warning("Room %s: messages up to %s came from the database", room.room_id, last)
            await self._fill(room, upto=last)

    async def _unread(self, room: _Room) -> None:
        """Tell each sidebar watching `room` here its member's unread count: one query for all,
        one render per distinct count."""
        from channels.db import database_sync_to_async

        from rooms import fragments, selectors

        watchers = list(room.watchers)
        counts = await database_sync_to_async(selectors.unread_counts)(
            room.room_id, {watcher.member_id for watcher in watchers}
        )
        badges = {n: fragments.unread(room.room_id, n) for n in set(counts.values())}
        for watcher in watchers:
            if watcher.member_id in counts:
                await watcher.send(text_data=badges[counts[watcher.member_id]])


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub]" = weakref.WeakKeyDictionary()


def get_hub() -> RoomHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = RoomHub()
    return hub
