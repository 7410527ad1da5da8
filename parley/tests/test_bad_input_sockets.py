"""Bad input at the handshake of every socket, and up the member socket (docs/security.md).

Through the whole ASGI stack the server runs (parley.asgi.application): the origin check, the
session, MembersOnly and the router all take part. A refused handshake must never reach a
consumer; a bad frame gets its sender an answer and leaves every socket up.
"""

import asyncio
import os
from types import SimpleNamespace

import pytest
import websockets
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts import services as account_services
from calls import services as call_services
from calls.consumers import CallConsumer
from parley.asgi import application
from parley.consumers import MemberConsumer
from parley.live.members import member_push
from parley.tests import live_server
from rooms.consumers import RoomConsumer
from rooms.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

OWN_ORIGIN = b"http://127.0.0.1:8000"
NOT_UNDERSTOOD = "That message could not be understood."


@pytest.fixture
def world(user_factory, room_factory):
    """Ada and Bob are contacts, in one room Ada owns, in a call Bob answered."""
    ada = user_factory(username="ada", password=None)
    bob = user_factory(username="bob", password=None)
    account_services.contact_request_send(sender=ada, username="bob")
    account_services.contact_request_send(sender=bob, username="ada")
    room = room_factory(owner=ada)
    call = call_services.call_start(caller=ada, callee=bob, video=True)
    call_services.call_accept(call_id=call.pk, member=bob)
    paths = {
        "member": "/ws/member/",
        "room": f"/ws/rooms/{room.pk}/",
        "call": f"/ws/calls/{call.pk}/",
    }
    return SimpleNamespace(ada=ada, bob=bob, room=room, call=call, paths=paths)


@pytest.fixture
def socket_as(session_cookie_factory):
    """A communicator to `path` as `member` (None: nobody signed in), with `origin`."""

    async def make(path: str, member=None, *, origin: bytes | None = OWN_ORIGIN):
        headers = [(b"host", b"127.0.0.1:8000")]
        if origin is not None:
            headers.append((b"origin", origin))
        if member is not None:
            cookie = await database_sync_to_async(session_cookie_factory)(member)
            headers.append((b"cookie", cookie))
        return WebsocketCommunicator(application, path, headers=headers)

    return make


@pytest.fixture
def consumers_run(monkeypatch):
    """Records which consumers' connect ran (and lets it run)."""
    ran = []
    for consumer in (MemberConsumer, RoomConsumer, CallConsumer):
        real = consumer.connect

        async def recording(self, real=real, name=consumer.__name__):
            ran.append(name)
            await real(self)

        monkeypatch.setattr(consumer, "connect", recording)
    return ran


async def drain(communicator, quiet: float = 0.3) -> None:
    """Read what a socket says as it opens (presence, catch-up) until it is quiet."""
    while not await communicator.receive_nothing(timeout=quiet):
        await communicator.receive_from()


# --- The handshake: origin, session, path ----------------------------------------------------


@pytest.mark.parametrize("kind", ["member", "room", "call"])
async def test_each_socket_opens_from_the_sites_own_origin(world, socket_as, kind):
    communicator = await socket_as(world.paths[kind], world.ada)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["member", "room", "call"])
@pytest.mark.parametrize(
    "origin",
    [
        None,  # no Origin header: not a browser page of this site
        b"https://evil.example",
        b"null",  # a sandboxed iframe, a file:// page, some redirects
        b"http://127.0.0.1.evil.example",  # the site's host as a prefix
        b"http://evil-127.0.0.1",
        b"not a url",
        b"http://127.0.0.1:9000",  # another site on the same host: cookies ignore ports
        b"https://127.0.0.1:8000",  # the site was reached over http, not https
    ],
)
async def test_a_signed_in_socket_from_anywhere_but_the_site_is_refused_before_any_consumer_runs(
    world, socket_as, consumers_run, kind, origin
):
    communicator = await socket_as(world.paths[kind], world.ada, origin=origin)
    connected, _ = await communicator.connect(timeout=3)
    assert not connected
    assert consumers_run == []


@pytest.mark.parametrize(
    ("headers", "opens"),
    [
        # Behind the proxy (site/Caddyfile): it says https, and the page is the https one.
        ({b"x-forwarded-proto": b"https", b"origin": b"https://127.0.0.1:8000"}, True),
        ({b"x-forwarded-proto": b"https", b"origin": b"http://127.0.0.1:8000"}, False),
        ({b"origin": b"https://127.0.0.1:8000"}, False),  # nobody said https
        # A trusted origin (CSRF_TRUSTED_ORIGINS) opens it whatever the Host.
        ({b"origin": b"https://chat.example.org"}, True),
        ({b"origin": b"https://chat.example.org:8443"}, False),
        # No Host header: no browser page of any site.
        ({b"host": None, b"origin": b"http://127.0.0.1:8000"}, False),
    ],
)
async def test_a_socket_opens_only_from_the_origin_the_handshake_came_to(
    world, session_cookie_factory, settings, headers, opens
):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.org"]
    settings.ALLOWED_HOSTS = ["127.0.0.1", "chat.example.org"]
    sent = {b"host": b"127.0.0.1:8000", **headers}
    sent[b"cookie"] = await database_sync_to_async(session_cookie_factory)(world.ada)
    communicator = WebsocketCommunicator(
        application,
        world.paths["member"],
        headers=[(name, value) for name, value in sent.items() if value is not None],
    )
    connected, _ = await communicator.connect(timeout=3)
    assert connected is opens
    await communicator.disconnect()


