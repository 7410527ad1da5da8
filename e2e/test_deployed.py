"""Parley as the kit in site/ deploys it, used through https:// as members use it.

One deployment for the module (e2e/deployment.py): DEBUG off, Caddy terminating TLS with a
certificate made for the test, two daphne processes started exactly as parley@.service starts
them, the migrate and collectstatic units run first, PostgreSQL, Redis, coturn and a mail sink of
the test's own, all on 127.0.0.1. Chromium trusts that one certificate (pinned by its key) and
resolves the site's name to 127.0.0.1; it reaches nothing but Caddy.
"""

import os
import re
import time
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from e2e.calls import inbound, open_both, start_call, wait_connected, wait_media_flowing
from e2e.conftest import chromium_path
from e2e.deployment import Deployment, caddy_path
from e2e.helpers import CHROMIUM_FLAGS, DESKTOP, say, screenshot
from e2e.turn import turnserver_path

# Only a developer's machine without Caddy or coturn skips; CI installs both (.ci/run), and there
# a missing one fails the test instead.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not (caddy_path() and turnserver_path()),
    reason="caddy or turnserver not installed (Debian: apt-get install caddy coturn)",
)

PASSWORD = "a-long-and-unguessable-passphrase"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with Deployment(tmp_path_factory.mktemp("site")) as deployment:
        yield deployment


