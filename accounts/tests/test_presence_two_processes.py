"""Member presence across two daphne processes sharing Redis, and a process killed with -9."""

import asyncio
import re
import signal
import time

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import Contact
from accounts.presence import member_presence, online_ids
from parley.tests.live_server import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

# Short for the test; production keeps the defaults, 45 s, 15 s and 5 s (parley/settings.py).
TTL, REFRESH, SWEEP = 4, 1, 1


@pytest.fixture
def two_servers():
    assert settings.REDIS_URL, "two processes only share presence through Redis"
    client = member_presence._sync_redis()
    for key in client.scan_iter(f"{member_presence.index}*"):
        client.delete(key)
    timings = {"PRESENCE_TTL": str(TTL), "PRESENCE_REFRESH": str(REFRESH)}
    servers = [
        LiveServer.for_tests(REDIS_URL=settings.REDIS_URL, PRESENCE_SWEEP=str(SWEEP), **timings)
        for _ in range(2)
    ]
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def contacts(user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    Contact.objects.create(member=ada, other=bob)
    Contact.objects.create(member=bob, other=ada)
    return ada, bob


async def member_socket(server: LiveServer, cookie: bytes):
    return await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/member/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie.decode()},
    )


async def presence_of(socket, member, wait: float) -> str:
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.recv()
            if f"presence-of-{member.pk}" in frame:
                return re.search(r'<span class="presence__text">(.*?)</span>', frame).group(1)


async def test_a_member_of_a_killed_process_goes_offline_for_contacts_on_the_other_process(
    two_servers, contacts, session_cookie_factory
):
    first, second = two_servers
    ada, bob = contacts
    ada_socket = await member_socket(
        first, await database_sync_to_async(session_cookie_factory)(ada)
    )
    bob_socket = await member_socket(
        second, await database_sync_to_async(session_cookie_factory)(bob)
    )

    # Bob's page opened on the other process: Ada, on the first, sees him come online; and
    # each is online for the other's pages (the views ask the same store).
    assert await presence_of(ada_socket, bob, wait=5) == "Online"
    assert online_ids({ada.pk, bob.pk}) == {ada.pk, bob.pk}

    second.process.send_signal(signal.SIGKILL)
    second.process.wait(timeout=5)
    killed_at = time.monotonic()

    # Nothing closed Bob's socket: the first process's sweep finds his entry expired.
    assert await presence_of(ada_socket, bob, wait=TTL + SWEEP + 3) == "Last seen just now"
    assert time.monotonic() - killed_at <= TTL + SWEEP + 1
    assert online_ids({ada.pk, bob.pk}) == {ada.pk}
    await database_sync_to_async(bob.refresh_from_db)()
    assert bob.last_seen_at is not None
    await ada_socket.close()
    bob_socket.transport.abort()  # its server is gone; no closing handshake to wait for
