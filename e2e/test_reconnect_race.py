"""After an abnormal close the room page has two ways back: htmx's ws extension reopens the old
socket by itself, and the socket element fetches a fresh copy of itself 1 s later. Whatever
order they come back in, each message is shown once."""

import time

from playwright.sync_api import expect

from e2e.helpers import count_room_sockets, say
from rooms import services


def wait_until(page, condition, message: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        page.wait_for_timeout(50)


def resumed(socket) -> list:
    """The resume frames `socket` sends from now on."""
    frames = []
    socket.on("framesent", lambda frame: '"resume"' in str(frame) and frames.append(frame))
    return frames


def test_a_message_the_reopened_old_socket_showed_is_not_shown_again_by_the_fresh_one(
    member_context, user_factory, cuttable_link
):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Race")
    services.room_join(room=room, member=bob)
    services.message_post(room=room, author=bob, body="before the cut", key="k1")
    page = member_context(ada).new_page()
    sockets = count_room_sockets(page)
    frames: dict[int, list] = {}
    page.on("websocket", lambda ws: "/ws/rooms/" in ws.url and frames.update({id(ws): resumed(ws)}))
    # The fresh copy of the socket element is held until the old socket has reopened and shown
    # a new message: the bad order, every time.
    held = []
    page.route("**/rooms/race/socket/**", lambda route: held.append(route))
    page.goto(cuttable_link.url + room.get_absolute_url())  # Ada's network can be cut
    bob_page = member_context(bob).new_page()
    bob_page.goto(room.get_absolute_url())
    expect(page.get_by_role("log")).to_contain_text("before the cut")
    wait_until(page, lambda: frames and frames[id(sockets[0])], "the page never resumed")

    cuttable_link.cut()  # the browser sees 1006: the extension will reopen the old socket
    wait_until(page, lambda: held, "the page never asked for a fresh socket element")
    cuttable_link.restore()
    wait_until(
        page,
        lambda: len(sockets) >= 2 and frames.get(id(sockets[-1])),
        "the extension never reopened the old socket",
    )
    say(bob_page, "while the copy was on its way")
    log = page.get_by_role("log")
    expect(log).to_contain_text("while the copy was on its way")  # shown by the reopened one

    reopened = len(sockets)
    held[0].continue_()  # the fresh copy arrives: its new socket resumes
    wait_until(
        page,
        lambda: len(sockets) > reopened and frames.get(id(sockets[-1])),
        "the fresh socket element never resumed",
    )
    page.wait_for_timeout(1_000)  # anything doubled would have arrived by now
    expect(log.locator(".message__body", has_text="while the copy was on its way")).to_have_count(1)
    expect(log.locator(".message__body", has_text="before the cut")).to_have_count(1)
    say(bob_page, "and after")
    expect(log.locator(".message__body", has_text="and after")).to_have_count(1)
    expect(page.locator("#room-socket")).to_have_count(1)


def test_a_socket_whose_element_was_replaced_shows_nothing_more(member_context, user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    room = services.room_create(creator=ada, name="Leftover")
    services.room_join(room=room, member=bob)
    page = member_context(ada).new_page()
    sockets = count_room_sockets(page)
    frames: dict[int, list] = {}
    page.on("websocket", lambda ws: "/ws/rooms/" in ws.url and frames.update({id(ws): resumed(ws)}))
    page.goto(room.get_absolute_url())
    bob_page = member_context(bob).new_page()
    bob_page.goto(room.get_absolute_url())
    expect(page.get_by_text("2 online")).to_be_visible()
    received = []
    sockets[0].on("framereceived", lambda frame: received.append(str(frame)))
    # The old socket is kept open past its element's replacement (its wrapper's close does
    # nothing), as a socket the ws extension reopened on a timer after the swap would be.
    page.evaluate("""() => {
        const element = document.getElementById('room-socket')
        element['htmx-internal-data'].webSocket.close = () => {}
        htmx.trigger(element, 'htmx:wsClose')
    }""")
    wait_until(
        page,
        lambda: len(sockets) >= 2 and frames.get(id(sockets[-1])),
        "the fresh socket element never resumed",
    )

    say(bob_page, "one copy only")
    log = page.get_by_role("log")
    expect(log).to_contain_text("one copy only")
    wait_until(page, lambda: any("one copy only" in frame for frame in received), "not sent")
    page.wait_for_timeout(500)
    expect(log.locator(".message__body", has_text="one copy only")).to_have_count(1)
