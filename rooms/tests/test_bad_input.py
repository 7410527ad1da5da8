"""Bad input to rooms: up the room socket, and to every room form and partial (docs/security.md).

Each test checks the answer its sender gets, that nothing was saved, that the sockets of the
room stay up, and that nobody else got anything.
"""

import json
import re

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from rooms import services
from rooms.models import Membership, Message, Room

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
HOSTILE_ESCAPED = (
    "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
)
NOT_UNDERSTOOD = "That message could not be understood."


@pytest.fixture
def connect(site_socket):
    async def open_socket(room: Room, member, *, resume: int | None = 0):
        communicator = await site_socket(f"/ws/rooms/{room.pk}/", member)
        connected, _ = await communicator.connect(timeout=3)
        assert connected
        if resume is not None:
            await communicator.send_json_to({"action": "resume", "after": resume})
        return communicator

    return open_socket


async def receive_until(communicator, pattern: str, wait: float = 3) -> str:
    """Frames until one matches `pattern` (presence updates come and go in between)."""
    while True:
        frame = await communicator.receive_from(timeout=wait)
        if re.search(pattern, frame):
            return frame


async def hears_nothing_but_presence(communicator, wait: float = 0.4) -> bool:
    while not await communicator.receive_nothing(timeout=wait):
        frame = await communicator.receive_from()
        if 'id="room-presence' not in frame:
            return False
    return True


def saved_bodies() -> list[str]:
    return list(Message.objects.order_by("room_id", "seq").values_list("body", flat=True))


async def still_chatting(ada_socket, bob_socket, body: str = "still here") -> None:
    """Ada's socket still sends, and Bob's still receives."""
    await ada_socket.send_json_to({"action": "send", "body": body, "key": f"probe-{body}"})
    assert body in await receive_until(ada_socket, "data-seq")
    assert body in await receive_until(bob_socket, "data-seq")


# --- Up the room socket ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"bytes_data": b"\x00\xff binary"},
        {"bytes_data": json.dumps({"action": "send", "body": "hi", "key": "k"}).encode()},
        {"text_data": json.dumps({"action": "delete", "seq": 1})},
        {"text_data": json.dumps({"action": "edit", "seq": 1, "body": "changed"})},
        {"text_data": json.dumps({"action": "SEND", "body": "hi", "key": "k"})},
        {"text_data": json.dumps({"action": ["send"], "body": "hi", "key": "k"})},
        {"text_data": json.dumps({"action": None})},
        {"text_data": json.dumps({"action": "resume", "after": -5})},
        {"text_data": json.dumps({"action": "resume", "after": [1]})},
        {"text_data": json.dumps({"action": "resume", "after": "1e400"})},
        {"text_data": json.dumps({"action": "resume", "after": "9" * 5000})},
        {"text_data": json.dumps({"action": "resume"})},
        {"text_data": "null"},
        {"text_data": '"send"'},
        {"input": {"type": "websocket.receive", "text": ""}},
    ],
    ids=[
        "binary",
        "json-as-binary",
        "unknown-action-delete",
        "unknown-action-edit",
        "action-in-capitals",
        "action-a-list",
        "action-null",
        "resume-negative",
        "resume-a-list",
        "resume-a-float-string",
        "resume-5000-digits",
        "resume-without-after",
        "json-null",
        "json-string",
        "empty-frame",
    ],
)
async def test_a_frame_the_room_socket_has_no_use_for_gets_a_notice_and_nothing_else(
    duo, connect, frame
):
    ada_socket = await connect(duo.room, duo.ada)
    bob_socket = await connect(duo.room, duo.bob)

    if "input" in frame:  # what a communicator's send_to will not send
        await ada_socket.send_input(frame["input"])
    else:
        await ada_socket.send_to(**frame)
    reply = await receive_until(ada_socket, 'role="alert"')
    assert NOT_UNDERSTOOD in reply
    assert await database_sync_to_async(saved_bodies)() == []
    assert await hears_nothing_but_presence(bob_socket)

    await still_chatting(ada_socket, bob_socket)
    await ada_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_frame_naming_another_room_still_posts_only_where_the_socket_is(
    duo, room_factory, user_factory, connect
):
    carol = await database_sync_to_async(user_factory)(username="carol")
    elsewhere = await database_sync_to_async(room_factory)(owner=carol, name="Elsewhere")
    carol_socket = await connect(elsewhere, carol)
    ada_socket = await connect(duo.room, duo.ada)
    bob_socket = await connect(duo.room, duo.bob)

    await ada_socket.send_json_to(
        {
            "action": "send",
            "body": "meant for elsewhere",
            "key": "k",
            "room": elsewhere.pk,
            "room_id": elsewhere.pk,
            "author": carol.pk,
        }
    )
    assert "meant for elsewhere" in await receive_until(bob_socket, "data-seq")

    saved = await database_sync_to_async(
        lambda: list(Message.objects.values_list("room_id", "author_id"))
    )()
    assert saved == [(duo.room.pk, duo.ada.pk)]
    assert await hears_nothing_but_presence(carol_socket)
    for socket in (ada_socket, bob_socket, carol_socket):
        await socket.disconnect()


