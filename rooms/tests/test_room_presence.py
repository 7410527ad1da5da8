"""Who has a room open, when a process dies without closing its sockets."""

import asyncio
import time

import pytest
from django.conf import settings

from rooms.presence import room_presence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture(autouse=True)
def empty_presence_store():
    client = room_presence._sync_redis()
    for key in client.scan_iter(f"{room_presence.index}*"):
        client.delete(key)


async def presence_line(socket) -> str:
    async with asyncio.timeout(4):
        while True:
            frame = await socket.receive_from(timeout=4)
            if 'id="room-presence"' in frame:
                return " ".join(frame.split())


async def test_a_member_whose_process_died_drops_out_of_the_room_after_the_sweep(duo, site_socket):
    assert settings.REDIS_URL
    # Ada's page is served by a process that has just been killed: her entry, refreshed for the
    # last time almost a TTL ago, expires in a moment and nobody will refresh it.
    client = room_presence._sync_redis()
    key = str(duo.room.pk)
    client.zadd(room_presence.zset(key), {f"{duo.ada.pk}:killed-process": time.time() + 2})
    client.sadd(room_presence.index, key)
    socket = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.bob)
    assert (await socket.connect())[0]
    assert "2 online</strong>: ada, bob" in await presence_line(socket)

    await asyncio.sleep(2.1)
    await room_presence.sweep()

    assert "1 online</strong>: bob" in await presence_line(socket)
    assert client.zcard(room_presence.zset(key)) == 1  # Bob's own entry, nobody else's
    await socket.disconnect()
