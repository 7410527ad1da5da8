"""Ringing as people meet it, in real browsers: a call rings in every tab the callee has open
and stops in all of them once answered or declined in one; the caller reads how it went (declined,
busy, no answer); a missed call is said and kept as a row in the conversation; a hidden tab shows
a notification; and all of it works with caller and callee on two server processes over Redis.

What each part needs beyond the foundation: the caller's click lands on the call page
(templates/calls/call.html, branch media), which opens the call socket (calls/consumers.py, branch
socket, with calls/ice.py from branch turn): without them the page or its console fails.
Assertions marked "call.js" need static/js/call.js (it plays the ring, shows the notification,
and takes a call page back to the conversation once the call ends; the server only renders the
slot).
"""

import re
import socket
import subprocess
import time

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from accounts import services as contact_services
from calls.models import Call
from e2e.helpers import DESKTOP, PHONE, has_no_sideways_scroll, screenshot
from parley.tests.live_server import LiveServer
from rooms import services as room_services

CALL_URL = re.compile(r"/calls/(\d+)/(\?audio=1)?$")
# Generous for a 2-core machine shared with other test runs; every wait is still bounded.
RING_MS = 20_000

RING_PLAYING = """() => {
  const ring = document.querySelector("#call-slot .call-slot__ring");
  return Boolean(ring) && !ring.paused;
}"""
RING_SILENT = """() => {
  const ring = document.querySelector("#call-slot .call-slot__ring");
  return !ring || ring.paused;
}"""


# --- People and their pages -----------------------------------------------------------------


@pytest.fixture
def ada_bob(user_factory):
    """Ada and Bob, contacts, with their direct conversation."""
    ada = user_factory(username="ada", display_name="Ada Lovelace")
    bob = user_factory(username="bob", display_name="Bob Marley")
    return ada, bob, befriend(ada, bob)


def befriend(a, b):
    contact_services.contact_request_send(sender=a, username=b.username)
    contact_services.contact_request_send(sender=b, username=a.username)
    return room_services.direct_open(a=a, b=b)


def signed_in(new_context, server, member, **options):
    """A browser context signed in as `member` on `server` (any of this run's live servers)."""
    client = Client()
    client.force_login(member)
    context = new_context(**(DESKTOP | options))
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": server.url,
            }
        ]
    )
    return context


def contact_list(page):
    return page.get_by_role("list", name="Your contacts")


def sees_online(page, member):
    """`page`'s member socket is up (it brought `member`'s presence), so no ring can be missed."""
    expect(contact_list(page).locator(f".presence-of-{member.pk}.presence--online")).to_have_count(
        1, timeout=RING_MS
    )


def slot(page):
    return page.locator("#call-slot")


def used(*pages) -> None:
    """Each page has been clicked, as a person does with a tab they use. Browsers play sound
    only in a page the person has interacted with (Chrome's autoplay rule): a tab never touched
    rings at its first click instead (call.js), and a hidden one shows the notification."""
    for page in pages:
        page.get_by_role("heading", level=1).click()


def expect_ringing(page, caller_name: str, kind: str = "Video call") -> None:
    """`page` shows the incoming call with its three answers, and rings."""
    expect(slot(page)).to_have_attribute("data-call-state", "incoming", timeout=RING_MS)
    card = slot(page).get_by_role("alert")
    expect(card).to_contain_text(f"{caller_name} is calling you")
    expect(card).to_contain_text(kind)
    for answer in ("Accept", "Accept audio only", "Decline"):
        expect(card.get_by_role("button", name=answer, exact=True)).to_be_visible()
    page.wait_for_function(RING_PLAYING, timeout=RING_MS)  # call.js plays the ring


def expect_silent(page) -> None:
    expect(slot(page)).not_to_have_attribute("data-call-state", "incoming", timeout=RING_MS)
    page.wait_for_function(RING_SILENT, timeout=RING_MS)  # call.js stops the ring
    expect(page.get_by_role("button", name="Accept", exact=True)).to_have_count(0)


def call_row(page, text: str):
    return page.get_by_role("log").locator(".message--call", has_text=text)