async def test_markup_in_the_key_and_in_a_refused_draft_comes_back_to_its_sender_as_text(
    duo, connect
):
    ada_socket = await connect(duo.room, duo.ada)
    bob_socket = await connect(duo.room, duo.bob)
    key = '"><script>alert(3)</script>'

    await ada_socket.send_json_to({"action": "send", "body": HOSTILE + "y" * 4001, "key": key})
    composer = await receive_until(ada_socket, 'id="composer-error"')
    assert "<script>" not in composer
    assert "<img" not in composer
    assert HOSTILE_ESCAPED in composer
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in composer
    assert await database_sync_to_async(saved_bodies)() == []
    assert await hears_nothing_but_presence(bob_socket)

    await still_chatting(ada_socket, bob_socket)
    await ada_socket.disconnect()
    await bob_socket.disconnect()


async def test_markup_in_a_message_reaches_every_member_as_text(duo, connect):
    ada_socket = await connect(duo.room, duo.ada)
    bob_socket = await connect(duo.room, duo.bob)

    await ada_socket.send_json_to({"action": "send", "body": HOSTILE, "key": "k"})
    for socket in (ada_socket, bob_socket):
        frame = await receive_until(socket, "data-seq")
        assert "<script>" not in frame
        assert "<img" not in frame
        assert HOSTILE_ESCAPED in frame
    await ada_socket.disconnect()
    await bob_socket.disconnect()


async def test_resuming_from_past_the_end_sends_nothing_marks_nothing_read_and_can_be_undone(
    duo, connect
):
    ada_socket = await connect(duo.room, duo.ada, resume=None)
    bob_socket = await connect(duo.room, duo.bob)

    await ada_socket.send_json_to({"action": "resume", "after": 10**30})
    await bob_socket.send_json_to({"action": "send", "body": "from bob", "key": "b"})
    assert "from bob" in await receive_until(bob_socket, "data-seq")
    assert await hears_nothing_but_presence(ada_socket)
    membership = await database_sync_to_async(Membership.objects.get)(room=duo.room, member=duo.ada)
    assert membership.last_read_seq == 0  # never a seq the room does not have

    await ada_socket.send_json_to({"action": "resume", "after": 0})
    assert "from bob" in await receive_until(ada_socket, "data-seq")
    await ada_socket.disconnect()
    await bob_socket.disconnect()


# --- Forms -----------------------------------------------------------------------------------


def test_a_room_named_and_described_in_html_is_text_everywhere_it_is_shown(client_of, user):
    client = client_of(user)
    response = client.post(
        reverse("room_create"), {"name": HOSTILE[:80], "topic": HOSTILE}, follow=True
    )
    room = Room.objects.get()
    assert room.name == HOSTILE[:80]  # kept as typed: it is text, and shown as text
    pages = [
        response.text,  # the room, with the "… is ready" notice
        client.get(reverse("room_directory")).text,
        client.get(reverse("room_directory"), {"q": "img"}).text,
        client.get("/").text,  # the sidebar
        services.fragments.sidebar(services.Membership.objects.filter(member=user)),
    ]
    for page in pages:
        assert "<script>alert(2)" not in page
        assert 'onerror="alert(1)"' not in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"name": "n" * 81}, "Ensure this value has at most 80 characters (it has 81)."),
        ({"name": "Book\nclub"}, "Use letters, numbers, spaces and punctuation only."),
        ({"name": "Book\u202eclub"}, "Use letters, numbers, spaces and punctuation only."),
        ({"name": "Book club", "topic": "a\x00b"}, "Null characters are not allowed."),
        ({"name": "Book club", "topic": "a\u200bb"}, "Use letters, numbers"),
        ({"name": "   "}, "This field is required."),
    ],
)
def test_a_room_form_that_cannot_be_saved_says_why_and_saves_nothing(
    client_of, user, fields, error
):
    response = client_of(user).post(reverse("room_create"), fields, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert error in response.text
    assert 'aria-invalid="true"' in response.text
    assert not Room.objects.exists()


@pytest.mark.parametrize(
    "action", ["room_post", "room_join", "room_leave", "room_invite", "room_create"]
)
def test_a_room_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    client_of, user, user_factory, room_factory, action
):
    owner = user_factory(username="owner")
    room = room_factory(owner=owner, name="Open")
    services.room_join(room=room, member=user)
    user_factory(username="grace")
    args = [] if action == "room_create" else [room.slug]
    response = client_of(user if action != "room_invite" else owner, enforce_csrf_checks=True).post(
        reverse(action, args=args), {"body": "hi", "username": "grace", "name": "New"}
    )
    assert response.status_code == 403
    assert not Message.objects.exists()
    assert Room.objects.count() == 1
    assert sorted(room.memberships.values_list("member__username", flat=True)) == [
        "ada",
        "owner",
    ]


