"""A room's events, handed to the room sockets and sidebars open in this process.

Built on the process's hub (parley.live.hub), which subscribes to each room's group once and
hands this module every event of the room. What is particular to rooms lives here: messages go
to the sockets in seq order, each once (held when they come early, read from the database when
one never comes); read marks are written in batches; sidebars' unread counts follow.
"""

import asyncio
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async

from parley.live.hub import Hub
from parley.live.hub import get_hub as get_live_hub
from rooms import fragments, selectors, services
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
# A gap longer than this (after a long outage of the channel layer, say) is not read into the
# hub, where every message of it would be rendered and held at once: the room's sockets are
# told to catch up instead, and each reads what it lacks a page at a time, at its page's pace.
FILL_LIMIT = 500


class RoomSocket(Protocol):
    member_id: int

    async def room_event(self, event: dict) -> None: ...


class _Room:
    """A room open in this process: the hub's subscriber for the room's group."""

    def __init__(self, hub: "RoomHub", room_id: int, group: str):
        self.hub = hub
        self.room_id = room_id
        self.group = group
        self.sockets: set[RoomSocket] = set()  # room pages
        self.watchers: set = set()  # sidebars: they only want unread counts
        self.delivered: int | None = None  # the newest seq handed to the sockets, in order
        self.held: dict[int, dict] = {}  # messages that came before an earlier one
        self.releasing = False  # a release is handing out held messages (one at a time)

    @property
    def idle(self) -> bool:
        return not self.sockets and not self.watchers

    async def hub_event(self, event: dict) -> None:
        await self.hub.dispatch(self, event)

    async def subscribed(self, late: bool) -> None:
        if late:
            await self.hub.catch_up(self)