def errors_but_expected(errors: list[str]) -> list[str]:
    """Console errors, less the one a browser logs for a page the test expects to 404."""
    return [e for e in errors if "404" not in e]


# --- Ringing in every tab, answered in one --------------------------------------------------


def test_a_call_rings_in_every_tab_of_the_callee_and_answering_in_one_stops_the_others(
    member_context, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    ada_context = member_context(ada)
    ada_page = console_errors(ada_context.new_page())
    ada_elsewhere = console_errors(ada_context.new_page())
    bob_context = member_context(bob)
    bob_home = console_errors(bob_context.new_page())
    bob_chat = console_errors(bob_context.new_page())
    bob_home.goto("/")
    bob_chat.goto(conversation.get_absolute_url())
    ada_elsewhere.goto("/")
    ada_page.goto(conversation.get_absolute_url())
    for page in (bob_home, bob_chat):
        sees_online(page, ada)
    used(bob_home, bob_chat)
    sees_online(ada_page, bob)

    # Ada calls from the conversation's header: her page goes to the call.
    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    expect(ada_page).to_have_url(CALL_URL)
    call_id = CALL_URL.search(ada_page.url).group(1)
    # Her other tab says she is calling, with Cancel.
    expect(slot(ada_elsewhere)).to_have_attribute("data-call-state", "outgoing", timeout=RING_MS)
    expect(slot(ada_elsewhere)).to_contain_text("Calling Bob Marley…")
    expect(slot(ada_elsewhere).get_by_role("button", name="Cancel")).to_be_visible()
    screenshot(ada_elsewhere, "call-outgoing-desktop")

    # Both of Bob's tabs ring.
    for page in (bob_home, bob_chat):
        expect_ringing(page, "Ada Lovelace")

    # He answers in the conversation: that tab goes to the call, the other one stops ringing.
    slot(bob_chat).get_by_role("button", name="Accept", exact=True).click()
    expect(bob_chat).to_have_url(re.compile(rf"/calls/{call_id}/$"))
    expect(slot(bob_home)).to_have_attribute("data-call-state", "active", timeout=RING_MS)
    expect(slot(bob_home)).to_contain_text("In a call with Ada Lovelace")
    expect(slot(bob_home)).to_contain_text("Answered in another tab")
    expect_silent(bob_home)
    screenshot(bob_home, "call-answered-elsewhere-desktop")

    # Ada's pages show the call active: her other tab in words, her call page's slot too.
    expect(slot(ada_elsewhere)).to_have_attribute("data-call-state", "active", timeout=RING_MS)
    expect(slot(ada_elsewhere)).to_contain_text("In a call with Bob Marley")
    expect(slot(ada_elsewhere).get_by_role("link", name="Return to call")).to_be_visible()
    expect(slot(ada_page)).to_have_attribute("data-call-state", "active")
    # And both call pages connect (the call socket and call.js; test_call_media.py has the media).
    for page in (ada_page, bob_chat):
        expect(page.locator("#call-status")).to_have_text("Connected", timeout=RING_MS)
    assert console_errors.errors == []


# --- Declined, cancelled ---------------------------------------------------------------------


def test_declining_in_one_tab_stops_every_tab_and_the_caller_reads_declined(
    member_context, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_context = member_context(bob)
    bob_home = console_errors(bob_context.new_page())
    bob_chat = console_errors(bob_context.new_page())
    bob_home.goto("/")
    bob_chat.goto(conversation.get_absolute_url())
    ada_page.goto("/people/bob/")
    for page in (bob_home, bob_chat):
        sees_online(page, ada)
    used(bob_home, bob_chat)

    # Ada calls from Bob's page; he declines in one tab.
    ada_page.get_by_role("main").get_by_role("button", name="Video call", exact=True).click()
    expect(ada_page).to_have_url(CALL_URL)
    for page in (bob_home, bob_chat):
        expect_ringing(page, "Ada Lovelace")
    slot(bob_home).get_by_role("button", name="Decline", exact=True).click()

    for page in (bob_home, bob_chat):
        expect_silent(page)
        expect(slot(page)).to_contain_text("You declined the call.")
    expect(ada_page.get_by_role("main")).to_contain_text(
        "Bob Marley declined the call.", timeout=RING_MS
    )
    # Her call page goes back to the conversation (call.js), which keeps the row; Bob's open
    # conversation gets it live.
    expect(ada_page).to_have_url(
        re.compile(rf"{conversation.get_absolute_url()}$"), timeout=RING_MS
    )
    expect(call_row(ada_page, "Video call · declined")).to_have_count(1)
    expect(call_row(bob_chat, "Video call · declined")).to_have_count(1, timeout=RING_MS)
    assert console_errors.errors == []


def test_a_call_the_caller_cancels_stops_ringing_and_reads_missed_to_the_callee(
    member_context, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    ada_context = member_context(ada)
    ada_page = console_errors(ada_context.new_page())
    ada_elsewhere = console_errors(ada_context.new_page())
    bob_context = member_context(bob)
    bob_home = console_errors(bob_context.new_page())
    bob_chat = console_errors(bob_context.new_page())
    bob_home.goto("/")
    bob_chat.goto(conversation.get_absolute_url())
    ada_elsewhere.goto("/rooms/")
    ada_page.goto("/")
    for page in (bob_home, bob_chat):
        sees_online(page, ada)
    used(bob_home, bob_chat)

    # Ada calls from her sidebar, then thinks better of it and cancels from her other tab.
    contact_list(ada_page).get_by_role("button", name="Video call Bob Marley").click()
    expect(ada_page).to_have_url(CALL_URL)
    for page in (bob_home, bob_chat):
        expect_ringing(page, "Ada Lovelace")
    expect(slot(ada_elsewhere)).to_contain_text("Calling Bob Marley…", timeout=RING_MS)
    slot(ada_elsewhere).get_by_role("button", name="Cancel", exact=True).click()

    for page in (bob_home, bob_chat):
        expect_silent(page)
        expect(slot(page)).to_contain_text("Missed call from Ada Lovelace.")
    expect(call_row(bob_chat, "Video call · cancelled")).to_have_count(1, timeout=RING_MS)
    expect(ada_elsewhere).to_have_url(re.compile(rf"{conversation.get_absolute_url()}$"))
    expect(call_row(ada_elsewhere, "Video call · cancelled")).to_have_count(1)
    assert console_errors.errors == []


# --- No answer -------------------------------------------------------------------------------


QUICK_RING = 3  # seconds: CALL_RING_TIMEOUT of quick_ring_server


@pytest.fixture
def quick_ring_server(django_db_setup, django_db_blocker):
    """A server whose calls ring for 3 s only, swept every half second."""
    server = LiveServer.for_tests(CALL_RING_TIMEOUT=str(QUICK_RING), CALL_SWEEP="0.5")
    yield server
    server.stop()


def test_an_unanswered_call_ends_as_no_answer_and_missed_and_stays_as_a_row(
    new_context, quick_ring_server, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    server = quick_ring_server
    url = server.url + conversation.get_absolute_url()
    ada_page = console_errors(signed_in(new_context, server, ada).new_page())
    bob_context = signed_in(new_context, server, bob)
    bob_home = console_errors(bob_context.new_page())
    bob_chat = console_errors(bob_context.new_page())
    bob_home.goto(server.url + "/")
    bob_chat.goto(url)
    ada_page.goto(url)
    for page in (bob_home, bob_chat):
        sees_online(page, ada)
    used(bob_home, bob_chat)

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    expect(ada_page).to_have_url(CALL_URL)
    call_id = int(CALL_URL.search(ada_page.url).group(1))
    for page in (bob_home, bob_chat):
        expect_ringing(page, "Ada Lovelace")

    # Nobody answers: three seconds on, the sweep ends it everywhere.
    expect(ada_page.get_by_role("main")).to_contain_text(
        "No answer from Bob Marley.", timeout=RING_MS
    )
    # Not before the ring timeout, and by the server's own clock: the call rings from its
    # creation, which comes before the caller's page has even loaded (a test's clock started
    # after that load comes up short of the timeout on a busy machine). The sweep, every half
    # second, ends it soon after (bounded loosely: the machine is shared).
    call = Call.objects.get(pk=call_id)
    assert (call.state, call.outcome) == (Call.State.ENDED, Call.Outcome.MISSED)
    rang_for = (call.ended_at - call.created_at).total_seconds()
    assert QUICK_RING <= rang_for < QUICK_RING + 10, rang_for
    for page in (bob_home, bob_chat):
        expect_silent(page)
        expect(slot(page)).to_contain_text("Missed call from Ada Lovelace.")
    expect(call_row(bob_chat, "Missed video call")).to_have_count(1, timeout=RING_MS)
    expect(ada_page).to_have_url(url, timeout=RING_MS)  # call.js goes back after the end
    expect(call_row(ada_page, "Missed video call")).to_have_count(1)
    screenshot(bob_chat, "call-missed-desktop")
    assert console_errors.errors == []


# --- Busy ------------------------------------------------------------------------------------


@pytest.fixture
def bob_in_a_call_with_ada(member_context, ada_bob, user_factory, console_errors):
    """Bob in a call with Ada (his call page and his home page open), and Carol, another contact
    of his, on his page with the call buttons."""
    ada, bob, conversation = ada_bob
    carol = user_factory(username="carol", display_name="Carol Shaw")
    befriend(carol, bob)
    ada_page = console_errors(member_context(ada).new_page())
    bob_context = member_context(bob)
    bob_call = console_errors(bob_context.new_page())
    bob_home = console_errors(bob_context.new_page())
    carol_page = console_errors(member_context(carol).new_page())
    bob_home.goto("/")
    bob_call.goto(conversation.get_absolute_url())
    ada_page.goto(conversation.get_absolute_url())
    carol_page.goto("/people/bob/")
    for page in (bob_home, bob_call):
        sees_online(page, ada)
    used(bob_home, bob_call)

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    expect_ringing(bob_call, "Ada Lovelace")
    slot(bob_call).get_by_role("button", name="Accept", exact=True).click()
    expect(bob_call).to_have_url(CALL_URL)
    expect(slot(bob_home)).to_contain_text("In a call with Ada Lovelace", timeout=RING_MS)
    return bob_home, bob_call, carol_page


def test_calling_someone_already_in_a_call_leaves_their_call_alone_and_rings_nowhere(
    bob_in_a_call_with_ada, console_errors
):
    bob_home, bob_call, carol_page = bob_in_a_call_with_ada
    carol_page.get_by_role("main").get_by_role("button", name="Video call", exact=True).click()
    expect(carol_page.get_by_role("main")).to_contain_text("in another call", timeout=RING_MS)
    # Bob's pages never ring and still show his call with Ada; a row in his conversation
    # with Carol tells him later.
    time.sleep(1)  # longer than a push takes to reach him when there is one
    for page in (bob_home, bob_call):
        expect(slot(page)).to_have_attribute("data-call-state", "active")
        page.wait_for_function(RING_SILENT, timeout=RING_MS)
    expect(slot(bob_home)).to_contain_text("In a call with Ada Lovelace")
    expect(slot(bob_home)).not_to_contain_text("Carol")
    bob_home.goto("/people/carol/")
    expect(slot(bob_home)).to_contain_text("In a call with Ada Lovelace")
    bob_home.get_by_role("link", name="Message").click()
    expect(call_row(bob_home, "Missed video call")).to_have_count(1)
    assert console_errors.errors == []


def test_calling_someone_already_in_a_call_tells_the_caller_they_are_busy(
    bob_in_a_call_with_ada, console_errors
):
    _, _, carol_page = bob_in_a_call_with_ada
    carol_page.get_by_role("main").get_by_role("button", name="Video call", exact=True).click()
    # She stays where she was: the page she called from says so.
    expect(carol_page.get_by_role("main")).to_contain_text(
        "Bob Marley is in another call.", timeout=RING_MS
    )
    expect(carol_page).to_have_url(re.compile(r"/people/bob/$"))
    # However she is told, what she reads stays until she has had time to read it.
    time.sleep(3)
    expect(carol_page.get_by_role("main")).to_contain_text("Bob Marley is in another call.")


# --- A notification when the tab is hidden ---------------------------------------------------

# Records each `new Notification(...)` and its close(), around the browser's real constructor:
# the permission check, the object call.js gets back and any error it throws stay the browser's
# own, so the test sees what a member would get, only also writes it down. Headless Chromium
# keeps every tab "visible" (minimising the window or bringing another tab to the front changes
# nothing), so `window.__hideTab()` stands in for switching away: it makes document.hidden true
# and fires visibilitychange, as the browser does.
NOTIFICATION_RECORDER = """(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.Notification = new Proxy(Real, {
    construct(target, args, newTarget) {
      const made = Reflect.construct(target, args, newTarget);
      const entry = {title: String(args[0]), tag: (args[1] || {}).tag || "", closed: false};
      window.__notifications.push(entry);
      const close = made.close.bind(made);
      made.close = () => { entry.closed = true; close(); };
      return made;
    },
  });
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", {get: () => hidden, configurable: true});
  Object.defineProperty(Document.prototype, "visibilityState", {
    get: () => (hidden ? "hidden" : "visible"), configurable: true});
  window.__hideTab = () => {
    hidden = true;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})()"""


def test_a_hidden_tab_shows_a_notification_of_who_is_calling(
    member_context, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_context = member_context(bob)
    bob_context.grant_permissions(["notifications"])
    bob_context.add_init_script(NOTIFICATION_RECORDER)
    bob_hidden = console_errors(bob_context.new_page())
    bob_shown = console_errors(bob_context.new_page())
    bob_hidden.goto("/")
    bob_shown.goto(conversation.get_absolute_url())
    ada_page.goto(conversation.get_absolute_url())
    used(bob_hidden, bob_shown)
    for page in (bob_hidden, bob_shown):
        sees_online(page, ada)
        assert page.evaluate("Notification.permission") == "granted"
    bob_hidden.evaluate("window.__hideTab()")

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    for page in (bob_hidden, bob_shown):
        expect_ringing(page, "Ada Lovelace")
    # call.js: the hidden tab says who is calling; the one in front of him needs no notification.
    bob_hidden.wait_for_function("() => window.__notifications.length > 0", timeout=RING_MS)
    notes = bob_hidden.evaluate("window.__notifications")
    assert len(notes) == 1
    assert "Ada Lovelace" in notes[0]["title"]
    assert bob_shown.evaluate("window.__notifications") == []

    # Answered in the other tab: the notification goes away with the ring.
    slot(bob_shown).get_by_role("button", name="Accept", exact=True).click()
    expect(bob_shown).to_have_url(CALL_URL)
    bob_hidden.wait_for_function("() => window.__notifications[0].closed", timeout=RING_MS)
    expect_silent(bob_hidden)
    assert console_errors.errors == []


# --- Two server processes over Redis ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_url():
    """A Redis server of this test's own, inside its network namespace (the machine's Redis is
    not reachable from there), stopped by its pid afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def two_servers(django_db_setup, django_db_blocker, redis_url):
    servers = [LiveServer.for_tests(REDIS_URL=redis_url) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_ringing_and_answering_work_with_caller_and_callee_on_two_server_processes(
    new_context, two_servers, ada_bob, console_errors
):
    ada, bob, conversation = ada_bob
    ada_server, bob_server = two_servers
    ada_context = signed_in(new_context, ada_server, ada)
    ada_page = console_errors(ada_context.new_page())
    ada_elsewhere = console_errors(ada_context.new_page())
    bob_context = signed_in(new_context, bob_server, bob)
    bob_home = console_errors(bob_context.new_page())
    bob_chat = console_errors(bob_context.new_page())
    bob_home.goto(bob_server.url + "/")
    bob_chat.goto(bob_server.url + conversation.get_absolute_url())
    ada_elsewhere.goto(ada_server.url + "/")
    ada_page.goto(ada_server.url + conversation.get_absolute_url())
    for page in (bob_home, bob_chat):
        sees_online(page, ada)  # presence crosses over too
    used(bob_home, bob_chat)
    sees_online(ada_page, bob)

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    expect(ada_page).to_have_url(CALL_URL)
    for page in (bob_home, bob_chat):
        expect_ringing(page, "Ada Lovelace")

    # Bob answers audio only on his server; Ada's, the other process, hears of it.
    slot(bob_chat).get_by_role("button", name="Accept audio only", exact=True).click()
    expect(bob_chat).to_have_url(re.compile(r"/calls/\d+/\?audio=1$"))
    assert bob_chat.url.startswith(bob_server.url)
    expect(slot(bob_home)).to_contain_text("Answered in another tab", timeout=RING_MS)
    expect_silent(bob_home)
    expect(slot(ada_elsewhere)).to_contain_text("In a call with Bob Marley", timeout=RING_MS)
    expect(slot(ada_page)).to_have_attribute("data-call-state", "active")

    # Ada hangs up from her other tab: Bob's pages, on the other process, follow.
    slot(ada_elsewhere).get_by_role("button", name="Hang up", exact=True).click()
    expect(slot(bob_home)).to_contain_text("Call with Ada Lovelace ended", timeout=RING_MS)
    assert console_errors.errors == []


# --- How it looks ------------------------------------------------------------------------------


def test_an_incoming_call_and_call_rows_look_right_on_desktop_and_phone(
    member_context, ada_bob, user_factory, console_errors
):
    ada, bob, conversation = ada_bob
    # More contacts in Bob's list, one with a long name and one with news, beside the buttons.
    for username, name in (("grace", "Grace Hopper"), ("maggie", "Margaret Hamilton-Whitfield")):
        other = user_factory(username=username, display_name=name)
        room = befriend(bob, other)
    room_services.message_post(room=room, author=other, body="Are you around?")
    room_services.message_post(room=conversation, author=ada, body="Free for a quick call?")
    for body in ("Video call · 12:07", "Missed audio call", "Video call · declined"):
        room_services.message_post_row(room=conversation, author=ada, body=body)
    room_services.message_post(room=conversation, author=bob, body="Sorry, call me at six.")
    room_services.message_post_row(room=conversation, author=bob, body="Audio call · 1:02:45")

    for name, options in (
        ("desktop", {}),
        ("phone", PHONE),
        ("desktop-dark", {"color_scheme": "dark"}),
    ):
        ada_page = console_errors(member_context(ada).new_page())
        bob_page = console_errors(member_context(bob, **options).new_page())
        bob_page.goto(conversation.get_absolute_url())
        expect(call_row(bob_page, "Missed audio call")).to_have_count(1)
        screenshot(bob_page, f"call-rows-{name}")
        assert has_no_sideways_scroll(bob_page)
        # The sidebar's call buttons: a mouse finds them over the row it points at; a phone
        # shows them always, beside the row.
        margaret = contact_list(bob_page).get_by_role("listitem").filter(has_text="Margaret")
        if not options.get("is_mobile"):
            margaret.hover()
        expect(margaret.locator(".call-buttons")).to_have_css("opacity", "1")
        expect(margaret.get_by_role("button", name=re.compile("^Video call"))).to_be_visible()
        screenshot(bob_page, f"call-buttons-sidebar-{name}")

        ada_page.goto("/")
        sees_online(bob_page, ada)
        used(bob_page)
        contact_list(ada_page).get_by_role("button", name="Video call Bob Marley").click()
        expect(ada_page).to_have_url(CALL_URL)
        expect_ringing(bob_page, "Ada Lovelace")
        sees_online(bob_page, ada)  # her call page's member socket is up again
        screenshot(bob_page, f"call-incoming-{name}")
        assert has_no_sideways_scroll(bob_page)
        # A page he opens while it rings shows it too; untouched, it rings at his first click.
        bob_page.goto("/")
        expect(slot(bob_page)).to_have_attribute("data-call-state", "incoming")
        used(bob_page)
        expect_ringing(bob_page, "Ada Lovelace")
        screenshot(bob_page, f"call-incoming-home-{name}")

        slot(bob_page).get_by_role("button", name="Decline", exact=True).click()
        expect_silent(bob_page)
        ada_page.context.close()
        bob_page.context.close()
    assert errors_but_expected(console_errors.errors) == []
