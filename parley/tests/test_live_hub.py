"""The process hub (parley.live.hub) when the channel layer misbehaves, through real sockets."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from parley.live import hub as live_hub
from rooms import services

pytestmark = pytest.mark.django_db(transaction=True)


async def frame_with(socket, text: str, wait: float = 5) -> str:
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.receive_from(timeout=wait)
            if text in frame:
                return frame


async def test_a_room_whose_first_subscription_fails_is_subscribed_later_and_misses_nothing(
    duo, site_socket, monkeypatch
):
    layer = get_channel_layer()
    real_group_add = layer.group_add
    down = asyncio.Event()
    down.set()
    attempts = []

    async def flaky_group_add(group, channel):
        if group == duo.room.group and down.is_set():
            attempts.append(group)
            raise ConnectionError("the channel layer is down")
        return await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", flaky_group_add)
    monkeypatch.setattr(live_hub, "SUBSCRIBE_WAIT", 0.05)
    await database_sync_to_async(services.message_post)(
        room=duo.room, author=duo.bob, body="before the page opened"
    )
    socket = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    assert (await socket.connect())[0]
    await socket.send_json_to({"action": "resume", "after": 0})
    await frame_with(socket, "before the page opened")

    # Posted while this process is still not subscribed: the announcement reaches nobody here.
    await database_sync_to_async(services.message_post)(
        room=duo.room, author=duo.bob, body="while the layer was down"
    )
    down.clear()  # the layer is back; the hub's next attempt subscribes

    frame = await frame_with(socket, "while the layer was down")
    assert 'data-seq="2"' in frame
    assert attempts
    # And from now on messages come live.
    await database_sync_to_async(services.message_post)(
        room=duo.room, author=duo.bob, body="after it came back"
    )
    assert 'data-seq="3"' in await frame_with(socket, "after it came back")
    await socket.disconnect()
