"""Calls relayed through a real coturn, as they are between members on networks that cannot reach
each other: relay-only ICE (CALL_FORCE_RELAY), credentials minted by Parley, a wrong secret
explained on the page, and a TURN server restarted mid-call survived by an ICE restart.

Each test starts its own coturn (e2e/turn.py) and its own daphne whose settings point at it.
Everything listens on 127.0.0.1 inside the tests' private network.
"""

import re
import time

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from e2e.calls import make_contacts, open_both, start_call, wait_connected, wait_media_flowing
from e2e.helpers import DESKTOP
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


# A record of the connection's states and ICE restarts from now on, to say where a recovery's
# time went when it is slow.
TIMELINE = """() => {
  const pc = window.parleyCall.pc;
  const log = (window.relayTimeline = []);
  const at = () => Date.now();
  pc.addEventListener("connectionstatechange", () => log.push([at(), pc.connectionState]));
  const restartIce = pc.restartIce.bind(pc);
  pc.restartIce = () => { log.push([at(), "restartIce()"]); restartIce(); };
}"""


def timeline(page, since: float) -> str:
    events = page.evaluate("() => window.relayTimeline || []")
    return ", ".join(f"{(t / 1000 - since):.1f} s {what}" for t, what in events)


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
def relay_context(browser):
    """A browser context signed in as `member` on `server` (member_context's, on another
    server: pytest-playwright gives every context the session server's base_url)."""
    contexts = []

    def make(member, server: LiveServer):
        client = Client()
        client.force_login(member)
        context = browser.new_context(base_url=server.url, **DESKTOP)
        contexts.append(context)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": server.url}]
        )
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def call_pages(relay_context, user_factory, console_errors):
    """Ada calls Bob on `server` and Bob accepts: both their call pages, as the call starts."""

    def start(server: LiveServer):
        ada = user_factory(username="ada", display_name="Ada")
        bob = user_factory(username="bob", display_name="Bob")
        conversation = make_contacts(ada, bob)
        ada_page = console_errors(relay_context(ada, server).new_page())
        bob_page = console_errors(relay_context(bob, server).new_page())
        open_both(ada_page, bob_page, ada, bob, conversation)
        call_id = start_call(ada_page, bob_page)
        return ada_page, bob_page, call_id

    return start


def assert_relayed_and_flowing(*pages) -> list[dict]:
    """Each page's selected pair is relay on both ends, and video and audio keep coming."""
    for page in pages:
        wait_media_flowing(page)
    seen = [stats(page) for page in pages]
    for reading in seen:
        assert (reading["local"], reading["remote"]) == ("relay", "relay"), reading
        assert reading["state"] == "connected", reading
    return seen


def test_a_relay_only_call_connects_through_coturn_and_media_flows(
    relay_server, call_pages, coturn, console_errors
):
    server = relay_server()
    ada_page, bob_page, call_id = call_pages(server)

    for page in (ada_page, bob_page):
        wait_connected(page)

    assert_relayed_and_flowing(ada_page, bob_page)
    # coturn granted the allocations to credentials Parley minted for this call.
    assert re.search(
        rf"user <\d+:\d+-{call_id}>: incoming packet ALLOCATE processed, success", coturn.tail(400)
    )
    assert console_errors.errors == []


def test_with_a_wrong_turn_secret_the_call_fails_and_the_page_says_why(
    relay_server, call_pages, coturn
):
    server = relay_server(secret="not-" + coturn.secret)
    ada_page, bob_page, _ = call_pages(server)

    # coturn answers every allocation with 401; no relay candidate, no connection, and the
    # browser never reports "failed" by itself: the page has to notice.
    for page in (ada_page, bob_page):
        problem = page.locator("#call-problem")
        expect(problem).to_contain_text("TURN", timeout=15_000)
        expect(problem).to_contain_text("refused")
        assert stats(page).get("state") != "connected"
    assert "401" in coturn.tail(400) or "Unauthorized" in coturn.tail(400)


def test_a_call_survives_the_turn_server_restarting_by_an_ice_restart_within_15_s(
    relay_server, call_pages, coturn
):
    server = relay_server()
    ada_page, bob_page, _ = call_pages(server)
    for page in (ada_page, bob_page):
        wait_connected(page)
    before = assert_relayed_and_flowing(ada_page, bob_page)

    # A crash and a restart: the new coturn knows none of the old allocations, so nothing
    # relayed reaches anyone until both pages have gathered new relay candidates.
    for page in (ada_page, bob_page):
        page.evaluate(TIMELINE)
    killed, killed_at = time.monotonic(), time.time()
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

    print("caller:", timeline(ada_page, killed_at), "\ncallee:", timeline(bob_page, killed_at))
    assert stalled, "media never stopped: the TURN server restart did not break the path"
    assert recovered_at is not None, f"no recovery within 15 s of the restart: {last}"
    after = assert_relayed_and_flowing(ada_page, bob_page)
    # New allocations on the new coturn: the relayed addresses are new ones.
    assert [a["relayed"] for a in after] != [b["relayed"] for b in before]
    print(f"recovered {recovered_at:.1f} s after the TURN server was killed")
