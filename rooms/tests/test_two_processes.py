"""Two daphne processes sharing Redis: one room, a member on each, live both ways."""

import asyncio
import json
import re

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache

from parley.tests.live_server import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def two_servers():
    assert settings.REDIS_URL, "two processes only share a room through Redis"
    cache.clear()
    servers = [LiveServer.for_tests(REDIS_URL=settings.REDIS_URL) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


async def open_room(server: LiveServer, room, cookie: bytes):
    socket = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/rooms/{room.pk}/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie.decode()},
    )
    await socket.send(json.dumps({"action": "resume", "after": 0}))
    return socket


async def frame_matching(socket, pattern: str, wait: float = 10) -> str:
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.recv()
            if re.search(pattern, frame):
                return frame


async def test_members_on_two_processes_see_each_other_online_and_chat_live(
    two_servers, duo, session_cookie_factory
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    first, second = two_servers
    ada_socket = await open_room(
        first, room, await database_sync_to_async(session_cookie_factory)(ada)
    )
    bob_socket = await open_room(
        second, room, await database_sync_to_async(session_cookie_factory)(bob)
    )

    # Presence is shared: each process knows the other's member is online.
    await frame_matching(ada_socket, r"2 online</strong>:\s*ada, bob")
    await frame_matching(bob_socket, r"2 online</strong>:\s*ada, bob")

    await ada_socket.send(json.dumps({"action": "send", "body": "from the first", "key": "a"}))
    frame = await frame_matching(bob_socket, "data-seq")
    assert 'data-seq="1"' in frame
    assert "from the first" in frame

    await bob_socket.send(json.dumps({"action": "send", "body": "from the second", "key": "b"}))
    frame = await frame_matching(ada_socket, 'data-seq="2"')
    assert "from the second" in frame

    # Bob leaves the second process; the first one tells Ada.
    await bob_socket.close()
    await frame_matching(ada_socket, r"1 online</strong>:\s*ada")
    await ada_socket.close()


async def test_a_sidebar_in_one_process_follows_what_a_room_page_in_the_other_has_read(
    two_servers, duo, session_cookie_factory
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    first, second = two_servers
    bob_cookie = await database_sync_to_async(session_cookie_factory)(bob)
    sidebar = await websockets.connect(
        f"ws://127.0.0.1:{first.port}/ws/member/",
        origin=f"http://127.0.0.1:{first.port}",
        additional_headers={"Cookie": bob_cookie.decode()},
    )
    badge = rf'<span id="unread-{room.pk}" class="unread" hx-swap-oob="true">'
    await frame_matching(sidebar, badge + "</span>")  # what the socket says as it opens
    ada_socket = await open_room(
        first, room, await database_sync_to_async(session_cookie_factory)(ada)
    )

    await ada_socket.send(json.dumps({"action": "send", "body": "are you there?", "key": "a"}))
    await frame_matching(sidebar, badge + r"<span class=\"visually-hidden\">, </span>1<")

    # Bob reads it in a page served by the other process: his sidebar here drops the count.
    bob_socket = await open_room(second, room, bob_cookie)
    await frame_matching(bob_socket, "are you there?")
    await frame_matching(sidebar, badge + "</span>")
    for socket in (bob_socket, ada_socket, sidebar):
        await socket.close()
