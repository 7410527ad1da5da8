"""The room hub's own promises, on whichever channel layer is configured."""

import asyncio
import uuid

from channels.layers import get_channel_layer

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
