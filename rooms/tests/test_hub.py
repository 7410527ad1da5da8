"""The room hub's own promises, on whichever channel layer is configured."""

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache

from rooms import hub as hub_module
from rooms import selectors, services
from rooms.hub import get_hub


async def test_announcements_made_on_another_thread_go_out_in_the_order_they_were_made():
    # The database thread hands each message to the hub as it commits and moves on; the room's
    # sockets rely on the announcements leaving the process in that (seq) order.
    hub, layer = get_hub(), get_channel_layer()
    group = f"hub-order-{uuid.uuid4().hex}"
    channel = await layer.new_channel()
    await layer.group_add(group, channel)

    def commit_many():
        for seq in range(1, 101):
            hub.send_soon(group, {"type": "room.message", "seq": seq})

    await asyncio.to_thread(commit_many)
    received = [(await asyncio.wait_for(layer.receive(channel), 5))["seq"] for _ in range(100)]
    await layer.group_discard(group, channel)

    assert received == list(range(1, 101))


class SlowFirstWrite:
    """A room socket whose first write waits on the network before it lands."""

    member_id = 0

    def __init__(self):
        self.seen: list[int] = []
        self.writes = 0

    async def room_event(self, event: dict) -> None:
        self.writes += 1
        if self.writes == 1:
            await asyncio.sleep(0.3)
        self.seen.append(event["seq"])


@pytest.mark.django_db(transaction=True)
async def test_a_fill_while_a_slow_socket_takes_a_message_does_not_overtake_that_message(duo):
    def post_two():
        for body in ("first", "second"):
            cache.delete(f"parley:flood:{duo.ada.pk}")
            services.message_post(
                room=duo.room, author=duo.ada, body=body, announce=lambda group, event: None
            )

    await database_sync_to_async(post_two)()
    hub, socket = get_hub(), SlowFirstWrite()
    await hub.join(duo.room.pk, duo.room.group, socket)
    room = hub.rooms[duo.room.pk]
    (first,) = await database_sync_to_async(selectors.message_events)(duo.room.pk, 0, 1)

    delivery = asyncio.create_task(hub._sequence(room, first))
    await asyncio.sleep(0.05)  # message 1 is on its way to the slow socket
    await hub._fill(room, upto=2)  # a tail check finds message 2 in the database meanwhile
    await delivery

    assert socket.seen == [1, 2]
    await hub.leave(duo.room.pk, socket)


class Recording:
    """A room socket that keeps what the hub hands it."""

    member_id = 0

    def __init__(self):
        self.events: list[tuple[str, int | None]] = []

    async def room_event(self, event: dict) -> None:
        self.events.append((event["type"], event.get("seq")))


@pytest.mark.django_db(transaction=True)
async def test_a_gap_too_long_to_hold_is_read_by_the_sockets_themselves(duo, monkeypatch):
    # After a long outage of the channel layer the hub would read, render and hold every
    # message posted meanwhile at once; past FILL_LIMIT it tells its sockets to catch up
    # instead (each reads a page at a time: rooms/tests/test_catch_up_frames.py).
    monkeypatch.setattr(hub_module, "FILL_LIMIT", 3)

    def post(bodies):
        for body in bodies:
            cache.delete(f"parley:flood:{duo.ada.pk}")
            services.message_post(
                room=duo.room, author=duo.ada, body=body, announce=lambda group, event: None
            )

    await database_sync_to_async(post)(["one", "two", "three", "four", "five"])
    hub, socket = get_hub(), Recording()
    await hub.join(duo.room.pk, duo.room.group, socket)
    room = hub.rooms[duo.room.pk]
    room.delivered = 0  # the hub had handed out nothing since the socket opened at seq 0

    await hub._fill(room, upto=5)
    assert socket.events == [("room.catch_up", None)]
    assert room.delivered == 5

    await database_sync_to_async(post)(["six", "seven"])
    await hub._fill(room, upto=7)  # a gap the hub may hold: it hands the messages out itself
    assert socket.events[1:] == [("room.message", 6), ("room.message", 7)]
    await hub.leave(duo.room.pk, socket)
