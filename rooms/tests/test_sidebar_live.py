"""The sidebar's rooms and unread counts, kept live through the member socket."""

import re
from html import unescape
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.urls import reverse

from accounts import services as contact_services
from rooms import selectors, services
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


# --- No badge without its row ---------------------------------------------------------------


class Swapped(HTMLParser):
    """The ids in some HTML, and the target of each of its top-level elements: what htmx's ws
    extension swaps a pushed frame's elements into (by id, or hx-swap-oob's selector)."""

    VOID = {"input", "link", "meta", "br", "img", "hr", "source", "area", "base", "col", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []
        self.depth = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if self.depth == 0:
            oob = attributes.get("hx-swap-oob") or "true"
            target = oob.split(":", 1)[1] if ":" in oob else f"#{attributes.get('id')}"
            assert target.startswith("#"), f"only ids are understood here, not {target!r}"
            self.targets.append(target[1:])
        if tag not in self.VOID:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag not in self.VOID:
            self.depth -= 1


class Page:
    """A page as its sockets' frames find it: a frame with a part whose target the page lacks is
    what htmx reports as htmx:oobErrorNoTarget, a console error (the browser tests fail on it)."""

    def __init__(self, html: str):
        self.ids = Swapped(html).ids

    def swap(self, frame: str) -> None:
        pushed = Swapped(frame)
        missing = [target for target in pushed.targets if target not in self.ids]
        assert not missing, f"pushed to {missing}, which the page has no element for"
        self.ids |= pushed.ids  # additive: the rows these tests follow only ever come


def page_of(client_of, member, url: str = "/rooms/") -> tuple[Page, str]:
    """A page of `member`'s, and the path its member socket connects to."""
    html = client_of(member).get(url).text
    return Page(html), unescape(re.search(r'ws-connect="(/ws/member/[^"]*)"', html).group(1))


async def open_page_socket(site_socket, path: str, member):
    socket = await site_socket(path, member)
    assert (await socket.connect())[0]
    return socket


async def frames_until(socket, page: Page, found) -> str:
    """Swap the frames the socket sends into `page` until one has `found` (a pattern)."""
    while True:
        frame = await socket.receive_from(timeout=4)
        page.swap(frame)
        if re.search(found, frame, re.S):
            return frame


def pushed_badge(room_id: int, count: int) -> str:
    """A pattern for a frame that brings `room_id`'s unread badge with `count`."""
    return rf'id="unread-{room_id}" class="unread" hx-swap-oob="true"><span[^>]*>, </span>{count}<'


def befriend(a, b):
    """`a` and `b` ask each other, so they are contacts; their direct conversation."""
    contact_services.contact_request_send(sender=a, username=b.username)
    contact_services.contact_request_send(sender=b, username=a.username)
    return selectors.direct_room(a, b)


@pytest.fixture
def not_yet_in(user_factory):
    """Ada's room "Deploy day", and Bob, who is not in it yet."""
    ada = user_factory(username="ada")
    bob = user_factory(username="bob")
    room = services.room_create(creator=ada, name="Deploy day")
    return SimpleNamespace(ada=ada, bob=bob, room=room)


async def test_a_room_joined_as_the_page_opens_comes_as_a_row_before_any_badge(
    not_yet_in, client_of, site_socket
):
    # Bob clicks Join on the room directory while its member socket is still opening: the page
    # was rendered without the room, and the socket, which joined the member's group after the
    # join's news went out, never hears of it. Its catch-up sent the room's badge alone, which
    # htmx could not place (htmx:oobErrorNoTarget, #unread-1, in e2e/test_deployed.py).
    ada, bob, room = not_yet_in.ada, not_yet_in.bob, not_yet_in.room
    page, path = await database_sync_to_async(page_of)(client_of, bob)
    await database_sync_to_async(services.room_join)(room=room, member=bob)
    await database_sync_to_async(post)(room, ada, "Is it up?")

    socket = await open_page_socket(site_socket, path, bob)
    frame = await frames_until(socket, page, f'id="unread-{room.pk}"')
    assert "Deploy day" in frame  # the row, with its count
    assert re.search(rf'id="unread-{room.pk}" class="unread">.*?1<', frame, re.S)
    assert selectors.rooms_digest({room.pk}) in frame  # what the page has rows for now
    await socket.disconnect()


async def test_a_page_with_a_row_for_each_room_gets_only_the_counts_as_its_socket_opens(
    duo, client_of, site_socket
):
    page, path = await database_sync_to_async(page_of)(client_of, duo.bob)
    await database_sync_to_async(post)(duo.room, duo.ada, "one")
    socket = await open_page_socket(site_socket, path, duo.bob)
    frame = await socket.receive_from(timeout=4)
    page.swap(frame)
    assert "sidebar-room-list" not in frame
    assert badge_counts(frame) == {duo.room.pk: "1"}
    await socket.disconnect()


async def test_a_room_joined_with_the_page_open_sends_its_row_before_its_counts(
    not_yet_in, client_of, site_socket
):
    ada, bob, room = not_yet_in.ada, not_yet_in.bob, not_yet_in.room
    page, path = await database_sync_to_async(page_of)(client_of, bob)
    socket = await open_page_socket(site_socket, path, bob)

    await database_sync_to_async(services.room_join)(room=room, member=bob)
    await database_sync_to_async(post)(room, ada, "welcome")  # while the row is on its way
    frame = await frames_until(socket, page, "Deploy day")
    assert selectors.rooms_digest({room.pk}) in frame
    await frames_until(socket, page, pushed_badge(room.pk, 1))
    await socket.disconnect()


async def test_a_new_contacts_conversation_comes_with_its_row_before_its_counts(
    user_factory, client_of, site_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    page, path = await database_sync_to_async(page_of)(client_of, bob)
    socket = await open_page_socket(site_socket, path, bob)

    def befriend_and_say_hello():
        room = befriend(bob, ada)
        post(room, ada, "hello")
        return room

    room = await database_sync_to_async(befriend_and_say_hello)()
    await frames_until(socket, page, pushed_badge(room.pk, 1))
    await socket.disconnect()


def current_links(frame: str) -> list[str]:
    """The hrefs of the links a frame marks as the page's own."""
    return re.findall(r'<a href="([^"]*)" aria-current="page">', frame)


async def test_a_pushed_room_list_keeps_the_row_of_the_room_the_page_shows_current(
    not_yet_in, user_factory, client_of, site_socket
):
    # Bob reads "Chess club" in one tab and joins "Deploy day" in another: the new list that
    # both tabs get must still mark "Chess club" in the first, or its highlight (and a screen
    # reader's "current page") is gone.
    ada, bob, deploy_day = not_yet_in.ada, not_yet_in.bob, not_yet_in.room
    chess = await database_sync_to_async(services.room_create)(creator=ada, name="Chess club")
    await database_sync_to_async(services.room_join)(room=chess, member=bob)
    reading, path = await database_sync_to_async(page_of)(client_of, bob, chess.get_absolute_url())
    assert path.endswith(f"&here={chess.slug}")
    browsing, other_path = await database_sync_to_async(page_of)(client_of, bob, "/rooms/")
    tabs = [
        await open_page_socket(site_socket, path, bob),
        await open_page_socket(site_socket, other_path, bob),
    ]

    await database_sync_to_async(services.room_join)(room=deploy_day, member=bob)
    frame = await frames_until(tabs[0], reading, "Deploy day")
    assert current_links(frame) == [chess.get_absolute_url()]
    frame = await frames_until(tabs[1], browsing, "Deploy day")
    assert current_links(frame) == []  # the directory is no room's page
    for tab in tabs:
        await tab.disconnect()


async def test_a_pushed_contact_list_keeps_the_conversation_the_page_shows_current(
    user_factory, client_of, site_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    cleo = await database_sync_to_async(user_factory)(username="cleo", display_name="Cleo")

    room = await database_sync_to_async(befriend)(ada, bob)
    _, path = await database_sync_to_async(page_of)(client_of, bob, room.get_absolute_url())
    socket = await open_page_socket(site_socket, path, bob)

    await database_sync_to_async(befriend)(cleo, bob)  # Bob's contact list changes
    frame = ""
    while not ('id="sidebar-contact-list"' in frame and "Cleo" in frame):
        frame = await socket.receive_from(timeout=4)
    assert current_links(frame) == [room.get_absolute_url()]
    await socket.disconnect()


def test_the_member_sockets_fresh_copy_says_the_rooms_the_page_asked_with(client_of, user):
    digest = selectors.rooms_digest({1, 2})
    fresh = client_of(user).get(reverse("member_socket"), {"rooms": digest}).text
    assert f'ws-connect="/ws/member/?rooms={digest}"' in fresh
    assert 'hx-include="#sidebar-rooms-digest"' in fresh
    for junk in ("", "abc", digest.upper(), digest + "0", '"><script>'):
        fresh = client_of(user).get(reverse("member_socket"), {"rooms": junk}).text
        assert 'ws-connect="/ws/member/?rooms="' in fresh


def test_the_member_sockets_fresh_copy_says_the_room_the_page_shows(client_of, user):
    url = reverse("member_socket")
    fresh = client_of(user).get(url, {"rooms": "", "here": "a-bad-day"}).text
    assert 'ws-connect="/ws/member/?rooms=&amp;here=a-bad-day"' in fresh
    assert f'hx-get="{url}?here=a-bad-day"' in fresh  # and so does its own fresh copy
    for junk in ("", "a bad day", "<script>", "x" * 101, "é"):
        fresh = client_of(user).get(url, {"here": junk}).text
        assert "here=" not in fresh


@pytest.mark.parametrize(
    "query",
    [
        "rooms=%3Cscript%3E",
        "rooms=" + "a" * 4000,
        "rooms=" + "0" * 15,
        "rooms=",
        "x=1",
        "rooms=&here=%22%3E%3Cscript%3E",
        "here=" + "a" * 4000,
    ],
)
async def test_a_bad_rooms_digest_counts_as_a_page_that_says_nothing(duo, site_socket, query):
    # Only a digest is compared, never shown: anything else is a page that does not say, which
    # gets the counts alone, as before there was a digest.
    socket = await open_page_socket(site_socket, f"/ws/member/?{query}", duo.bob)
    frame = await socket.receive_from(timeout=4)
    assert "sidebar-room-list" not in frame
    assert "script" not in frame
    assert badge_counts(frame) == {duo.room.pk: ""}
    await socket.disconnect()
