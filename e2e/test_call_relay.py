"""Calls relayed through a real coturn, as they are between members on networks that cannot reach
each other: relay-only ICE (CALL_FORCE_RELAY), credentials minted by Parley, a wrong secret
explained on the page, and a TURN server restarted mid-call survived by an ICE restart.

Each test starts its own coturn (e2e/turn.py) and its own daphne whose settings point at it; the
session's server (conftest) serves nothing here, but its sign-in cookies are for 127.0.0.1 and
so hold for this server too. Everything listens on 127.0.0.1 inside the tests' private network.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from accounts import services as contact_services
from e2e.turn import Coturn, turnserver_path
from parley.tests.live_server import LiveServer

pytestmark = pytest.mark.skipif(
    not turnserver_path(), reason="turnserver not installed (Debian: apt-get install coturn)"
)

# What the selected candidate pair of the page's call is made of, and how much has come in.
SELECTED = """async () => {
  const pc = window.parleyCall && window.parleyCall.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  const out = {state: pc.connectionState, video: 0, audio: 0, local: null, remote: null};
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out.video += s.framesDecoded || 0;
    if (s.type === "inbound-rtp" && s.kind === "audio") out.audio += s.packetsReceived || 0;
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      out.local = local ? local.candidateType : null;
      out.remote = remote ? remote.candidateType : null;
      out.relayed = local ? `${local.address}:${local.port}` : null;
    }
  });
  return out;
}"""


def befriend(a, b) -> None:
    contact_services.contact_request_send(sender=a, username=b.username)
    contact_services.contact_request_send(sender=b, username=a.username)


def stats(page) -> dict:
    return page.evaluate(SELECTED) or {}


@pytest.fixture
def coturn(tmp_path):
    server = Coturn(tmp_path / "coturn").start()
    yield server
    server.stop()
    print("--- coturn output (last lines) ---\n" + server.tail())


@pytest.fixture
def relay_server(coturn):
    """A daphne of the test's own whose calls may only go through `coturn`. `secret` lets a test
    give it another secret than coturn's."""
    servers = []

    def start(secret: str | None = None) -> LiveServer:
        server = LiveServer.for_tests(
            TURN_URLS=",".join(coturn.urls),
            TURN_SECRET=secret or coturn.secret,
            CALL_FORCE_RELAY="1",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print("--- relay daphne output (last lines) ---\n" + server.tail())


@pytest.fixture
def call_pages(member_context, user_factory, console_errors):
    """Ada calls Bob on `server` and Bob accepts: both their call pages, as the call starts."""

    def start(server: LiveServer):
        ada = user_factory(username="ada", display_name="Ada")
        bob = user_factory(username="bob", display_name="Bob")
        befriend(ada, bob)
        ada_page = console_errors(member_context(ada).new_page())
        bob_page = console_errors(member_context(bob).new_page())

        ada_page.goto(f"{server.url}/people/bob/")
        ada_page.get_by_role("button", name="Video call").first.click()
        ada_page.wait_for_url("**/calls/*/")
        bob_page.goto(f"{server.url}/")
        slot = bob_page.locator("#call-slot")
        expect(slot).to_have_attribute("data-call-state", "incoming")
        slot.get_by_role("button", name="Accept", exact=True).click()
        bob_page.wait_for_url("**/calls/*/")
        return ada_page, bob_page

    return start


def wait_connected(*pages, timeout: float = 15_000) -> None:
    for page in pages:
        page.wait_for_function(
            "window.parleyCall && window.parleyCall.pc"
            " && window.parleyCall.pc.connectionState === 'connected'",
            timeout=timeout,
        )


def assert_relayed_and_flowing(*pages, within: float = 8.0) -> list[dict]:
    """Each page's selected pair is relay on both ends, and video frames keep being decoded."""
    before = [stats(page) for page in pages]
    deadline = time.monotonic() + within
    while True:
        time.sleep(0.5)
        after = [stats(page) for page in pages]
        rising = all(
            a.get("video", 0) > b.get("video", 0) for a, b in zip(after, before, strict=True)
        )
        if rising or time.monotonic() > deadline:
            break
    for seen in after:
        assert (seen["local"], seen["remote"]) == ("relay", "relay"), seen
        assert seen["state"] == "connected", seen
        assert seen["audio"] > 0, seen
    assert rising, f"video frames did not rise: {before} -> {after}"
    return after


def test_a_relay_only_call_connects_through_coturn_and_media_flows(
    relay_server, call_pages, coturn, console_errors
):
    server = relay_server()
    ada_page, bob_page = call_pages(server)

    wait_connected(ada_page, bob_page)

    assert_relayed_and_flowing(ada_page, bob_page)
    # coturn granted the allocations to credentials Parley minted for this call.
    call_id = re.search(r"/calls/(\d+)/", ada_page.url)[1]
    assert re.search(
        rf"user <\d+:\d+-{call_id}>: incoming packet ALLOCATE processed, success", coturn.tail(400)
    )
    assert console_errors.errors == []


def test_with_a_wrong_turn_secret_the_call_fails_and_the_page_says_why(
    relay_server, call_pages, coturn
):
    server = relay_server(secret="not-" + coturn.secret)
    ada_page, bob_page = call_pages(server)

    # coturn answers every allocation with 401; no relay candidate, no connection, and the
    # browser never reports "failed" by itself: the page has to notice.
    for page in (ada_page, bob_page):
        expect(page.locator("#call-problem")).to_contain_text("TURN", timeout=15_000)
        assert stats(page).get("state") != "connected"
    assert "401" in coturn.tail(400) or "Unauthorized" in coturn.tail(400)


def test_a_call_survives_the_turn_server_restarting_by_an_ice_restart_within_15_s(
    relay_server, call_pages, coturn
):
    server = relay_server()
    ada_page, bob_page = call_pages(server)
    wait_connected(ada_page, bob_page)
    before = assert_relayed_and_flowing(ada_page, bob_page)

    # A crash and a restart: the new coturn knows none of the old allocations, so nothing
    # relayed reaches anyone until both pages have gathered new relay candidates.
    killed = time.monotonic()
    coturn.restart(kill=True)

    stalled = False
    last = [stats(page) for page in (ada_page, bob_page)]
    recovered_at = None
    while time.monotonic() - killed < 15:
        time.sleep(0.5)
        now = [stats(page) for page in (ada_page, bob_page)]
        flowing = [
            n.get("state") == "connected" and n.get("video", 0) > p.get("video", 0)
            for n, p in zip(now, last, strict=True)
        ]
        last = now
        if not all(flowing):
            stalled = True
        elif stalled:
            recovered_at = time.monotonic() - killed
            break

    assert stalled, "media never stopped: the TURN server restart did not break the path"
    assert recovered_at is not None, f"no recovery within 15 s of the restart: {last}"
    after = assert_relayed_and_flowing(ada_page, bob_page)
    # New allocations on the new coturn: the relayed addresses are new ones.
    assert [a["relayed"] for a in after] != [b["relayed"] for b in before]
    print(f"recovered {recovered_at:.1f} s after the TURN server was killed")