class RoomHub:
    """One per event loop (one per server process)."""

    def __init__(self):
        self.live: Hub = get_live_hub()
        self.layer = self.live.layer
        self.rooms: dict[int, _Room] = {}
        self.reads: dict[int, dict[int, int]] = {}  # room -> member -> newest seq shown

    def _room(self, room_id: int, group: str) -> tuple[_Room, object]:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = _Room(self, room_id, group)
        return room, self.live.subscribe(group, room)

    async def _unsubscribe_if_idle(self, room: _Room) -> None:
        if room.idle and self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]
            await self.live.unsubscribe(room.group)

    async def join(self, room_id: int, group: str, socket: RoomSocket) -> None:
        """Subscribe a room socket.

        Returns once this process is subscribed (or has tried for a while: what is committed
        before a late subscription is read from the database when it comes).
        """
        room, subscription = self._room(room_id, group)
        room.sockets.add(socket)
        await self.live.ready(subscription)

    async def leave(self, room_id: int, socket: RoomSocket) -> None:
        room = self.rooms.get(room_id)
        if room is None or socket not in room.sockets:
            return
        room.sockets.discard(socket)
        await self._unsubscribe_if_idle(room)

    async def watch(self, room_id: int, group: str, watcher) -> None:
        """Subscribe a sidebar to a room's unread count (`watcher.member_id`, `watcher.push`:
        a member socket, which holds what comes before it has caught its page up)."""
        room, subscription = self._room(room_id, group)
        room.watchers.add(watcher)
        await self.live.ready(subscription)

    async def unwatch(self, room_id: int, watcher) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.watchers.discard(watcher)
            await self._unsubscribe_if_idle(room)

    def soon(self, key: object, delay: float, work) -> None:
        self.live.soon(key, delay, work)

    def send_soon(self, group: str, event: dict) -> None:
        self.live.send_soon(group, event)

    def read(self, room_id: int, member_id: int, seq: int) -> None:
        """Note that a room page showed `member_id` everything up to `seq`; written soon."""
        reads = self.reads.setdefault(room_id, {})
        if seq > reads.get(member_id, 0):
            reads[member_id] = seq
            self.soon(("read", room_id), READ_DELAY, lambda: self._write_reads(room_id))

    async def _write_reads(self, room_id: int) -> None:
        reads = self.reads.pop(room_id, {})
        if reads:
            await database_sync_to_async(services.room_mark_read_many)(room_id=room_id, reads=reads)
            # Sidebars in every process recount: a member's sidebar may be in another process
            # than the room page that read the messages.
            await self.layer.group_send(room_group(room_id), {"type": "room.read"})

    async def dispatch(self, room: _Room, event: dict) -> None:
        if event["type"] == "room.message":
            await self._sequence(room, event)
        elif event["type"] == "room.read":
            if room.watchers:
                # The same key as after a message: a recount already due runs after this
                # write anyway, so one is enough.
                self.soon(("unread", room.room_id), 0, lambda: self._unread(room))
        else:
            await self._hand_out(room, event)

    async def catch_up(self, room: _Room) -> None:
        """After a subscription that came late (or a listener that could not read for a while):
        what was announced meanwhile never came, so it comes from the database."""
        last = await database_sync_to_async(selectors.last_seq)(room.room_id)
        if room.delivered is None:
            # The hub has handed out nothing yet; each socket reads what it lacks itself.
            room.delivered = last
            await self._hand_out(room, {"type": "room.catch_up"})
        elif last > room.delivered:
            logger.warning("Room %s: messages up to %s came from the database", room.room_id, last)
            await self._fill(room, upto=last)

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
            self.soon(("gap", room.room_id), GAP_WAIT, lambda: self._fill(room))
        self.soon(("tail", room.room_id), TAIL_CHECK, lambda: self._tail(room))
        if room.watchers:
            self.soon(("unread", room.room_id), UNREAD_DELAY, lambda: self._unread(room))

    async def _release(self, room: _Room) -> None:
        """Hand out the held messages that follow the last delivered one.

        One release at a time per room: a delivery may wait on a slow socket, and a second
        release meanwhile (a fill, a tail check) would hand n+1 to some sockets before n. The
        one running goes on with whatever was added while it waited.
        """
        if room.releasing:
            return
        room.releasing = True
        try:
            while room.delivered + 1 in room.held:
                room.delivered += 1
                await self._hand_out(room, room.held.pop(room.delivered))
        finally:
            room.releasing = False

    async def _fill(self, room: _Room, upto: int | None = None) -> None:
        """Read the messages missing before those held (or up to `upto`) from the database."""
        if room.delivered is None:
            return
        if upto is None:
            if not room.held:
                return
            upto = min(room.held) - 1
        if upto - room.delivered > FILL_LIMIT:
            logger.warning(
                "Room %s: %s messages missing, more than the hub reads; its sockets read them",
                room.room_id,
                upto - room.delivered,
            )
            room.delivered = upto
            for seq in [seq for seq in room.held if seq <= upto]:
                del room.held[seq]
            await self._hand_out(room, {"type": "room.catch_up"})
            await self._release(room)  # what came after the gap, held meanwhile
            return
        for event in await database_sync_to_async(selectors.message_events)(
            room.room_id, room.delivered, upto
        ):
            if event["seq"] > room.delivered:
                room.held.setdefault(event["seq"], event)
        await self._release(room)

    async def _tail(self, room: _Room) -> None:
        last = await database_sync_to_async(selectors.last_seq)(room.room_id)
        if room.delivered is not None and last > room.delivered:
            logger.warning("Room %s: messages up to %s came from the database", room.room_id, last)
            await self._fill(room, upto=last)

    async def _unread(self, room: _Room) -> None:
        """Tell each sidebar watching `room` here its member's unread count: one query for all,
        one render per distinct count."""
        watchers = list(room.watchers)
        counts = await database_sync_to_async(selectors.unread_counts)(
            room.room_id, {watcher.member_id for watcher in watchers}
        )
        badges = {n: fragments.unread(room.room_id, n) for n in set(counts.values())}
        for watcher in watchers:
            # A sidebar that stopped watching meanwhile (its member left the room) may have no
            # row for it any more.
            if watcher.member_id in counts and watcher in room.watchers:
                try:
                    await watcher.push(badges[counts[watcher.member_id]])
                except Exception:
                    # One broken socket must not cost the others their count.
                    logger.exception("Sending an unread count to a sidebar failed")


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub]" = weakref.WeakKeyDictionary()


def get_hub() -> RoomHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = RoomHub()
    return hub
