"""1:1 calls in two real browsers with Chromium's fake camera and microphone, asserting on the
media itself (getStats() on each side), not only on what the pages say."""

import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from e2e.calls import (
    CALL_ROW,
    CALL_URL,
    CONNECT_MS,
    MEDIA_MS,
    inbound,
    make_contacts,
    open_both,
    peer_state,
    start_call,
    wait_connected,
    wait_media_flowing,
    wait_rising,
    wait_video_shape,
    wait_video_stalled,
    write_y4m,
)
from e2e.conftest import chromium_path
from e2e.helpers import CHROMIUM_FLAGS, DESKTOP, PHONE, has_no_sideways_scroll, screenshot

RETURN_MS = 15_000


@pytest.fixture
def ada_and_bob(user_factory):
    ada = user_factory(username="ada", display_name="Ada Lovelace")
    bob = user_factory(username="bob", display_name="Bob Marley")
    return ada, bob, make_contacts(ada, bob)


def test_a_video_call_carries_both_ways_mute_and_camera_off_are_seen_and_hang_up_ends_it(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)

    for page in (ada_page, bob_page):
        wait_connected(page)
    for page in (ada_page, bob_page):
        wait_media_flowing(page)
        assert inbound(page)["pair"]["local"] == "host"
        expect(page.locator("#call-status")).to_have_text("Connected")
        expect(page.locator("#call-timer")).to_have_text(re.compile(r"^0:\d\d$"))
    # The quality indicator measures the path, and says it in words.
    for page in (ada_page, bob_page):
        expect(page.locator("#call-quality")).to_contain_text(" ms", timeout=MEDIA_MS)
        expect(page.locator("#call-quality")).to_contain_text("connection")
    screenshot(bob_page, "call-in-progress-desktop")

    # Bob mutes: Ada's page says so, and his microphone track is off (not removed).
    bob_page.get_by_role("button", name="Mute", exact=True).click()
    expect(bob_page.locator("#call-mute")).to_have_attribute("aria-pressed", "true")
    expect(peer_state(ada_page)).to_have_text("muted")
    assert bob_page.evaluate("() => window.parleyCall.audioTrack.enabled") is False
    bob_page.get_by_role("button", name="Unmute", exact=True).click()
    expect(peer_state(ada_page)).to_have_text("")

    # Bob turns his camera off: Ada's page says so and her video frames stop coming.
    bob_page.get_by_role("button", name="Camera off", exact=True).click()
    expect(peer_state(ada_page)).to_have_text("camera off")
    expect(ada_page.locator("#call-remote")).to_have_attribute("data-video", "off")
    wait_video_stalled(ada_page)
    wait_rising(ada_page, "audio", "packetsReceived")  # the call itself goes on
    bob_page.get_by_role("button", name="Camera on", exact=True).click()
    expect(peer_state(ada_page)).to_have_text("")
    wait_rising(ada_page, "video", "framesDecoded")
    expect(ada_page.locator("#call-remote")).to_have_attribute("data-video", "on")

    # Ada hangs up: both pages go back to their conversation, which has the call's row.
    ada_page.get_by_role("button", name="Hang up", exact=True).click()
    for page in (ada_page, bob_page):
        expect(page).to_have_url(conversation.get_absolute_url(), timeout=RETURN_MS)
        expect(page.get_by_role("log")).to_contain_text(CALL_ROW)
    assert console_errors.errors == []


