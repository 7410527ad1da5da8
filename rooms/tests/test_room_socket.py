"""The room socket through the whole ASGI stack, on whichever channel layer is configured."""

import asyncio
import json
import re
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from parley.asgi import application
from rooms import fragments, selectors, services
from rooms.models import Message, Room

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connect(site_socket):
    """Open a room socket as `member`, the way a page of this site does."""

    async def open_socket(room: Room, member, *, resume: int | None = 0):
        communicator = await site_socket(f"/ws/rooms/{room.pk}/", member)
        connected, _ = await communicator.connect()
        if connected and resume is not None:
            await communicator.send_json_to({"action": "resume", "after": str(resume)})
        return communicator, connected

    return open_socket


async def receive_until(communicator, pattern: str, wait: float = 3) -> str:
    """Frames until one matches `pattern` (presence updates come and go in between)."""
    while True:
        frame = await communicator.receive_from(timeout=wait)
        if re.search(pattern, frame):
            return frame


async def receive_each(communicator, *patterns: str, wait: float = 3) -> list[str]:
    """One frame for each pattern, in whatever order they come."""
    found: dict[str, str] = {}
    while len(found) < len(patterns):
        frame = await communicator.receive_from(timeout=wait)
        for pattern in patterns:
            if pattern not in found and re.search(pattern, frame):
                found[pattern] = frame
    return [found[pattern] for pattern in patterns]


async def no_more_messages(communicator, wait: float = 0.5) -> bool:
    """True when nothing carrying a message arrives within `wait` seconds."""
    while not await communicator.receive_nothing(timeout=wait):
        if "data-seq" in await communicator.receive_from():
            return False
    return True


def seqs(frame: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-seq="(\d+)"', frame)]


async def close_all(*communicators):
    for communicator in communicators:
        await communicator.disconnect()


# --- Who may open a room socket ------------------------------------------------------------


async def test_a_member_opens_the_rooms_socket(room_factory, user_factory, connect):
    room = await database_sync_to_async(room_factory)()
    owner = await database_sync_to_async(lambda: room.created_by)()
    communicator, connected = await connect(room, owner)
    assert connected
    await close_all(communicator)


async def test_a_non_member_is_refused_even_for_a_public_room(room_factory, user_factory, connect):
    room = await database_sync_to_async(room_factory)()
    stranger = await database_sync_to_async(user_factory)()
    _, connected = await connect(room, stranger)
    assert not connected


async def test_a_private_room_socket_is_refused_to_a_non_member(
    room_factory, user_factory, connect
):
    room = await database_sync_to_async(room_factory)(is_private=True)
    stranger = await database_sync_to_async(user_factory)()
    _, connected = await connect(room, stranger)
    assert not connected


async def test_an_anonymous_socket_is_refused(room_factory):
    room = await database_sync_to_async(room_factory)()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/rooms/{room.pk}/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
    )
    connected, _ = await communicator.connect()
    assert not connected


# --- Messages ------------------------------------------------------------------------------


async def test_a_message_reaches_every_member_and_the_sender_gets_a_fresh_composer(
    duo, room_factory, user_factory, connect
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    ada_socket, _ = await connect(room, ada)
    bob_socket, _ = await connect(room, bob)

    await ada_socket.send_json_to({"action": "send", "body": "  Hello, Bob  ", "key": "k1"})

    ada_frame, composer = await receive_each(ada_socket, "data-seq", 'id="composer"')
    for frame in (ada_frame, await receive_until(bob_socket, "data-seq")):
        assert seqs(frame) == [1]
        assert "Hello, Bob" in frame
        assert f'data-author="{ada.pk}"' in frame
        assert 'id="room-seq"' in frame
        assert 'value="1"' in frame
    assert 'value=""' in composer
    assert "autofocus" in composer
    assert 'name="key" value="k1"' not in composer
    saved = await database_sync_to_async(
        lambda: list(Message.objects.values_list("body", flat=True))
    )()
    assert saved == ["Hello, Bob"]
    await close_all(ada_socket, bob_socket)


async def test_markup_in_a_message_arrives_as_text(room_factory, user_factory, connect):
    ada = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=ada)
    socket, _ = await connect(room, ada)
    body = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    await socket.send_json_to({"action": "send", "body": body, "key": "k"})
    frame = await receive_until(socket, "data-seq")
    assert "<script>" not in frame
    assert "<img" not in frame
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in frame
    await close_all(socket)


