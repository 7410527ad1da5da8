"""Member presence across two daphne processes sharing Redis, and a process killed with -9."""

import asyncio
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import Contact, ContactRequest
from accounts.presence import member_presence, online_ids
from parley.tests.live_server import LiveServer
from rooms import selectors as room_selectors

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
    # A member socket opens with each contact's presence as it is then.
    assert await presence_of(ada_socket, bob, wait=5) == "Offline"
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


class Browser:
    """What a member's browser does over HTTP against one server: a session cookie, the CSRF
    cookie and token a page hands out, and form posts with them."""

    def __init__(self, server: LiveServer, cookie: bytes):
        self.base = f"http://127.0.0.1:{server.port}"
        self.cookies = dict(part.split("=", 1) for part in cookie.decode().split("; "))

    def _open(self, request) -> int:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        opener = urllib.request.build_opener(_NoRedirects)
        try:
            response = opener.open(request, timeout=10)
        except urllib.error.HTTPError as answer:
            response = answer
        for header in response.headers.get_all("Set-Cookie") or []:
            name, value = header.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response.status

    def post(self, path: str, data: dict[str, str] | None = None) -> int:
        if "csrftoken" not in self.cookies:
            assert self._open(urllib.request.Request(self.base + "/contacts/")) == 200
        request = urllib.request.Request(
            self.base + path,
            data=urllib.parse.urlencode(data or {}).encode(),
            headers={"X-CSRFToken": self.cookies["csrftoken"]},
            method="POST",
        )
        return self._open(request)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer to a form post; the test reads its status, not where it goes."""

    def redirect_request(self, *args, **kwargs):
        return None


async def frame_with(socket, text: str, wait: float = 10) -> str:
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.recv()
            if text in frame:
                return frame


async def room_socket(server: LiveServer, room, cookie: bytes):
    socket = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/rooms/{room.pk}/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie.decode()},
    )
    await socket.send('{"action": "resume", "after": 0}')
    return socket


async def test_a_request_its_answer_and_direct_messages_cross_between_two_processes(
    two_servers, user_factory, session_cookie_factory
):
    first, second = two_servers
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    ada_cookie = await database_sync_to_async(session_cookie_factory)(ada)
    bob_cookie = await database_sync_to_async(session_cookie_factory)(bob)
    ada_socket = await member_socket(first, ada_cookie)
    bob_socket = await member_socket(second, bob_cookie)

    # Ada asks on the first process; Bob's page on the second shows it at once.
    ada_http, bob_http = Browser(first, ada_cookie), Browser(second, bob_cookie)
    assert await asyncio.to_thread(ada_http.post, "/people/bob/request/") == 302
    await frame_with(bob_socket, "Ada</a> would like to be your contact.")

    # Bob accepts on the second; Ada's list, on the first, gains him, online.
    pending = await database_sync_to_async(ContactRequest.objects.get)(sender=ada, recipient=bob)
    assert await asyncio.to_thread(bob_http.post, f"/contacts/requests/{pending.pk}/accept/") == 302
    frame = await frame_with(ada_socket, 'id="sidebar-contacts"')
    assert "Bob" in frame
    assert f"presence-of-{bob.pk}" in frame
    assert re.search(rf'presence--online presence-of-{bob.pk}"', frame)

    # Their direct conversation is live both ways across the processes.
    room = await database_sync_to_async(room_selectors.direct_room)(ada, bob)
    ada_room = await room_socket(first, room, ada_cookie)
    bob_room = await room_socket(second, room, bob_cookie)
    await ada_room.send('{"action": "send", "body": "Hello from the first", "key": "k1"}')
    assert 'data-seq="1"' in await frame_with(bob_room, "Hello from the first")
    await bob_room.send('{"action": "send", "body": "Hello from the second", "key": "k2"}')
    assert 'data-seq="2"' in await frame_with(ada_room, "Hello from the second")

    for socket in (ada_room, bob_room, ada_socket, bob_socket):
        await socket.close()
