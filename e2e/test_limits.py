"""What a member sees when a limit that protects the server stops them: too many open tabs (the
cap on sockets, on a room page and on the call page) and too many posts of a form (HTTP 429)."""

import time
from contextlib import ExitStack

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from e2e.calls import make_contacts, open_both, start_call, wait_connected
from e2e.helpers import DESKTOP, screenshot
from parley.tests.live_server import LiveServer
from rooms import services

CAP = 4  # open sockets per member on this test's server


@pytest.fixture(scope="module")
def capped_server(django_db_setup, django_db_blocker):
    server = LiveServer.for_tests(SOCKETS_PER_MEMBER=str(CAP))
    yield server
    server.stop()


@pytest.fixture
def capped_context(browser, capped_server):
    """Makes a browser context signed in as a member on the capped server (its own base URL, so not
    pytest-playwright's `new_context`, which is bound to the shared server's), and the session."""
    contexts = []

    def make(member):
        client = Client()
        client.force_login(member)
        context = browser.new_context(base_url=capped_server.url, **DESKTOP)
        contexts.append(context)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": capped_server.url}]
        )
        return context, cookie

    yield make
    for context in contexts:
        context.close()


class RawSockets:
    """Member sockets opened from the test (as another tab of the member would), to fill the cap
    at a moment the test chooses."""

    def __init__(self, server, cookie):
        self.server, self.cookie, self.held = server, cookie, ExitStack()

    def take_a_slot(self, within: float = 10.0) -> None:
        """Open member sockets until one is let in (not told "Too many open tabs")."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            attempt = ExitStack()
            socket = attempt.enter_context(
                connect(
                    f"ws://127.0.0.1:{self.server.port}/ws/member/",
                    origin=self.server.url,
                    additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={self.cookie}"},
                )
            )
            try:
                first = socket.recv(timeout=0.3)
            except TimeoutError:
                first = ""  # let in, and nothing to say yet
            except ConnectionClosed:
                first = "closed"
            if "Too many open tabs" in first or first == "closed":
                attempt.close()
                time.sleep(0.02)
                continue
            self.held.push(attempt)
            return
        raise AssertionError("no slot came free")

    def close(self):
        self.held.close()


def test_a_room_page_over_the_cap_says_too_many_open_tabs(
    capped_context, capped_server, user_factory
):
    ada = user_factory(username="ada", display_name="Ada")
    room = services.room_create(creator=ada, name="Crowded")
    context, cookie = capped_context(ada)
    raw = RawSockets(capped_server, cookie)
    try:
        for _ in range(CAP - 1):
            raw.take_a_slot()
        page = context.new_page()
        page.goto(room.get_absolute_url())  # its member socket and room socket: one too many
        notice = page.locator("#notices").get_by_text("Too many open tabs")
        expect(notice).to_be_visible(timeout=15_000)
        expect(notice).to_contain_text(f"at most {CAP} live connections")
        screenshot(page, "limits-too-many-tabs")
    finally:
        raw.close()


def test_the_call_page_says_too_many_open_tabs_and_reconnects_once_a_tab_closes(
    capped_context, capped_server, user_factory
):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    conversation = make_contacts(ada, bob)
    ada_context, ada_cookie = capped_context(ada)
    bob_context, _ = capped_context(bob)
    ada_page, bob_page = ada_context.new_page(), bob_context.new_page()
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)
    wait_connected(ada_page)
    raw = RawSockets(capped_server, ada_cookie)
    try:
        raw.take_a_slot()  # her call page holds three (member, call, conversation): now all four
        # Her call socket drops; before its page retries (after 400 ms or more), another tab of
        # hers takes the slot it gave back.
        ada_page.evaluate("window.parleyCall.ws.close()")
        raw.take_a_slot()
        problem = ada_page.get_by_text("Too many open tabs: close some")
        expect(problem).to_be_visible(timeout=15_000)
        screenshot(ada_page, "limits-call-too-many-tabs")
        raw.close()  # the tabs close: the page's next try gets in, by itself
        expect(problem).to_be_hidden(timeout=20_000)
        wait_connected(ada_page)
    finally:
        raw.close()


def test_posting_a_form_too_often_is_answered_slow_down_and_saves_nothing(
    capped_context, capped_server, user_factory
):
    from parley.ratelimits import BUCKETS
    from rooms.models import Room

    ada = user_factory(username="ada", display_name="Ada")
    context, _ = capped_context(ada)
    page = context.new_page()
    allowed, _ = BUCKETS["room-create"]
    for n in range(allowed):
        page.goto("/rooms/new/")
        page.get_by_label("Name").fill(f"Room {n}")
        page.get_by_role("button", name="Create room").click()
        expect(page.get_by_role("heading", name=f"Room {n}")).to_be_visible()
    page.goto("/rooms/new/")
    page.get_by_label("Name").fill("One too many")
    page.get_by_role("button", name="Create room").click()
    # The form posts over htmx: the answer is a notice beside it, and the form keeps what was typed.
    notice = page.locator("#notices").get_by_text("You are doing that too often")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("nothing was changed")
    expect(page.get_by_label("Name")).to_have_value("One too many")
    screenshot(page, "limits-slow-down")
    assert Room.objects.filter(name="One too many").count() == 0
    assert Room.objects.filter(created_by=ada).count() == allowed
