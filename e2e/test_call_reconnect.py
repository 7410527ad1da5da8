"""A call survives the callee's network dropping for a moment: his page's call socket comes
back on the same seat, and both pages restart ICE on the connection they have, without a reload
and without a new RTCPeerConnection."""

import pytest
from playwright.sync_api import expect

from e2e.calls import (
    CALL_ROW,
    CONNECT_MS,
    contact_list,
    make_contacts,
    peer_state,
    start_call,
    wait_connected,
    wait_media_flowing,
)

RETURN_MS = 15_000

# What a page's call has now: the connection is kept in the page to compare with later.
SNAPSHOT = """() => {
  const call = window.parleyCall;
  window.__parleyPcBefore = call.pc;
  const ufrag = call.pc.localDescription.sdp.match(/^a=ice-ufrag:(\\S+)/m)[1];
  return {seat: call.seat, pair: call.pairKey, restarts: call.iceRestarts, ufrag};
}"""

# True once the page's connection, the same object as before, has restarted ICE (a new
# ufrag of its own, one restart more) and is connected again.
RESTARTED = """({restarts, ufrag}) => {
  const call = window.parleyCall;
  const pc = call.pc;
  if (!pc || pc !== window.__parleyPcBefore || pc.connectionState !== "connected") return false;
  const now = pc.localDescription && pc.localDescription.sdp.match(/^a=ice-ufrag:(\\S+)/m);
  return call.iceRestarts > restarts && Boolean(now) && now[1] !== ufrag
    && pc.signalingState === "stable";
}"""


def watch_faults(page, faults: list):
    """What the page itself gets wrong: uncaught errors, and call.js's warnings (a description
    or candidate that did not apply). A dropped network also fills the console with failed
    connections and htmx's reports of them; those are the network's, and not collected."""
    page.on("pageerror", lambda error: faults.append(str(error)))
    page.on("console", lambda m: "Parley call" in m.text and faults.append(m.text))
    return page


@pytest.fixture
def ada_and_bob(user_factory):
    ada = user_factory(username="ada", display_name="Ada Lovelace")
    bob = user_factory(username="bob", display_name="Bob Marley")
    return ada, bob, make_contacts(ada, bob)


def test_a_dropped_call_socket_comes_back_on_its_seat_and_ice_restarts_on_the_same_connection(
    member_context, ada_and_bob, cuttable_link
):
    ada, bob, conversation = ada_and_bob
    faults = []
    ada_page = watch_faults(member_context(ada).new_page(), faults)
    # Bob's pages and sockets go through a link that can be cut; media is peer to peer on
    # loopback and does not.
    bob_page = watch_faults(member_context(bob).new_page(), faults)
    bob_page.goto(cuttable_link.url + "/")
    ada_page.goto(conversation.get_absolute_url())
    for page, other in ((ada_page, bob), (bob_page, ada)):
        expect(
            contact_list(page).locator(f".presence-of-{other.pk}.presence--online")
        ).to_have_count(1, timeout=CONNECT_MS)
    start_call(ada_page, bob_page)
    assert bob_page.url.startswith(cuttable_link.url)
    for page in (ada_page, bob_page):
        wait_connected(page)
        wait_media_flowing(page)
    before = {page: page.evaluate(SNAPSHOT) for page in (ada_page, bob_page)}
    call_sockets = []
    bob_page.on("websocket", lambda ws: "/ws/calls/" in ws.url and call_sockets.append(ws.url))

    cuttable_link.cut()
    expect(peer_state(ada_page)).to_have_text("reconnecting …")  # the server saw him go
    bob_page.wait_for_timeout(2_000)
    cuttable_link.restore()

    for page in (ada_page, bob_page):
        page.wait_for_function(RESTARTED, arg=before[page], polling=250, timeout=CONNECT_MS)
        wait_media_flowing(page)
    expect(peer_state(ada_page)).to_have_text("")
    for page in (ada_page, bob_page):
        after = page.evaluate("() => [window.parleyCall.seat, window.parleyCall.pairKey]")
        assert after == [before[page]["seat"], before[page]["pair"]]
        expect(page.locator("#call-status")).to_have_text("Connected")
    # Bob's page asked for its seat back, and did not reload.
    assert call_sockets, "Bob's call socket should have reconnected"
    assert all(f"seat={before[bob_page]['seat']}" in url for url in call_sockets)
    assert bob_page.evaluate("performance.getEntriesByType('navigation').length") == 1

    # The call goes on over the socket that came back: hanging up ends it on both pages.
    ada_page.get_by_role("button", name="Hang up", exact=True).click()
    back = conversation.get_absolute_url()
    for page, url in ((ada_page, back), (bob_page, cuttable_link.url + back)):
        expect(page).to_have_url(url, timeout=RETURN_MS)
        expect(page.get_by_role("log")).to_contain_text(CALL_ROW)
    assert faults == []