def test_accepting_swaps_the_call_page_in_and_back_and_forward_load_their_pages_whole(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    bob_page.evaluate("() => { window.notReloaded = true; }")
    call_id = start_call(ada_page, bob_page)
    # The same document: the accept's answer was swapped in, not loaded after a redirect.
    assert bob_page.evaluate("() => window.notReloaded === true")
    expect(bob_page).to_have_title("Video call with Ada Lovelace · Parley")
    expect(bob_page.locator("#call-slot")).to_be_hidden()
    for page in (ada_page, bob_page):
        wait_connected(page)
    wait_media_flowing(bob_page)
    screenshot(bob_page, "call-accepted-in-place-desktop")

    # Back: the page Accept was clicked on, loaded afresh: it says the call goes on, no ring.
    bob_page.go_back()
    expect(bob_page).to_have_url(re.compile(r"/$"))
    expect(bob_page.locator("#call-slot")).to_have_attribute("data-call-state", "active")
    assert bob_page.evaluate("() => window.notReloaded === undefined")
    assert bob_page.evaluate("() => window.parleyRing.callId") is None
    # Forward: the call page, loaded whole, takes the call up again.
    bob_page.go_forward()
    expect(bob_page).to_have_url(re.compile(rf"/calls/{call_id}/$"))
    wait_connected(bob_page)
    wait_media_flowing(bob_page)
    bob_page.get_by_role("button", name="Hang up", exact=True).click()
    for page in (ada_page, bob_page):
        expect(page).to_have_url(conversation.get_absolute_url(), timeout=RETURN_MS)
    assert console_errors.errors == []


def test_the_callee_answers_the_offer_before_the_call_page_is_there(
    member_context, ada_and_bob, console_errors
):
    """The Accept's click starts the call itself: camera, call socket, connection and the answer
    to the caller's offer do not wait for the call page. Here the accept's answer (the call
    page's #main) is held back until the caller's page has the callee's answer."""
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    held = []
    # The request reaches the server (the accept commits); only its answer waits here.
    bob_page.route("**/calls/*/accept/", lambda route: held.append((route, route.fetch())))

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    slot = bob_page.locator("#call-slot")
    expect(slot).to_have_attribute("data-call-state", "incoming", timeout=CONNECT_MS)
    slot.get_by_role("button", name="Accept", exact=True).click()
    ada_page.wait_for_function(
        "() => window.parleyCall?.pc?.remoteDescription?.type === 'answer'", timeout=CONNECT_MS
    )
    # Answered from the page Accept was clicked on: no call page there yet.
    assert len(held) == 1
    assert bob_page.locator("#call").count() == 0
    assert bob_page.evaluate("() => window.parleyCall === undefined")

    route, response = held[0]
    route.fulfill(response=response)
    expect(bob_page).to_have_url(CALL_URL)
    for page in (ada_page, bob_page):
        wait_connected(page)
        wait_media_flowing(page)
        expect(page.locator("#call-status")).to_have_text("Connected")
    # What the call page shows was kept from before it was there: the controls work on it.
    bob_page.get_by_role("button", name="Mute", exact=True).click()
    expect(peer_state(ada_page)).to_have_text("muted")
    bob_page.get_by_role("button", name="Hang up", exact=True).click()
    for page in (ada_page, bob_page):
        expect(page).to_have_url(conversation.get_absolute_url(), timeout=RETURN_MS)
    assert console_errors.errors == []


def test_a_reload_mid_call_reconnects_and_hanging_up_from_the_callee_ends_it(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob, **PHONE).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)
    for page in (ada_page, bob_page):
        wait_connected(page)
    wait_media_flowing(bob_page)
    expect(bob_page.locator("#call-quality")).to_contain_text(" ms", timeout=MEDIA_MS)
    screenshot(bob_page, "call-in-progress-phone")
    assert has_no_sideways_scroll(bob_page)

    # Bob's page reloads: Ada's page shows him reconnecting, then both are connected again with
    # media both ways, in the same call.
    call_url = bob_page.url
    bob_page.reload()
    assert bob_page.url == call_url
    # The server knows when media first connected, so the timer goes on from there.
    expect(bob_page.locator("#call")).to_have_attribute("data-connected-at", re.compile("."))
    for page in (ada_page, bob_page):
        wait_connected(page)
        wait_media_flowing(page)
    expect(peer_state(ada_page)).to_have_text("")

    # The conversation beside the video is live: a message from the call page arrives.
    bob_page.get_by_label("Message", exact=True).fill("Here is the link: https://example.org/")
    bob_page.get_by_label("Message", exact=True).press("Enter")
    expect(ada_page.get_by_role("log")).to_contain_text("https://example.org/")

    bob_page.get_by_role("button", name="Hang up", exact=True).click()
    for page in (ada_page, bob_page):
        expect(page).to_have_url(conversation.get_absolute_url(), timeout=RETURN_MS)
        expect(page.get_by_role("log")).to_contain_text(CALL_ROW)
    assert console_errors.errors == []