@pytest.mark.parametrize("kind", ["member", "room", "call"])
async def test_a_socket_with_no_session_or_a_forged_one_is_refused_before_any_consumer_runs(
    world, socket_as, consumers_run, kind
):
    anonymous = await socket_as(world.paths[kind])
    assert not (await anonymous.connect(timeout=3))[0]
    forged = WebsocketCommunicator(
        application,
        world.paths[kind],
        headers=[(b"origin", OWN_ORIGIN), (b"cookie", b"sessionid=made-up")],
    )
    assert not (await forged.connect(timeout=3))[0]
    assert consumers_run == []


@pytest.mark.parametrize(
    "path",
    ["/ws/nothing/", "/ws/rooms/abc/", "/ws/rooms/1/extra/", "/ws/calls/-1/", "/ws/member/x/"],
)
async def test_a_socket_path_parley_has_no_socket_for_is_refused_not_an_error(
    world, socket_as, consumers_run, path
):
    communicator = await socket_as(path, world.ada)
    connected, _ = await communicator.connect(timeout=3)  # the router used to raise here
    assert not connected
    assert consumers_run == []


@pytest.mark.parametrize("kind", ["rooms", "calls"])
async def test_an_id_past_any_database_integer_is_refused_like_an_unknown_one(
    world, socket_as, kind
):
    communicator = await socket_as(f"/ws/{kind}/{'9' * 30}/", world.ada)
    connected, _ = await communicator.connect(timeout=3)
    assert not connected


# --- Frames up the member socket -------------------------------------------------------------


async def open_member_sockets(world, socket_as):
    sockets = []
    for member in (world.ada, world.bob):
        communicator = await socket_as("/ws/member/", member)
        assert (await communicator.connect(timeout=3))[0]
        await drain(communicator)
        sockets.append(communicator)
    for communicator in sockets:
        await drain(communicator)  # each hears the other come online
    return sockets


async def next_notice(communicator, wait: float = 3) -> str:
    while True:  # presence news may come in between
        frame = await communicator.receive_from(timeout=wait)
        if 'id="notices"' in frame:
            return frame


async def hears_no_notice(communicator) -> bool:
    while not await communicator.receive_nothing(timeout=0.3):
        if 'id="notices"' in await communicator.receive_from():
            return False
    return True


async def still_pushed_to(communicator, member) -> bool:
    html = '<p id="probe" hx-swap-oob="true">still here</p>'
    await database_sync_to_async(member_push)(member_id=member.pk, html=html)
    while True:  # presence news may come first
        if await communicator.receive_from(timeout=3) == html:
            return True


@pytest.mark.parametrize(
    "frame",
    [
        {"bytes_data": b"\x00\xff\x00binary"},
        {"bytes_data": b'{"action": "send", "body": "hi"}'},
        {"text_data": "x" * (1024 * 1024)},
        {"text_data": '{"action": "send", "room": 1, "body": "<script>alert(1)</script>"}'},
    ],
    ids=["binary", "json-as-binary", "one-mebibyte-text", "an-action-it-has-none-for"],
)
async def test_a_frame_up_the_member_socket_gets_a_notice_to_its_sender_alone(
    world, socket_as, frame
):
    ada, bob = await open_member_sockets(world, socket_as)

    await ada.send_to(**frame)
    reply = await next_notice(ada)
    assert NOT_UNDERSTOOD in reply
    assert "<script>" not in reply

    assert await hears_no_notice(bob)
    assert await still_pushed_to(ada, world.ada)
    assert await still_pushed_to(bob, world.bob)
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ada.disconnect()
    await bob.disconnect()


async def test_a_flood_up_the_member_socket_is_answered_frame_by_frame_and_troubles_nobody(
    world, socket_as
):
    ada, bob = await open_member_sockets(world, socket_as)

    for n in range(300):
        await ada.send_to(text_data=f"garbage {n}")
    notices = [await next_notice(ada, wait=5) for _ in range(300)]
    assert all(NOT_UNDERSTOOD in notice for notice in notices)
    assert await hears_no_notice(bob)
    assert await still_pushed_to(bob, world.bob)
    assert await still_pushed_to(ada, world.ada)
    await ada.disconnect()
    await bob.disconnect()


# --- Through a real daphne: frames past its size limit ----------------------------------------


async def send_and_read_until_closed(socket, text: str) -> None:
    await socket.send(text)
    async with asyncio.timeout(10):
        while True:
            await socket.recv()


@pytest.fixture
def daphne(world):
    if "memory" in live_server.test_database_url():
        pytest.skip("a server process cannot open this run's in-memory SQLite database")
    server = live_server.LiveServer.for_tests(REDIS_URL=os.environ.get("REDIS_URL", ""))
    yield server
    server.stop()


async def test_a_frame_over_one_mebibyte_closes_only_its_own_socket_on_a_real_server(
    world, daphne, session_cookie_factory
):
    async def member_socket(member):
        cookie = (await database_sync_to_async(session_cookie_factory)(member)).decode()
        return await websockets.connect(
            f"ws://127.0.0.1:{daphne.port}/ws/member/",
            origin=f"http://127.0.0.1:{daphne.port}",
            additional_headers={"Cookie": cookie},
            max_size=None,
        )

    ada, bob = await member_socket(world.ada), await member_socket(world.bob)
    try:
        # daphne's limit (--websocket-max-message-size, 1 MiB by default) drops the sender.
        with pytest.raises(websockets.ConnectionClosed):
            await send_and_read_until_closed(ada, "x" * (2 * 1024 * 1024))

        await bob.send("anything")
        async with asyncio.timeout(5):
            while NOT_UNDERSTOOD not in await bob.recv():
                pass
        again = await member_socket(world.ada)  # and Ada can come straight back
        await again.send("anything")
        async with asyncio.timeout(5):
            while NOT_UNDERSTOOD not in await again.recv():
                pass
        await again.close()
        assert "Exception inside application" not in daphne.tail(400)
    finally:
        await bob.close()