async def test_the_fragment_is_rendered_once_per_message_whatever_the_audience(
    room_factory, user_factory, connect, monkeypatch
):
    renders = []
    real_message = fragments.message
    monkeypatch.setattr(
        fragments, "message", lambda message: renders.append(message.seq) or real_message(message)
    )
    owner = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=owner)
    members = [await database_sync_to_async(user_factory)() for _ in range(5)]
    for member in members:
        await database_sync_to_async(services.room_join)(room=room, member=member)
    sockets = [(await connect(room, member))[0] for member in (owner, *members, members[0])]

    await sockets[0].send_json_to({"action": "send", "body": "one", "key": "a"})
    await sockets[1].send_json_to({"action": "send", "body": "two", "key": "b"})
    for socket in sockets:
        received = []
        while len(received) < 2:
            received += seqs(await receive_until(socket, "data-seq"))
        assert received == [1, 2]
    assert sorted(renders) == [1, 2]
    await close_all(*sockets)


async def test_a_retried_send_with_the_same_key_is_saved_once(room_factory, user_factory, connect):
    ada = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=ada)
    socket, _ = await connect(room, ada)
    for _ in range(3):
        await socket.send_json_to({"action": "send", "body": "only once", "key": "same"})
    await socket.send_json_to({"action": "send", "body": "a different one", "key": "same"})
    frames = [await receive_until(socket, "data-seq") for _ in range(2)]
    assert [seqs(frame) for frame in frames] == [[1], [2]]
    assert await no_more_messages(socket)
    bodies = await database_sync_to_async(
        lambda: list(Message.objects.order_by("seq").values_list("body", flat=True))
    )()
    assert bodies == ["only once", "a different one"]
    await close_all(socket)


# --- Refusals: an inline error to the sender alone, nothing saved, the socket stays ----------


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json at all", "could not be understood"),
        ("[1, 2, 3]", "could not be understood"),
        ("[" * 60000, "could not be understood"),  # nested past the parser: RecursionError
        (json.dumps({"body": "no action"}), "could not be understood"),
        (json.dumps({"action": "send", "key": "k"}), "could not be understood"),
        (json.dumps({"action": "send", "body": 42, "key": "k"}), "could not be understood"),
        (json.dumps({"action": "send", "body": ["a"], "key": "k"}), "could not be understood"),
        (json.dumps({"action": "resume", "after": "yesterday"}), "could not be understood"),
        (json.dumps({"action": "send", "body": "x" * (1024 * 1024), "key": "k"}), "understood"),
        (json.dumps({"action": "send", "body": "   ", "key": "k"}), "Write something first."),
        (
            json.dumps({"action": "send", "body": "x" * 4001, "key": "k"}),
            "at most 4,000 characters; yours has 4,001",
        ),
    ],
)
async def test_a_bad_frame_gets_an_error_to_its_sender_alone_and_the_socket_stays_up(
    duo, room_factory, user_factory, connect, frame, error
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    ada_socket, _ = await connect(room, ada)
    bob_socket, _ = await connect(room, bob)

    await ada_socket.send_to(text_data=frame)
    reply = await receive_until(ada_socket, 'role="alert"')
    assert error in reply
    assert await database_sync_to_async(Message.objects.count)() == 0

    await ada_socket.send_json_to({"action": "send", "body": "still here", "key": "ok"})
    assert "still here" in await receive_until(ada_socket, "data-seq")
    bob_frame = await receive_until(bob_socket, "data-seq")
    assert "still here" in bob_frame
    assert error not in bob_frame
    await close_all(ada_socket, bob_socket)


async def test_a_refused_message_keeps_its_text_in_the_composer(
    room_factory, user_factory, connect
):
    ada = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=ada)
    socket, _ = await connect(room, ada)
    await socket.send_json_to({"action": "send", "body": "y" * 4001, "key": "k"})
    composer = await receive_until(socket, 'id="composer-error"')
    assert 'value="' + "y" * 4001 + '"' in composer
    assert 'aria-invalid="true"' in composer
    await close_all(socket)


async def test_flooding_is_refused_after_ten_messages_in_five_seconds(
    room_factory, user_factory, connect
):
    ada = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=ada)
    socket, _ = await connect(room, ada)
    for n in range(11):
        await socket.send_json_to({"action": "send", "body": f"message {n}", "key": f"k{n}"})
    refusal = await receive_until(socket, 'role="alert"')
    assert "too quickly" in refusal
    assert await database_sync_to_async(Message.objects.count)() == 10
    await close_all(socket)


# --- Nothing lost, nothing twice -----------------------------------------------------------