@pytest.fixture(scope="module", autouse=True)
def _patient_expectations():
    """Pages here go through TLS, Caddy and one of two web processes, beside coturn, PostgreSQL
    and Redis, on a machine that may have two cores for all of it: a navigation took over 5 s
    (Playwright's default) under load. Every wait stays bounded."""
    expect.set_options(timeout=15_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def members(site):
    """The module's members, made at once (each call into the deployment starts Django)."""
    return dict(zip(NAMES, site.make_members(*NAMES), strict=True))


NAMES = ("ada", "bob", "dora", "eve")


@pytest.fixture(autouse=True)
def _site_output_on_failure(site):
    """What every process said lately, in the report of a test that fails (captured output)."""
    yield
    print(site.tails())


@pytest.fixture(scope="module")
def site_browser(browser_type, site):
    browser = browser_type.launch(
        executable_path=chromium_path(), args=[*CHROMIUM_FLAGS, *site.chromium_args()]
    )
    yield browser
    browser.close()


@pytest.fixture
def browse(site, site_browser, console_errors):
    """A new page on the site, signed in as `member` if one is given."""
    contexts = []

    def open_page(member=None):
        if member is None:
            context = site_browser.new_context(base_url=site.url, **DESKTOP)
        else:
            context = site.signed_in_context(site_browser, member, **DESKTOP)
        contexts.append(context)
        return console_errors(context.new_page())

    yield open_page
    for context in contexts:
        context.close()


def test_a_new_member_signs_up_over_https_and_confirms_their_address_from_the_email(
    site, browse, console_errors
):
    page = browse()
    page.goto("/accounts/signup/")
    assert page.url.startswith(f"{site.url}/")
    page.get_by_label("Username").fill("cleo")
    page.get_by_label("Email").fill("cleo@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()

    # DEBUG is off, so the address must be confirmed before the member may in.
    expect(page).to_have_url(re.compile(r"/accounts/confirm-email/$"))
    message = site.mail.wait_for("cleo@example.org")
    # The link names the site as members reach it: https, its name and port (Caddy's
    # X-Forwarded-Proto and Host, trusted by Parley).
    links = [link for link in site.mail.links(message) if "/confirm-email/" in link]
    assert len(links) == 1, site.mail.links(message)
    assert links[0].startswith(f"{site.url}/accounts/confirm-email/")

    page.goto(links[0])
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Welcome, cleo")).to_be_visible()
    screenshot(page, "deployed-welcome")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["sessionid"]["secure"]
    assert cookies["sessionid"]["httpOnly"]
    assert console_errors.errors == []


def test_static_files_come_from_caddy_with_long_cache_headers_for_hashed_names(site, browse):
    page = browse()
    page.goto("/accounts/login/")
    stylesheet = page.locator("link[rel=stylesheet]").first.get_attribute("href")
    assert re.fullmatch(r"/static/css/parley\.[0-9a-f]{12}\.css", stylesheet), stylesheet

    status, headers, body = site.get(stylesheet, headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Server"] == "Caddy"  # not daphne: no web process spent on it
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Encoding"] == "gzip"  # collectstatic's precompressed copy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body


def test_two_members_chat_live_through_the_proxy_with_sockets_on_both_daphnes(
    site, members, browse, console_errors
):
    ada, bob = members["ada"], members["bob"]
    ada_page, bob_page = browse(ada), browse(bob)

    ada_page.goto("/rooms/new/")
    ada_page.get_by_label("Name").fill("Deploy day")
    ada_page.get_by_role("button", name="Create room").click()
    expect(ada_page).to_have_url(re.compile(r"/rooms/deploy-day/$"))
    bob_page.goto("/rooms/")
    bob_page.get_by_role("button", name="Join Deploy day").click()
    expect(bob_page).to_have_url(re.compile(r"/rooms/deploy-day/$"))
    expect(ada_page.get_by_text("2 online: Ada, Bob")).to_be_visible()

    say(ada_page, "Is it up?")
    expect(bob_page.get_by_role("log")).to_contain_text("Is it up?")
    say(bob_page, "Up, over TLS, on two processes.")
    expect(ada_page.get_by_role("log")).to_contain_text("Up, over TLS, on two processes.")
    screenshot(ada_page, "deployed-room")

    # Caddy spread the pages' sockets (least_conn): each process holds some of them.
    for daphne in site.daphnes:
        assert "WSCONNECT /ws/" in daphne.tail(600), f"{daphne.name} got no socket"
    assert console_errors.errors == []


MAKE_CONTACTS = """
import json, sys
from accounts import services
from accounts.models import User
from rooms.services import direct_open
a, b = (User.objects.get(username=name) for name in sys.argv[1:3])
services.contact_request_send(sender=a, username=b.username)
services.contact_request_send(sender=b, username=a.username)
print("URL=" + direct_open(a=a, b=b).get_absolute_url())
"""


def test_a_relay_only_call_connects_through_the_sites_coturn(site, members, browse, console_errors):
    dora, eve = members["dora"], members["eve"]
    out = site.django(MAKE_CONTACTS, "dora", "eve")
    conversation = SimpleNamespace(get_absolute_url=lambda: out.rsplit("URL=", 1)[1].strip())
    dora_page, eve_page = browse(dora), browse(eve)

    open_both(dora_page, eve_page, dora, eve, conversation)
    call_id = start_call(dora_page, eve_page)
    for page in (dora_page, eve_page):
        wait_connected(page)
        wait_media_flowing(page)
        # CALL_FORCE_RELAY from the environment file: relay candidates on both ends.
        assert inbound(page)["pair"] == {"local": "relay", "remote": "relay"}
    screenshot(dora_page, "deployed-call")
    # coturn granted allocations to the credentials Parley minted for this call.
    assert re.search(
        rf"user <\d+:\d+-{call_id}>: incoming packet ALLOCATE processed, success",
        site.turn.tail(400),
    )
    assert console_errors.errors == []


def test_a_killed_daphne_is_skipped_at_once_and_rejoins_when_restarted(site):
    """Last in the module: it kills one web process (and brings it back, as Restart=always)."""
    killed, survivor = site.daphnes
    served_before = survivor.tail(600).count('"GET /accounts/login/"')
    killed.kill()
    started = time.monotonic()
    for _ in range(6):
        status, headers, _ = site.get("/accounts/login/")
        assert status == 200
        assert headers["Server"] == "daphne"
    # Served by the survivor, the refused connection retried at once (not after a timeout).
    assert time.monotonic() - started < 6
    assert survivor.tail(600).count('"GET /accounts/login/"') - served_before == 6

    killed.start()
    # Caddy's health check (every 2 s) or its 10 s fail_duration lets it back in.
    seen_before = killed.tail(600).count('"GET /accounts/login/"')
    deadline = time.monotonic() + 20
    while killed.tail(600).count('"GET /accounts/login/"') == seen_before:
        assert time.monotonic() < deadline, "the restarted process got no request in 20 s"
        assert site.get("/accounts/login/")[0] == 200
        time.sleep(0.2)