def test_posting_to_a_public_room_one_has_not_joined_is_refused_with_words(
    client_of, user, user_factory, room_factory
):
    room = room_factory(owner=user_factory(), name="Open")
    response = client_of(user).post(
        reverse("room_post", args=[room.slug]), {"body": "hello", "key": "k"}, follow=True
    )
    assert "You are not a member of this room." in response.text
    assert not Message.objects.exists()


def test_markup_posted_without_javascript_is_text_on_the_room_page(client_of, user, room_factory):
    room = room_factory(owner=user)
    response = client_of(user).post(
        reverse("room_post", args=[room.slug]), {"body": HOSTILE, "key": "k"}, follow=True
    )
    assert Message.objects.get().body == HOSTILE
    assert HOSTILE not in response.text
    assert HOSTILE_ESCAPED in response.text


@pytest.mark.parametrize(
    "username",
    [HOSTILE, "x" * 5000],
    ids=["markup", "five-thousand-characters"],
)
def test_inviting_someone_nobody_is_called_says_so_as_text_and_briefly(
    client_of, user, room_factory, username
):
    room = room_factory(owner=user, is_private=True)
    response = client_of(user).post(
        reverse("room_invite", args=[room.slug]),
        {"username": username},
        headers={"HX-Request": "true"},
    )
    assert "Nobody here is called" in response.text
    assert "<script>" not in response.text
    assert "x" * 51 not in response.text  # the name is cut, as in every other refusal
    assert room.memberships.count() == 1


# --- Partials and their parameters -----------------------------------------------------------


@pytest.mark.parametrize("before", ["abc", "9" * 30, "-9" * 15, "", "1.5"])
def test_older_messages_with_a_bad_before_answer_a_page_never_an_error(
    client_of, user, room_factory, before
):
    room = room_factory(owner=user)
    services.message_post(room=room, author=user, body="only one", key="k")
    url = reverse("room_messages", args=[room.slug])
    response = client_of(user).get(url, {"before": before}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text


@pytest.mark.parametrize(("after", "seq"), [("abc", 0), ("9" * 30, 1), ("-5", 0), ("", 0)])
def test_a_fresh_socket_element_for_an_old_page_with_a_bad_after_resumes_from_what_the_room_has(
    client_of, user, room_factory, after, seq
):
    # Only a page rendered before #room-seq moved out of the socket element asks with "after".
    room = room_factory(owner=user)
    services.message_post(room=room, author=user, body="only one", key="k")
    response = client_of(user).get(reverse("room_socket", args=[room.slug]), {"after": after})
    assert response.status_code == 200
    assert re.search(rf'id="room-seq" name="after" value="{seq}"', response.text)


@pytest.mark.parametrize(
    "params",
    [{"q": HOSTILE}, {"page": "abc"}, {"page": "9" * 30}, {"page": "-1"}, {"q": "g" * 5000}],
    ids=["markup-query", "page-not-a-number", "page-past-the-end", "page-negative", "long-query"],
)
def test_the_directory_answers_any_query_with_a_page_and_echoes_it_as_text(
    client_of, user, room_factory, params
):
    room_factory(owner=user, name="General")
    response = client_of(user).get(reverse("room_directory"), params)
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "g" * 101 not in response.text  # a query is cut to 100 characters


@pytest.mark.parametrize("action", ["room_post", "room_join", "room_leave", "room_invite"])
def test_a_room_action_asked_for_with_get_is_refused(client_of, user, room_factory, action):
    room = room_factory(owner=user)
    assert client_of(user).get(reverse(action, args=[room.slug])).status_code == 405
    assert room.memberships.count() == 1


def test_a_room_that_does_not_exist_is_404_for_every_page_and_action(client_of, user):
    client = client_of(user)
    for name in ("room", "room_messages", "room_socket"):
        assert client.get(reverse(name, args=["no-such-room"])).status_code == 404
    for name in ("room_post", "room_join", "room_leave", "room_invite"):
        assert client.post(reverse(name, args=["no-such-room"]), {"body": "x"}).status_code == 404
    assert not Message.objects.exists()