async def test_resuming_sends_exactly_the_missed_messages_in_order(
    duo, room_factory, user_factory, connect
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    for n in range(1, 8):
        await database_sync_to_async(services.message_post)(
            room=room, author=ada, body=f"m{n}", key=f"{n}"
        )

    socket, _ = await connect(room, bob, resume=3)
    frame = await receive_until(socket, "data-seq")
    assert seqs(frame) == [4, 5, 6, 7]
    assert 'value="7"' in frame
    assert await no_more_messages(socket)
    await close_all(socket)


async def test_live_messages_before_the_page_says_where_it_is_wait_and_are_not_doubled(
    duo, room_factory, user_factory, connect
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    await database_sync_to_async(services.message_post)(
        room=room, author=ada, body="before", key="1"
    )
    socket, _ = await connect(room, bob, resume=None)
    await database_sync_to_async(services.message_post)(
        room=room, author=ada, body="during", key="2"
    )
    await socket.send_json_to({"action": "resume", "after": 0})

    delivered = []
    while len(delivered) < 2:
        delivered += seqs(await receive_until(socket, "data-seq"))
    assert delivered == [1, 2]
    await database_sync_to_async(services.message_post)(
        room=room, author=ada, body="after", key="3"
    )
    assert seqs(await receive_until(socket, "data-seq")) == [3]
    await close_all(socket)


async def test_a_live_message_after_a_gap_brings_the_missing_ones_from_the_database(
    room_factory, user_factory, connect
):
    ada = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(room_factory)(owner=ada)
    socket, _ = await connect(room, ada)

    def save_without_announcing(body: str) -> None:
        # As if the channel layer had lost this message's announcement.
        room.refresh_from_db()
        seq = room.last_seq + 1
        Room.objects.filter(pk=room.pk).update(last_seq=seq)
        Message.objects.create(room=room, seq=seq, author=ada, body=body)

    await database_sync_to_async(save_without_announcing)("lost one")
    await database_sync_to_async(save_without_announcing)("lost two")
    await database_sync_to_async(services.message_post)(
        room=room, author=ada, body="announced", key="x"
    )

    delivered = []
    while len(delivered) < 3:
        delivered += seqs(await receive_until(socket, "data-seq"))
    assert delivered == [1, 2, 3]
    await close_all(socket)


def hold_first_read(monkeypatch, *, after_query=False) -> tuple[threading.Event, threading.Event]:
    """The next socket's first read from the database waits, before its query or (after_query)
    with its answer in hand: (it started, let it go on)."""
    query_started, go_on = threading.Event(), threading.Event()
    messages_after = selectors.messages_after

    def slow_messages_after(*args):
        if query_started.is_set():
            return messages_after(*args)
        answer = messages_after(*args) if after_query else None
        query_started.set()
        go_on.wait(10)
        return answer if after_query else messages_after(*args)

    monkeypatch.setattr(selectors, "messages_after", slow_messages_after)
    return query_started, go_on


async def test_a_socket_reading_from_the_database_holds_up_no_other_socket(
    duo, connect, monkeypatch
):
    # The hub hands a room's messages to its sockets one after another. A socket that is busy
    # reading from the database (a page catching up after a long absence; here a slow query)
    # must not keep the others waiting, and gets the messages itself, once, when it is done.
    ada, bob, room = duo.ada, duo.bob, duo.room
    bob_socket, _ = await connect(room, bob)
    await database_sync_to_async(services.message_post)(room=room, author=ada, body="hi", key="h")
    assert seqs(await receive_until(bob_socket, "data-seq")) == [1]  # Bob's socket is live
    announced = []

    def post_quietly(body: str) -> None:
        # Saved now, announced below, by hand, while Ada's socket is reading.
        services.message_post(
            room=room,
            author=ada,
            body=body,
            key=body,
            announce=lambda *sent: announced.append(sent),
        )

    await database_sync_to_async(post_quietly)("first")
    await database_sync_to_async(post_quietly)("second")

    query_started, go_on = hold_first_read(monkeypatch)
    ada_socket, _ = await connect(room, ada)  # resumes: reads what it missed, slowly
    try:
        assert await asyncio.to_thread(query_started.wait, 5)
        for group, event in announced:
            await get_channel_layer().group_send(group, event)
        delivered = []
        while len(delivered) < 2:
            delivered += seqs(await receive_until(bob_socket, "data-seq"))
        assert delivered == [2, 3]
        assert not go_on.is_set()  # Bob had both while Ada's socket was still reading
    finally:
        go_on.set()

    frame = await receive_until(ada_socket, "data-seq")
    assert seqs(frame) == [1, 2, 3]
    assert await no_more_messages(ada_socket)
    await close_all(ada_socket, bob_socket)


async def test_live_messages_a_busy_socket_cannot_keep_come_from_the_database_in_order(
    duo, connect, monkeypatch
):
    # While a socket reads from the database it keeps the room's live messages for later, up
    # to PENDING_BYTES of them (a frozen tab must not hold a busy room's messages alive); the
    # ones it drops are read from the database after, so the page still gets each once, in order.
    from rooms import consumers

    monkeypatch.setattr(consumers, "PENDING_BYTES", 1)  # keeps only the newest
    ada, bob, room = duo.ada, duo.bob, duo.room
    announced = []

    def post_quietly(body: str) -> None:
        services.message_post(
            room=room, author=bob, body=body, key=body, announce=lambda *s: announced.append(s)
        )

    await database_sync_to_async(post_quietly)("before")
    # Ada's socket has read message 1 and is about to send it when 2, 3 and 4 come.
    query_started, go_on = hold_first_read(monkeypatch, after_query=True)
    ada_socket, _ = await connect(room, ada)
    try:
        assert await asyncio.to_thread(query_started.wait, 5)
        for n in range(3):  # not on the thread the held read is blocking
            body = f"while busy {n} " + "x" * 3000
            await sync_to_async(post_quietly, thread_sensitive=False)(body)
        for group, event in announced[1:]:
            await get_channel_layer().group_send(group, event)
    finally:
        go_on.set()
    delivered = []
    while len(delivered) < 4:
        delivered += seqs(await receive_until(ada_socket, "data-seq"))
    assert delivered == [1, 2, 3, 4]
    assert await no_more_messages(ada_socket)
    await close_all(ada_socket)


# --- Leaving ---------------------------------------------------------------------------------


async def test_leaving_closes_the_members_room_sockets_for_good(duo, connect):
    bob, room = duo.bob, duo.room
    socket, _ = await connect(room, bob)
    await database_sync_to_async(services.room_leave)(room=room, member=bob)
    await receive_until(socket, "You have left this room")
    closed = await socket.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4003}


# --- Presence ---------------------------------------------------------------------------------


async def test_a_member_with_two_tabs_stays_online_until_both_close(
    duo, room_factory, user_factory, connect
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    watcher, _ = await connect(room, ada)
    first_tab, _ = await connect(room, bob)
    second_tab, _ = await connect(room, bob)
    await receive_until(watcher, r"2 online</strong>:\s*ada, bob")

    await first_tab.disconnect()
    # Nothing may say bob left while his other tab is open.
    while not await watcher.receive_nothing(timeout=1):
        assert "1 online" not in await watcher.receive_from()

    await second_tab.disconnect()
    await receive_until(watcher, r"1 online</strong>:\s*ada")
    await close_all(watcher)


async def test_a_reconnecting_member_is_online_again(duo, room_factory, user_factory, connect):
    ada, bob, room = duo.ada, duo.bob, duo.room
    watcher, _ = await connect(room, ada)
    tab, _ = await connect(room, bob)
    await receive_until(watcher, "2 online")
    await tab.disconnect()
    await receive_until(watcher, "1 online")
    tab, _ = await connect(room, bob)
    await receive_until(watcher, r"2 online</strong>:\s*ada, bob")
    await close_all(watcher, tab)


# --- Logging out ------------------------------------------------------------------------------


async def test_logging_out_closes_that_sessions_sockets_for_good_and_no_others(
    room_factory, user_factory
):
    from django.conf import settings as django_settings
    from django.test import Client
    from django.urls import reverse

    ada = await database_sync_to_async(user_factory)(username="ada")
    room = await database_sync_to_async(room_factory)(owner=ada)
    browsers = [Client(), Client()]
    sockets = []
    for browser in browsers:
        await database_sync_to_async(browser.force_login)(ada)
        session = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
        for path in (f"/ws/rooms/{room.pk}/", "/ws/member/"):
            socket = WebsocketCommunicator(
                application,
                path,
                headers=[
                    (b"host", b"127.0.0.1:8000"),
                    (b"origin", b"http://127.0.0.1:8000"),
                    (b"cookie", f"sessionid={session}".encode()),
                ],
            )
            assert (await socket.connect())[0]
            if path == "/ws/member/":
                assert f'id="unread-{room.pk}"' in await socket.receive_from(timeout=3)
            sockets.append(socket)

    await database_sync_to_async(browsers[0].post)(reverse("account_logout"))

    room_socket, member_socket, other_room_socket, other_member_socket = sockets
    await receive_until(room_socket, "You have logged out")
    assert await room_socket.receive_output(timeout=3) == {"type": "websocket.close", "code": 4001}
    assert await member_socket.receive_output(timeout=3) == {
        "type": "websocket.close",
        "code": 4001,
    }
    assert await other_member_socket.receive_nothing(timeout=0.5)
    await other_room_socket.send_json_to({"action": "resume", "after": 0})
    await other_room_socket.send_json_to({"action": "send", "body": "still in", "key": "k"})
    assert "still in" in await receive_until(other_room_socket, "data-seq")
    await close_all(other_room_socket, other_member_socket)
