"""Against a real daphne (its 1 MiB message cap, Twisted's buffer, the bound on unsent bytes at
its default): a page that resumes far behind, reading slowly through a small receive buffer,
gets every message without its socket being aborted."""

import asyncio
import json
import re
import socket

import pytest
import websockets
from channels.db import database_sync_to_async
from django.core.cache import cache

from parley.tests.live_server import LiveServer
from rooms.models import Message, Room

# A real daphne process needs a database it can open too: PostgreSQL's, in that configuration.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

BODY = "&" * 4000  # the longest message, escaping to some 20 KB
BEHIND = 600  # some 12 MB: more than the kernel's buffers and the bound together hold
MIB = 1024 * 1024


@pytest.fixture
def server():
    cache.clear()
    server = LiveServer.for_tests()  # SOCKET_UNSENT_LIMIT at its default, 1 MiB
    yield server
    server.stop()


def fill(room: Room, author, count: int) -> None:
    Message.objects.bulk_create(
        [Message(room=room, author=author, seq=n, body=BODY) for n in range(1, count + 1)]
    )
    Room.objects.filter(pk=room.pk).update(last_seq=count)


def slow_socket(port: int) -> socket.socket:
    """A connection that takes little at a time: a slow network, or a busy page."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_slow_page_far_behind_gets_everything_without_its_socket_being_aborted(
    server, duo, session_cookie_factory
):
    await database_sync_to_async(fill)(duo.room, duo.ada, BEHIND)
    cookie = (await database_sync_to_async(session_cookie_factory)(duo.bob)).decode()
    page = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/rooms/{duo.room.pk}/",
        sock=slow_socket(server.port),
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie},
        max_size=MIB,  # daphne's own cap: no frame may be bigger
        max_queue=1,  # what the page has not handled is not read off the network
    )
    await page.send(json.dumps({"action": "resume", "after": 0}))

    shown: list[int] = []
    frames = 0
    async with asyncio.timeout(120):
        while not shown or shown[-1] < BEHIND:
            frame = await page.recv()  # raises if the server closed or aborted the socket
            found = [int(n) for n in re.findall(r'data-seq="(\d+)"', frame)]
            if found:
                frames += 1
                shown += found
                assert f'id="room-seq" name="after" value="{found[-1]}"' in frame
                await asyncio.sleep(0.05)  # the page takes its time over each frame

    assert shown == list(range(1, BEHIND + 1))
    assert frames > 40
    assert "stopped reading" not in server.tail(400)
    # Still open, and live: a new message arrives on the same socket.
    await page.send(json.dumps({"action": "send", "body": "caught up", "key": "k1"}))
    async with asyncio.timeout(10):
        while "caught up" not in await page.recv():
            pass
    await page.close()
