"""Who has a room open, across every server process.

A member is online in a room while at least one of their sockets to it is open, in any process.
The counting, sharing and expiry are parley.live.presence's (a killed process's members drop
out within PRESENCE_TTL + PRESENCE_SWEEP seconds); this module names the store for rooms and
tells a room, once per PRESENCE_DELAY per process, who is online in it now.
"""

from channels.db import database_sync_to_async

from parley.live.presence import Presence
from rooms import selectors
from rooms.hub import get_hub
from rooms.models import Room, room_group

PRESENCE_DELAY = 0.25


async def _changed_elsewhere(key: str, member_ids: set[int]) -> None:
    room_presence_changed(int(key))


room_presence = Presence("rooms", on_gone=_changed_elsewhere, on_back=_changed_elsewhere)


def _fragment(room_id: int, online: set[int]) -> str | None:
    room = Room.objects.filter(pk=room_id).first()
    return None if room is None else selectors.presence_fragment(room, online)


def room_presence_changed(room_id: int) -> None:
    """Tell everybody in the room who is online now: once per room per PRESENCE_DELAY in this
    process, however many sockets came and went, rendered once for all."""

    async def announce():
        online = await room_presence.members(room_id)
        html = await database_sync_to_async(_fragment)(room_id, online)
        if html is not None:
            await get_hub().layer.group_send(
                room_group(room_id), {"type": "room.presence", "html": html}
            )

    get_hub().soon(("presence", room_id), PRESENCE_DELAY, announce)
