"""The sidebar's rooms and unread counts, kept live through the member socket."""

import re

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from rooms import services
from rooms.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def open_socket(site_socket):
    async def open_(path: str, member):
        socket = await site_socket(path, member)
        assert (await socket.connect())[0]
        has_rooms = await database_sync_to_async(Membership.objects.filter(member=member).exists)()
        if path == "/ws/member/" and has_rooms:
            # The badges of every room, as the socket opens.
            member.first_frame = await socket.receive_from(timeout=4)
        return socket

    return open_


async def badge(socket, room_id: int, wait: float = 4) -> str:
    """The count in the next unread badge of `room_id` this socket receives ('' for none)."""
    pattern = rf'<span id="unread-{room_id}" class="unread" hx-swap-oob="true">(.*?)</span>\s*$'
    while True:
        frame = (await socket.receive_from(timeout=wait)).strip()
        found = re.search(pattern, frame, re.S)
        if found:
            return re.sub(r"<[^>]+>|,|unread", "", found.group(1)).strip()


def badge_counts(frame: str) -> dict[int, str]:
    """{room id: count} of every unread badge in a frame ('' for none)."""
    found = re.findall(
        r'<span id="unread-(\d+)" class="unread" hx-swap-oob="true">(.*?)</span>'
        r"(?=\s*<span id=|\s*$)",
        frame.strip(),
        re.S,
    )
    return {
        int(room_id): re.sub(r"<[^>]+>|,|unread", "", inner).strip() for room_id, inner in found
    }


def post(room, author, body):
    # Only the flood counter: with Redis, clearing the cache would empty the database that the
    # core channel layer keeps its groups in.
    cache.delete(f"parley:flood:{author.pk}")
    services.message_post(room=room, author=author, body=body, key=body)


async def test_unread_counts_rise_live_in_the_sidebar_of_a_member_elsewhere(
    duo, user_factory, open_socket
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    sidebar = await open_socket("/ws/member/", bob)

    await database_sync_to_async(post)(room, ada, "one")
    assert await badge(sidebar, room.pk) == "1"
    await database_sync_to_async(post)(room, ada, "two")
    await database_sync_to_async(post)(room, ada, "three")
    assert await badge(sidebar, room.pk) == "3"
    await sidebar.disconnect()


async def test_a_room_open_in_another_tab_brings_the_count_back_to_nothing(
    duo, user_factory, open_socket
):
    ada, bob, room = duo.ada, duo.bob, duo.room
    await database_sync_to_async(post)(room, ada, "before")
    sidebar = await open_socket("/ws/member/", bob)
    reader = await open_socket(f"/ws/rooms/{room.pk}/", bob)
    await reader.send_json_to({"action": "resume", "after": 0})

    assert await badge(sidebar, room.pk) == ""
    membership = await database_sync_to_async(Membership.objects.get)(room=room, member=bob)
    assert membership.last_read_seq == 1
    await database_sync_to_async(post)(room, ada, "while reading")
    assert await badge(sidebar, room.pk) == ""
    await reader.disconnect()
    await sidebar.disconnect()


async def test_a_member_socket_says_every_rooms_count_as_it_opens(duo, open_socket):
    # A page whose member socket reconnects may have missed counts while it was away.
    ada, bob, room = duo.ada, duo.bob, duo.room
    other = await database_sync_to_async(services.room_create)(creator=ada, name="Quiet corner")
    await database_sync_to_async(services.room_join)(room=other, member=bob)
    for body in ("one", "two"):
        await database_sync_to_async(post)(room, ada, body)

    sidebar = await open_socket("/ws/member/", bob)
    assert badge_counts(bob.first_frame) == {room.pk: "2", other.pk: ""}
    await sidebar.disconnect()


async def test_joining_a_room_puts_it_in_the_sidebar_and_its_counts_follow(
    user_factory, open_socket
):
    ada = await database_sync_to_async(user_factory)()
    bob = await database_sync_to_async(user_factory)()
    room = await database_sync_to_async(services.room_create)(creator=ada, name="Chess club")
    sidebar = await open_socket("/ws/member/", bob)

    await database_sync_to_async(services.room_join)(room=room, member=bob)
    frame = await sidebar.receive_from(timeout=4)
    assert 'id="sidebar-room-list" class="sidebar-list" hx-swap-oob="true"' in frame
    assert "Chess club" in frame
    await database_sync_to_async(post)(room, ada, "welcome")
    assert await badge(sidebar, room.pk) == "1"

    await database_sync_to_async(services.room_leave)(room=room, member=bob)
    frame = await sidebar.receive_from(timeout=4)
    assert "Chess club" not in frame
    assert "You have not joined a room yet." in frame
    await sidebar.disconnect()


def test_reads_of_many_members_are_written_together(user_factory):
    ada, bob, cy = user_factory(), user_factory(), user_factory()
    room = services.room_create(creator=ada, name="Garden")
    for member in (bob, cy):
        services.room_join(room=room, member=member)
    for n in range(3):
        post(room, ada, f"m{n}")
    services.room_mark_read_many(room_id=room.pk, reads={bob.pk: 3, cy.pk: 2, ada.pk: 1})
    reads = dict(room.memberships.values_list("member_id", "last_read_seq"))
    # ada posted all three, so she had read them; a smaller seq never moves a mark back.
    assert reads == {ada.pk: 3, bob.pk: 3, cy.pk: 2}
