"""Direct conversations: rooms of kind "direct", one per pair, for exactly the two of them."""

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from rooms import selectors, services
from rooms.models import Message, Room

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(user_factory):
    from types import SimpleNamespace

    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    return SimpleNamespace(ada=ada, bob=bob, room=services.direct_open(a=ada, b=bob))


def client_of(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


def test_a_pair_has_exactly_one_conversation_whichever_of_them_opens_it(pair):
    assert services.direct_open(a=pair.bob, b=pair.ada) == pair.room
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1
    assert pair.room.is_private
    assert set(pair.room.memberships.values_list("member__username", flat=True)) == {"ada", "bob"}


def test_a_direct_conversation_is_never_in_the_directory(pair):
    assert pair.room not in selectors.directory()
    assert "direct-" not in client_of(pair.ada).get("/rooms/").text


def test_a_direct_conversation_is_404_to_everyone_else(pair, user_factory):
    carol = user_factory(username="carol")
    for path in ("", "messages/", "socket/"):
        assert client_of(carol).get(f"/rooms/{pair.room.slug}/{path}").status_code == 404
    assert (
        client_of(carol).post(f"/rooms/{pair.room.slug}/post/", {"body": "hi"}).status_code == 404
    )
    assert client_of(carol).post(f"/rooms/{pair.room.slug}/join/").status_code == 404


def test_each_member_sees_the_conversation_titled_after_the_other(pair):
    adas = client_of(pair.ada).get(pair.room.get_absolute_url()).text
    bobs = client_of(pair.bob).get(pair.room.get_absolute_url()).text
    assert '<h1 id="room-name">Bob' in adas
    assert "<title>Bob · Parley</title>" in adas
    assert '<h1 id="room-name">Ada' in bobs
    assert "Direct conversation" not in adas


def test_a_direct_conversation_cannot_be_left_or_invited_to(pair, user_factory):
    user_factory(username="carol")
    page = client_of(pair.ada).get(pair.room.get_absolute_url()).text
    assert "Leave" not in page
    assert "Invite" not in page
    with pytest.raises(services.Refused):
        services.room_leave(room=pair.room, member=pair.ada)
    with pytest.raises(services.Refused):
        services.room_invite(room=pair.room, inviter=pair.ada, username="carol")
    client_of(pair.ada).post(f"/rooms/{pair.room.slug}/leave/")
    assert pair.room.memberships.count() == 2


def test_a_closed_conversation_keeps_its_history_and_says_why_it_is_read_only(pair):
    services.message_post(room=pair.room, author=pair.ada, body="Hello Bob")
    services.direct_close(a=pair.ada, b=pair.bob)
    page = client_of(pair.bob).get(pair.room.get_absolute_url()).text
    assert "Hello Bob" in page
    assert "You are no longer contacts, so this conversation is read-only." in page
    assert 'name="body"' not in page
    assert "block" not in page.lower()


def test_writing_to_a_closed_conversation_is_refused_and_saves_nothing(pair):
    services.direct_close(a=pair.ada, b=pair.bob)
    with pytest.raises(services.Refused, match="no longer contacts"):
        services.message_post(room=pair.room, author=pair.ada, body="Still there?")
    assert Message.objects.count() == 0


def test_writing_to_a_closed_conversation_without_javascript_is_refused_with_the_reason(pair):
    services.direct_close(a=pair.ada, b=pair.bob)
    response = client_of(pair.ada).post(
        f"/rooms/{pair.room.slug}/post/", {"body": "Still there?", "key": "k1"}, follow=True
    )
    assert "You are no longer contacts, so this conversation is read-only." in response.text
    assert Message.objects.count() == 0


def test_reopening_makes_the_same_conversation_writable_again(pair):
    services.direct_close(a=pair.ada, b=pair.bob)
    assert services.direct_open(a=pair.bob, b=pair.ada) == pair.room
    message, created = services.message_post(room=pair.room, author=pair.bob, body="Back!")
    assert created
    assert message.room == pair.room


def test_the_room_header_shows_nobodys_room_presence_in_a_direct_conversation(pair):
    page = client_of(pair.ada).get(pair.room.get_absolute_url()).text
    assert re.search(r'<p id="room-presence" hidden>\s*</p>', page)


def test_direct_unread_counts_are_by_the_other_member(pair):
    services.message_post(room=pair.room, author=pair.ada, body="One")
    services.message_post(room=pair.room, author=pair.ada, body="Two")
    assert selectors.direct_unread(pair.bob)[pair.ada.pk].unread == 2
    assert selectors.direct_unread(pair.ada)[pair.bob.pk].unread == 0


# --- Through the room socket -----------------------------------------------------------------


@pytest.fixture
def room_socket(site_socket):
    async def open_(room, member):
        socket = await site_socket(f"/ws/rooms/{room.pk}/", member)
        connected, _ = await socket.connect()
        if connected:
            await socket.send_json_to({"action": "resume", "after": "0"})
        return socket, connected

    return open_


async def frame_with(socket, text: str, wait: float = 3) -> str:
    while True:
        frame = await socket.receive_from(timeout=wait)
        if text in frame:
            return frame


@pytest.mark.django_db(transaction=True)
async def test_a_room_socket_of_someone_else_is_refused(user_factory, room_socket):
    ada, bob, carol = [
        await database_sync_to_async(user_factory)(username=name) for name in ("ada", "bob", "c")
    ]
    room = await database_sync_to_async(services.direct_open)(a=ada, b=bob)
    _, connected = await room_socket(room, carol)
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_closing_swaps_every_open_composer_for_the_reason_and_reopening_brings_it_back(
    user_factory, room_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada")
    bob = await database_sync_to_async(user_factory)(username="bob")
    room = await database_sync_to_async(services.direct_open)(a=ada, b=bob)
    adas, _ = await room_socket(room, ada)
    bobs, _ = await room_socket(room, bob)
    await database_sync_to_async(services.direct_close)(a=ada, b=bob)
    for socket in (adas, bobs):
        frame = await frame_with(socket, 'id="composer"')
        assert "this conversation is read-only" in frame
        assert 'hx-swap-oob="true"' in frame

    await database_sync_to_async(services.direct_open)(a=bob, b=ada)
    for socket in (adas, bobs):
        frame = await frame_with(socket, 'id="composer"')
        assert "<form" in frame
        assert 'name="body"' in frame
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_send_over_the_socket_after_closing_is_refused_and_saves_nothing(
    user_factory, room_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada")
    bob = await database_sync_to_async(user_factory)(username="bob")
    room = await database_sync_to_async(services.direct_open)(a=ada, b=bob)
    adas, _ = await room_socket(room, ada)
    await database_sync_to_async(services.direct_close)(a=ada, b=bob)
    await frame_with(adas, "read-only")
    await adas.send_json_to({"action": "send", "body": "Are you there?", "key": "k1"})
    frame = await frame_with(adas, 'id="composer"')
    assert "You are no longer contacts, so this conversation is read-only." in frame
    assert await database_sync_to_async(Message.objects.count)() == 0
    await adas.disconnect()
