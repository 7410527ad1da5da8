"""Rooms and live chat as two people use them, each in their own browser."""

import re

from playwright.sync_api import expect

from e2e.helpers import PHONE, count_room_sockets, has_no_sideways_scroll, say, screenshot
from rooms import selectors, services
from rooms.models import Message


def log(page):
    return page.get_by_role("log")


def test_two_members_create_find_join_and_chat_live(member_context, user_factory, console_errors):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())

    # Ada creates a public room.
    ada_page.goto("/rooms/new/")
    ada_page.get_by_label("Name").fill("Gardening club")
    ada_page.get_by_label("Topic").fill("Tomatoes, mostly")
    screenshot(ada_page, "room-create-desktop")
    ada_page.get_by_role("button", name="Create room").click()
    expect(ada_page).to_have_url(re.compile(r"/rooms/gardening-club/$"))
    expect(ada_page.get_by_role("heading", name="Gardening club")).to_be_visible()
    expect(ada_page.get_by_text("1 online: Ada")).to_be_visible()

    # Bob finds it by typing part of its name, and joins.
    bob_page.goto("/rooms/")
    bob_page.get_by_label("Search rooms").press_sequentially("garden")
    expect(bob_page).to_have_url(re.compile(r"/rooms/\?q=garden$"))
    results = bob_page.get_by_role("list", name="Public rooms")
    expect(results.get_by_role("listitem")).to_have_count(1)
    screenshot(bob_page, "room-directory-desktop")
    bob_page.get_by_role("button", name="Join Gardening club").click()
    expect(bob_page).to_have_url(re.compile(r"/rooms/gardening-club/$"))
    expect(bob_page.get_by_role("heading", name="Gardening club")).to_be_visible()
    expect(ada_page.get_by_text("2 online: Ada, Bob")).to_be_visible()

    # Live, both ways; the composer empties and keeps the focus.
    say(ada_page, "Hello Bob!")
    expect(log(bob_page)).to_contain_text("Hello Bob!")
    expect(ada_page.get_by_label("Message", exact=True)).to_have_value("")
    expect(ada_page.get_by_label("Message", exact=True)).to_be_focused()
    say(bob_page, "Hi Ada, the tomatoes are red.")
    expect(log(ada_page)).to_contain_text("Hi Ada, the tomatoes are red.")

    # Markup is text on both sides and runs nothing.
    hostile = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    say(bob_page, hostile)
    for page in (ada_page, bob_page):
        expect(log(page).locator(".message__body").last).to_have_text(hostile)
        assert page.evaluate("window.pwned") is None
        assert page.locator(".message__body img, .message__body script").count() == 0

    # Too long: a clear error, the text kept, nothing saved, and the socket still works.
    say(ada_page, "x" * 4001)
    expect(ada_page.get_by_role("alert")).to_have_text(
        "Messages can be at most 4,000 characters; yours has 4,001."
    )
    assert not Message.objects.filter(body="x" * 4001).exists()
    say(ada_page, "Sorry, too much.")
    expect(log(bob_page)).to_contain_text("Sorry, too much.")

    for page in (ada_page, bob_page):
        expect(log(page).locator(".message")).to_have_count(4)
    screenshot(ada_page, "room-conversation-desktop")
    screenshot(bob_page, "room-conversation-bob-desktop")
    assert console_errors.errors == []


def test_messages_posted_while_a_member_is_offline_arrive_once_in_order_without_reload(
    member_context, user_factory, cuttable_link
):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Night shift")
    services.room_join(room=room, member=bob)
    ada_page = member_context(ada).new_page()
    bob_page = member_context(bob).new_page()  # Bob's network goes through a link we can cut
    bob_sockets = count_room_sockets(bob_page)
    ada_page.goto(room.get_absolute_url())
    bob_page.goto(cuttable_link.url + room.get_absolute_url())
    for page in (ada_page, bob_page):
        expect(page.get_by_text("2 online")).to_be_visible()

    say(ada_page, "before")
    expect(log(bob_page)).to_contain_text("before")
    cuttable_link.cut()
    expect(ada_page.get_by_text("1 online: Ada")).to_be_visible()  # the server saw him go
    for n in range(1, 6):
        say(ada_page, f"while away {n}")
        expect(ada_page.get_by_label("Message", exact=True)).to_have_value("")
    bob_page.wait_for_timeout(2_000)
    cuttable_link.restore()

    expected = ["before", *(f"while away {n}" for n in range(1, 6))]
    bodies = log(bob_page).locator(".message__body")
    expect(bodies).to_have_text(expected, timeout=30_000)
    expect(ada_page.get_by_text("2 online: Ada, Bob")).to_be_visible()
    bob_page.wait_for_timeout(1_000)  # anything doubled would have arrived by now
    expect(bodies).to_have_text(expected)
    assert len(bob_sockets) >= 2, "the page should have reconnected"
    assert bob_page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_a_message_typed_while_offline_is_sent_once_on_reconnect(
    member_context, user_factory, cuttable_link
):
    ada = user_factory(username="ada", display_name="Ada")
    room = services.room_create(creator=ada, name="Train")
    page = member_context(ada).new_page()
    sockets = count_room_sockets(page)
    page.goto(cuttable_link.url + room.get_absolute_url())
    expect(page.get_by_text("1 online: Ada")).to_be_visible()

    cuttable_link.cut()
    page.wait_for_timeout(500)
    say(page, "typed in a tunnel")
    page.get_by_label("Message", exact=True).press("Enter")  # impatient: sent twice
    # Not sent yet, and visibly so: the text stays in the composer until the server has it.
    expect(page.get_by_label("Message", exact=True)).to_have_value("typed in a tunnel")
    page.wait_for_timeout(1_500)
    cuttable_link.restore()

    expect(log(page).locator(".message__body")).to_have_text(["typed in a tunnel"], timeout=30_000)
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    page.wait_for_timeout(1_000)
    assert list(Message.objects.values_list("body", flat=True)) == ["typed in a tunnel"]
    assert len(sockets) >= 2, "the page should have reconnected"


