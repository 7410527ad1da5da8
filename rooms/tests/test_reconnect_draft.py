"""A reconnecting room page keeps its draft without putting it in a URL: the socket element's
refresh asks with nothing, the page's seq stays outside that element, and the seq and the draft
travel in the resume frame."""

from html.parser import HTMLParser

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from rooms import services

HTMX = {"HX-Request": "true"}


class FieldsById(HTMLParser):
    """For each element with an id: the names of the form fields it is or holds."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.open: list[str | None] = []
        self.fields: dict[str, set[str]] = {}
        self.attributes: dict[str, dict] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.fields.setdefault(attrs["id"], set())
            self.attributes[attrs["id"]] = attrs
        if attrs.get("name") and tag in {"input", "textarea", "select", "button"}:
            for element_id in [*self.open, attrs.get("id")]:
                if element_id:
                    self.fields[element_id].add(attrs["name"])
        if tag not in self.VOID:
            self.open.append(attrs.get("id"))

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.open:
            self.open.pop()


def reconnect_request_fields(html: str) -> set[str]:
    """The fields the socket element's hx-get sends: what its hx-include selects (ids)."""
    page = FieldsById(html)
    return fields_of(page, page.attributes["room-socket"].get("hx-include", ""))


def fields_of(page: FieldsById, include: str) -> set[str]:
    fields = set()
    for selector in filter(None, include.split(",")):
        selector = selector.strip()
        assert selector.startswith("#"), f"only ids are understood here, not {selector!r}"
        fields |= page.fields[selector[1:]]
    return fields


@pytest.mark.django_db
def test_the_room_pages_socket_reconnects_with_nothing_in_its_url(auth_client, room_factory, user):
    room = room_factory(owner=user)
    response = auth_client.get(room.get_absolute_url())
    assert reconnect_request_fields(response.text) == set()


@pytest.mark.django_db
def test_the_pages_seq_is_outside_the_socket_element_and_the_resume_frame_carries_it(
    auth_client, room_factory, user
):
    # The ws extension may reopen the old socket while a fresh copy of the element is on its
    # way; what that socket shows moves #room-seq, and the copy must not bring an older one.
    room = room_factory(owner=user)
    response = auth_client.get(room.get_absolute_url())
    page = FieldsById(response.text)
    assert "room-seq" in page.attributes
    assert "after" not in page.fields["room-socket"]
    resume = page.attributes["room-resume"]
    assert resume["hx-trigger"] == "htmx:wsOpen from:closest #room-socket"
    assert fields_of(page, resume["hx-include"]) >= {"after", "key", "body"}


@pytest.mark.django_db
def test_a_fresh_socket_element_reconnects_with_nothing_either_and_carries_no_seq(
    auth_client, room_factory, user
):
    room = room_factory(owner=user)
    response = auth_client.get(reverse("room_socket", args=[room.slug]), headers=HTMX)
    assert reconnect_request_fields(response.text) == set()
    elements = FieldsById(response.text).attributes
    assert "room-seq" not in elements
    assert "room-resume" in elements


@pytest.mark.django_db
def test_a_fresh_socket_element_keeps_the_pages_draft_and_ignores_any_draft_in_the_url(
    auth_client, room_factory, user
):
    room = room_factory(owner=user)
    response = auth_client.get(
        reverse("room_socket", args=[room.slug]),
        {"key": "draft-key", "body": "half a thought"},
        headers=HTMX,
    )
    elements = FieldsById(response.text).attributes
    assert "hx-preserve" in elements["composer-body"]
    assert "hx-preserve" in elements["composer-key"]
    # The form is the fresh one: htmx's ws extension binds it to the new socket.
    assert "hx-preserve" not in elements["composer"]
    assert "hx-swap-oob" not in elements["composer"]
    assert "draft-key" not in response.text
    assert "half a thought" not in response.text


@pytest.mark.django_db
def test_the_composer_a_socket_pushes_after_a_send_replaces_the_pages_own(room_factory, user):
    from rooms import fragments

    room = room_factory(owner=user)
    elements = FieldsById(fragments.composer(room=room, key="k")).attributes
    assert elements["composer"]["hx-swap-oob"] == "true"
    assert not [name for name, attributes in elements.items() if "hx-preserve" in attributes]


# --- The resume frame carries the draft ----------------------------------------------------


@pytest.fixture
def resumed(site_socket):
    async def open_and_resume(room, member, **frame):
        socket = await site_socket(f"/ws/rooms/{room.pk}/", member)
        assert (await socket.connect())[0]
        await socket.send_json_to({"action": "resume", "after": room.last_seq, **frame})
        return socket

    return open_and_resume


async def composers(socket, wait: float = 0.7) -> list[str]:
    """Every composer the socket pushes within `wait` seconds."""
    found = []
    while not await socket.receive_nothing(timeout=wait):
        frame = await socket.receive_from()
        if 'id="composer"' in frame:
            found.append(frame)
    return found


@pytest.mark.django_db(transaction=True)
async def test_resuming_with_a_draft_that_was_already_sent_empties_the_composer(
    user, room_factory, resumed
):
    room = await database_sync_to_async(room_factory)(owner=user)
    await database_sync_to_async(services.message_post)(
        room=room, author=user, body="ж" * 3000, key="sent-key"
    )
    socket = await resumed(room, user, key="sent-key", body="ж" * 3000)

    [composer] = await composers(socket)
    assert 'value=""' in composer
    assert "sent-key" not in composer
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_resuming_with_an_unsent_draft_says_it_is_not_sent_and_keeps_draft_and_key(
    user, room_factory, resumed
):
    # A send lost with the old socket (or never made) is never sent by anything but the member:
    # the page says so rather than leave them thinking it went.
    room = await database_sync_to_async(room_factory)(owner=user)
    socket = await resumed(room, user, key="draft-key", body="ж" * 3000)

    [composer] = await composers(socket)
    assert "Not sent yet" in composer
    assert 'role="alert"' in composer
    assert 'value="draft-key"' in composer
    assert "ж" * 3000 in composer
    await socket.send_json_to({"action": "send", "body": "ж" * 3000, "key": "draft-key"})
    assert 'value=""' in (await composers(socket))[-1]
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_resuming_with_an_empty_composer_leaves_it_alone(user, room_factory, resumed):
    room = await database_sync_to_async(room_factory)(owner=user)
    socket = await resumed(room, user, key="draft-key", body="   ")

    assert await composers(socket) == []
    await socket.disconnect()