# --- A browser of these tests' own ----------------------------------------------------------


@pytest.fixture(scope="module")
def own_browser(browser_type, tmp_path_factory):
    """Chromium with two flags more than conftest's. Its fake screen is 1280x720, as its fake
    camera is at the page's 720p request: here the camera is a 640x480 clip, so a switch to the
    screen shows in the frames. And sound may play without a click first, so that the ring of
    a tab nobody has touched can be heard (a browser asks for a click, or a habit of the site)."""
    clip = write_y4m(tmp_path_factory.mktemp("camera") / "vga.y4m")
    browser = browser_type.launch(
        executable_path=chromium_path(),
        args=[
            *CHROMIUM_FLAGS,
            f"--use-file-for-fake-video-capture={clip}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield browser
    browser.close()


@pytest.fixture
def vga_context(own_browser, daphne_server):
    contexts = []

    def make(member, **options):
        client = Client()
        client.force_login(member)
        context = own_browser.new_context(base_url=daphne_server.url, **(DESKTOP | options))
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": daphne_server.url,
                }
            ]
        )
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def test_screen_share_replaces_the_camera_and_the_camera_comes_back(
    vga_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(vga_context(ada).new_page())
    bob_page = console_errors(vga_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)
    for page in (ada_page, bob_page):
        wait_connected(page)
    wait_video_shape(bob_page, 640, 480)

    ada_page.get_by_role("button", name="Share screen", exact=True).click()
    expect(ada_page.locator("#call-share")).to_have_attribute("aria-pressed", "true")
    expect(peer_state(bob_page)).to_have_text("sharing their screen")
    wait_video_shape(bob_page, 1280, 720)  # frames keep coming, in the screen's shape
    # ... and the page shows them (the element follows the decoder a little later).
    bob_page.wait_for_function(
        "() => { const v = document.getElementById('remote-video');"
        " return v.videoHeight && Math.abs(v.videoWidth / v.videoHeight - 16 / 9) < 0.05; }"
    )
    screenshot(bob_page, "call-screen-share-desktop")

    ada_page.get_by_role("button", name="Stop sharing", exact=True).click()
    expect(peer_state(bob_page)).to_have_text("")
    wait_video_shape(bob_page, 640, 480)
    assert console_errors.errors == []


def test_opening_the_call_in_a_second_tab_moves_it_there_and_the_first_tab_says_so(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)
    wait_connected(bob_page)

    bob_second = console_errors(bob_page.context.new_page())
    bob_second.goto(bob_page.url)
    expect(bob_page.locator("#call-problem")).to_contain_text("This call continues in another tab.")
    bob_page.wait_for_function("() => window.parleyCall.state === 'moved'")
    assert bob_page.evaluate("() => window.parleyCall.pc === null")
    for page in (ada_page, bob_second):
        wait_connected(page)
        wait_media_flowing(page)
    assert console_errors.errors == []


DENY_CAMERA = """(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => constraints && constraints.video
    ? Promise.reject(new DOMException("Permission denied", "NotAllowedError"))
    : real(constraints);
})();"""


def test_a_refused_camera_is_explained_and_joining_audio_only_still_carries_the_call(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_context = member_context(bob)
    bob_context.add_init_script(DENY_CAMERA)
    bob_page = console_errors(bob_context.new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page)

    problem = bob_page.get_by_role("alert").filter(has_text="camera or microphone")
    expect(problem).to_contain_text("Parley is not allowed to use your camera or microphone.")
    screenshot(bob_page, "call-camera-refused-desktop")
    problem.get_by_role("button", name="Join audio only").click()
    expect(bob_page.locator("#call-problem")).to_be_hidden()
    for page in (ada_page, bob_page):
        wait_connected(page)
    # Ada hears Bob and sees that his camera is off; Bob sees and hears Ada.
    expect(peer_state(ada_page)).to_have_text("camera off")
    wait_rising(ada_page, "audio", "packetsReceived")
    wait_media_flowing(bob_page)
    assert console_errors.errors == []


def test_an_audio_call_carries_sound_only_and_shows_who_it_is_with(
    member_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    start_call(ada_page, bob_page, kind="Audio call")
    expect(bob_page.get_by_role("heading", level=1)).to_have_text("Audio call with Ada Lovelace")
    for page in (ada_page, bob_page):
        wait_connected(page)
        wait_rising(page, "audio", "totalSamplesReceived", by=4800)
        assert page.evaluate("() => window.parleyCall.localStream.getVideoTracks().length") == 0
        expect(peer_state(page)).to_have_text("")
        expect(page.locator("#call-remote")).to_have_attribute("data-video", "off")
    expect(bob_page.locator(".call__avatar")).to_have_text("A")
    screenshot(bob_page, "call-audio-desktop")

    # Bob picks another microphone: the new one is sent in the old one's place.
    bob_page.get_by_label("Microphone").select_option(label="Fake Audio Input 1")
    bob_page.wait_for_function(
        "() => window.parleyCall.audioTrack.label === 'Fake Audio Input 1'"
        " && window.parleyCall.pc.getSenders().some(s => s.track === window.parleyCall.audioTrack)"
    )
    wait_rising(ada_page, "audio", "totalSamplesReceived", by=4800)

    bob_page.get_by_role("button", name="Hang up", exact=True).click()
    for page in (ada_page, bob_page):
        expect(page).to_have_url(conversation.get_absolute_url(), timeout=RETURN_MS)
        expect(page.get_by_role("log")).to_contain_text("Audio call ·")
    assert console_errors.errors == []


# A hidden tab whose member allowed notifications, with the notifications kept for the test.
HIDDEN_TAB_NOTIFIED = """(() => {
  Object.defineProperty(Document.prototype, "hidden", {get: () => true, configurable: true});
  window.shownNotifications = [];
  window.Notification = class {
    static permission = "granted";
    static requestPermission() { return Promise.resolve("granted"); }
    constructor(title, options) {
      Object.assign(this, {title, tag: options.tag, closed: false});
      window.shownNotifications.push(this);
    }
    addEventListener() {}
    close() { this.closed = true; }
  };
})();"""

RINGING = "() => Boolean(window.parleyRing.callId && window.parleyRing.playing)"


def test_every_tab_of_the_callee_rings_a_hidden_one_notifies_and_answering_stops_them(
    vga_context, ada_and_bob, console_errors
):
    ada, bob, conversation = ada_and_bob
    ada_page = console_errors(vga_context(ada).new_page())
    bob_context = vga_context(bob)
    bob_page = console_errors(bob_context.new_page())
    open_both(ada_page, bob_page, ada, bob, conversation)
    bob_hidden = console_errors(bob_context.new_page())
    bob_hidden.add_init_script(HIDDEN_TAB_NOTIFIED)
    bob_hidden.goto("/contacts/")
    expect(bob_hidden.get_by_role("list", name="Your contacts")).to_contain_text("Ada Lovelace")

    ada_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    for page in (bob_page, bob_hidden):
        expect(page.locator("#call-slot")).to_have_attribute("data-call-state", "incoming")
        page.wait_for_function(RINGING)
        assert page.evaluate("() => document.querySelector('.call-slot__ring').paused") is False
    assert bob_page.evaluate("() => window.parleyRing.notification") is None  # a visible tab
    notifications = bob_hidden.evaluate(
        "() => window.shownNotifications.map(n => [n.title, n.closed])"
    )
    assert notifications == [["Ada Lovelace is calling you", False]]

    bob_page.locator("#call-slot").get_by_role("button", name="Accept", exact=True).click()
    expect(bob_hidden.locator("#call-slot")).to_have_attribute("data-call-state", "active")
    bob_hidden.wait_for_function("() => window.parleyRing.callId === null")
    assert bob_hidden.evaluate("() => window.shownNotifications[0].closed") is True
    assert bob_hidden.evaluate("() => document.querySelectorAll('audio').length") == 0
    wait_connected(bob_page)
    assert console_errors.errors == []
