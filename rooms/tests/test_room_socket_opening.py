"""A room socket being opened while the room is busy: nothing is sent before it is accepted."""

import asyncio

import pytest

from rooms import consumers
from rooms.hub import get_hub
from rooms.models import room_group

pytestmark = pytest.mark.django_db(transaction=True)


async def test_presence_news_while_a_socket_is_being_accepted_waits_for_its_own(
    duo, site_socket, monkeypatch
):
    """The hub hands a room's events to a socket from the moment it joins, before the socket is
    accepted; daphne refuses a send before that (it raises), and the socket would lose it."""
    real_arrive = consumers.room_presence.arrive

    async def arrive_while_the_room_announces(room_id, member_id):
        if member_id == duo.bob.pk:
            await get_hub().layer.group_send(
                room_group(room_id), {"type": "room.presence", "html": "<p>early news</p>"}
            )
            await asyncio.sleep(0.3)  # the hub hands it out meanwhile
        await real_arrive(room_id, member_id)

    monkeypatch.setattr(consumers.room_presence, "arrive", arrive_while_the_room_announces)
    ada = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    assert (await ada.connect(timeout=3))[0]
    bob = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.bob)

    connected, _ = await bob.connect(timeout=3)  # an early send came out before the accept

    assert connected
    frames = [await bob.receive_from(timeout=3)]
    while "2 online" not in frames[-1]:  # Bob's own arrival, announced to everybody
        frames.append(await bob.receive_from(timeout=3))
    assert not any("early news" in frame for frame in frames)
    await ada.disconnect()
    await bob.disconnect()