def test_a_private_room_is_not_found_until_its_owner_invites_you(member_context, user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Board", is_private=True)
    bob_page = member_context(bob).new_page()
    response = bob_page.goto(room.get_absolute_url())
    assert response.status == 404
    bob_page.goto("/rooms/?q=board")
    expect(bob_page.get_by_text("No public room matches “board”.")).to_be_visible()

    ada_page = member_context(ada).new_page()
    ada_page.goto(room.get_absolute_url())
    ada_page.get_by_label("Invite by username").fill("bob")
    ada_page.get_by_role("button", name="Invite").click()
    expect(ada_page.get_by_role("status").filter(has_text="is now in this room")).to_have_text(
        "Bob is now in this room."
    )

    response = bob_page.goto(room.get_absolute_url())
    assert response.status == 200
    expect(bob_page.get_by_role("heading", name="Board")).to_be_visible()
    expect(bob_page.get_by_role("navigation", name="Rooms and contacts")).to_contain_text("Board")


def test_rooms_on_a_desktop_and_a_phone(member_context, user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Gardening club", topic="Tomatoes, mostly")
    services.room_create(creator=bob, name="Chess", topic="Openings and endgames")
    services.room_join(room=room, member=bob)
    for n, (author, body) in enumerate(
        [
            (ada, "Morning! Anyone tried the new seeds?"),
            (bob, "Yes, planted them Sunday."),
            (ada, "Which ones came up first?"),
            (bob, "The cherry tomatoes, by a mile."),
        ]
    ):
        services.message_post(room=room, author=author, body=body, key=str(n))

    for device, options in (("desktop", {}), ("phone", PHONE)):
        page = member_context(ada, **options).new_page()
        for path, name in (
            ("/rooms/", "room-directory"),
            ("/rooms/new/", "room-create"),
            (room.get_absolute_url(), "room-showcase"),
        ):
            page.goto(path)
            page.wait_for_timeout(400)
            assert has_no_sideways_scroll(page), path
            screenshot(page, f"{name}-{device}")
        expect(log(page).locator(".message")).to_have_count(4)


def test_a_room_page_opens_one_room_socket_and_one_member_socket(member_context, user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    room = services.room_create(creator=ada, name="Sockets")
    page = member_context(ada).new_page()
    opened = []
    page.on("websocket", lambda ws: opened.append(ws.url.split("/ws/", 1)[1]))
    page.goto(room.get_absolute_url())
    expect(page.get_by_text("1 online: Ada")).to_be_visible()
    page.wait_for_timeout(500)
    # The member socket says which rooms the page has rows for (rooms.selectors.rooms_digest),
    # and which one it shows.
    assert sorted(opened) == [
        f"member/?rooms={selectors.rooms_digest({room.pk})}&here={room.slug}",
        f"rooms/{room.pk}/",
    ]


def test_the_room_a_page_shows_stays_marked_in_the_sidebar_when_its_lists_change(
    member_context, user_factory, console_errors
):
    # Joining a room in one tab pushes a new room list to every tab. Each keeps the row of the
    # room its page shows marked as current (and highlighted), or the first tab loses its own.
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    chess = services.room_create(creator=ada, name="Chess club")
    services.room_create(creator=ada, name="Deploy day")
    services.room_join(room=chess, member=bob)
    context = member_context(bob)
    reading = console_errors(context.new_page())
    reading.goto(chess.get_absolute_url())
    expect(reading.get_by_text("1 online: Bob")).to_be_visible()
    rooms = reading.get_by_role("region", name="Rooms")
    current = rooms.locator('[aria-current="page"]')
    expect(current).to_have_text("Chess club")

    other = console_errors(context.new_page())
    other.goto("/rooms/?q=deploy")
    other.get_by_role("button", name="Join Deploy day").click()
    expect(rooms).to_contain_text("Deploy day")  # the pushed list, in the first tab
    expect(current).to_have_text("Chess club")
    expect(rooms.locator('[aria-current="page"]')).to_have_count(1)
    screenshot(reading, "sidebar-current-after-push-desktop")
    assert console_errors.errors == []
