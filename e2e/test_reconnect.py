"""The room page reconnects after every kind of close, except logging out; a member socket that
reconnects brings the page what it missed."""

import re

import pytest
from playwright.sync_api import expect

from e2e.helpers import count_room_sockets, say
from parley.tests.live_server import LiveServer
from rooms import selectors, services


@pytest.fixture
def own_server():
    """A server of this test's own, to restart or to configure."""
    servers = []

    def start(**env):
        port = servers[-1].port if servers else 0
        server = LiveServer.for_tests(port=port, **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_after_a_server_restart_the_page_reconnects_and_catches_up(
    own_server, member_context, user_factory
):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Restarts")
    services.room_join(room=room, member=bob)
    server = own_server()
    bob_page = member_context(bob).new_page()
    sockets = count_room_sockets(bob_page)
    bob_page.goto(server.url + room.get_absolute_url())
    expect(bob_page.get_by_text("1 online: Bob")).to_be_visible()

    server.stop()
    server = own_server()  # the same port, a new process
    ada_page = member_context(ada).new_page()
    ada_page.goto(server.url + room.get_absolute_url())
    say(ada_page, "posted while Bob was reconnecting")

    expect(bob_page.get_by_role("log")).to_contain_text(
        "posted while Bob was reconnecting", timeout=15_000
    )
    expect(bob_page.get_by_text("2 online: Ada, Bob")).to_be_visible()
    assert len(sockets) >= 2


def test_after_daphnes_idle_timeout_closes_the_socket_with_1000_the_page_reconnects(
    member_context, user_factory
):
    ada = user_factory(username="ada", display_name="Ada")
    room = services.room_create(creator=ada, name="Long day")
    # daphne closes sockets older than --websocket_timeout with 1000 (24 h by default), a code
    # htmx's ws extension does not reconnect after; here it is 3 s.
    server = LiveServer.for_tests(daphne_args=("--websocket_timeout", "3"))
    try:
        page = member_context(ada).new_page()
        sockets = count_room_sockets(page)
        page.goto(server.url + room.get_absolute_url())
        expect(page.get_by_text("1 online: Ada")).to_be_visible()
        page.get_by_label("Message", exact=True).fill("a draft kept across the reconnect")
        # Closed after 3 s, then reopened by the page: bounded, not a fixed pause (a loaded
        # machine is slower to do both).
        for _ in range(75):
            if len(sockets) >= 2:
                break
            page.wait_for_timeout(200)
        assert len(sockets) >= 2
        expect(page.get_by_label("Message", exact=True)).to_have_value(
            "a draft kept across the reconnect"
        )
        page.get_by_label("Message", exact=True).press("Enter")
        expect(page.get_by_role("log")).to_contain_text("a draft kept across the reconnect")
    finally:
        server.stop()


def test_a_member_socket_opened_after_a_join_the_page_missed_brings_the_row_with_its_count(
    member_context, user_factory, console_errors
):
    # Bob joins a room that his page never hears of (seeded here, announced to nobody): as a
    # page misses what happens while its member socket is away, or still opening (a Join clicked
    # at once, in e2e/test_deployed.py). The socket that opens next (the page's first, or the
    # one reopened after daphne closed it) finds other rooms than the page has rows for, and
    # sends the rows with their counts: never a badge without its row, which htmx cannot place
    # (htmx:oobErrorNoTarget).
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Deploy day")
    # Sockets closed with 1000 after 3 s, and reopened by the page (see the test above).
    server = LiveServer.for_tests(daphne_args=("--websocket_timeout", "3"))
    try:
        page = console_errors(member_context(bob).new_page())
        opened = []
        page.on("websocket", lambda ws: "/ws/member/" in ws.url and opened.append(ws))
        page.goto(server.url + "/rooms/")
        sidebar = page.get_by_role("navigation", name="Rooms and contacts")
        expect(sidebar).to_contain_text("You have not joined a room yet.")
        services.room_join(room=room, member=bob)
        services.message_post(room=room, author=ada, body="Is it up?", key="k1")

        row = sidebar.get_by_role("link", name=re.compile(r"^Deploy day\s*, 1 unread$"))
        expect(row).to_be_visible(timeout=20_000)
        expect(sidebar).not_to_contain_text("You have not joined a room yet.")
        # The rows brought the page its new digest, which the next socket opens with; the row
        # and its count stay.
        count = len(opened)
        for _ in range(75):
            if len(opened) > count:
                break
            page.wait_for_timeout(200)
        assert len(opened) > count
        assert f"rooms={selectors.rooms_digest({room.pk})}" in opened[-1].url
        expect(row).to_be_visible()
    finally:
        server.stop()
    assert console_errors.errors == []


def test_logging_out_in_another_tab_closes_the_room_for_good(
    own_server, member_context, user_factory
):
    ada = user_factory(username="ada", display_name="Ada")
    room = services.room_create(creator=ada, name="Goodbye")
    server = own_server()
    context = member_context(ada)
    room_page = context.new_page()
    sockets = count_room_sockets(room_page)
    room_page.goto(server.url + room.get_absolute_url())
    expect(room_page.get_by_text("1 online: Ada")).to_be_visible()

    other_tab = context.new_page()
    other_tab.goto(server.url + "/")
    other_tab.get_by_role("button", name="Log out").click()

    # The room's socket closes for good; the page goes to log in, and will come back here.
    expect(room_page).to_have_url(
        server.url + f"/accounts/login/?next={room.get_absolute_url()}", timeout=10_000
    )
    assert len(sockets) == 1
