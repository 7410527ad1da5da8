"""Every page passes axe-core with no serious or critical finding.

axe-core's script (bundled by axe-playwright-python) goes in with page.evaluate, which runs
through the DevTools protocol, so the page's CSP (script-src 'self', no eval) does not refuse
it; and axe itself adds nothing the policy refuses, or the CSP check of every test would say
so. Each page is checked as a member sees it (with contacts, a room with messages, a contact
request waiting), and the entrance pages signed out; error pages as Django renders them with
DEBUG off (the live server runs with DEBUG on, which shows Django's debug pages instead).
"""

from types import SimpleNamespace

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.cache import cache
from django.template.loader import render_to_string
from django.test import Client
from playwright.sync_api import expect

from accounts import services as contact_services
from calls import services as call_services
from e2e.calls import CONNECT_MS, make_contacts, open_both
from e2e.helpers import PHONE, say, screenshot
from rooms import services as room_services

AXE = Axe()
SERIOUS = {"serious", "critical"}


def axe_findings(page) -> list[dict]:
    """axe's serious and critical violations on `page` as it is now."""
    results = AXE.run(page)
    return [v for v in results.response["violations"] if v["impact"] in SERIOUS]


def readable(findings: list[dict]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{finding['id']} ({finding['impact']}): {finding['help']}")
        for node in finding["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['failureSummary']}")
            lines.append(f"       {node['html'][:160]}")
    return "\n".join(lines)


def assert_accessible(page) -> None:
    """In the light scheme and the dark one (parley.css has both; contrast differs)."""
    page.wait_for_load_state("load")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        findings = axe_findings(page)
        assert not findings, f"axe on {page.url}, {scheme} scheme:\n{readable(findings)}"


def test_the_check_fails_on_a_nameless_button_and_an_image_without_text(page):
    page.goto("/accounts/login/")
    page.evaluate(
        "() => document.querySelector('main').insertAdjacentHTML("
        "'beforeend', '<button></button><img src=\"/static/img/parley.svg\">')"
    )
    findings = axe_findings(page)
    assert {f["id"] for f in findings} == {"button-name", "image-alt"}
    assert "button-name (critical)" in readable(findings)


@pytest.fixture
def world(user, user_factory, room_factory, monkeypatch):
    """Ada's Parley: a contact (Bob) with a conversation, a room with talk in it, a contact
    request from Carol waiting."""
    monkeypatch.setattr(call_services, "call_announce", lambda call_id: None)
    bob = user_factory(username="bob", display_name="Bob Babbage")
    carol = user_factory(username="carol", display_name="Carol")
    conversation = make_contacts(user, bob)
    room_services.message_post(room=conversation, author=bob, body="Are you there, Ada?")
    room = room_factory(owner=user, name="Garden", topic="Plants and the people who grow them")
    room_services.room_join(room=room, member=bob)
    for n, author in enumerate([user, bob, user], start=1):
        room_services.message_post(room=room, author=author, body=f"Message number {n}")
    contact_services.contact_request_send(sender=carol, username=user.username)
    return SimpleNamespace(ada=user, bob=bob, carol=carol, conversation=conversation, room=room)


def ringing(world):
    """Bob calls Ada: every page of hers shows the incoming call."""
    return call_services.call_start(caller=world.bob, callee=world.ada, video=True)


MEMBER_PAGES = {
    "home": lambda w: "/",
    "home-incoming-call": lambda w: ringing(w) and "/",
    "room-directory": lambda w: "/rooms/",
    "room-create": lambda w: "/rooms/new/",
    "room": lambda w: w.room.get_absolute_url(),
    "direct-conversation": lambda w: w.conversation.get_absolute_url(),
    "contacts": lambda w: "/contacts/",
    "people-search": lambda w: "/people/?q=car",
    "member-page-contact": lambda w: "/people/bob/",
    "member-page-stranger": lambda w: "/people/carol/",
    "profile": lambda w: "/profile/",
    "email-addresses": lambda w: "/accounts/email/",
    "password-change": lambda w: "/accounts/password/change/",
    "log-out": lambda w: "/accounts/logout/",
    "call": lambda w: f"/calls/{ringing(w).pk}/",
}


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_a_members_page_has_no_serious_accessibility_finding(member_context, world, name):
    path = MEMBER_PAGES[name](world)
    page = member_context(world.ada).new_page()
    page.goto(path)
    expect(page.locator("main")).to_be_visible()
    assert_accessible(page)


ENTRANCE_PAGES = [
    "/accounts/login/",
    "/accounts/signup/",
    "/accounts/password/reset/",
    "/accounts/password/reset/done/",
    "/accounts/password/reset/key/1-bad-key/",
    "/accounts/confirm-email/",
    "/accounts/confirm-email/bad-key/",
]


@pytest.mark.parametrize("path", ENTRANCE_PAGES)
def test_an_entrance_page_has_no_serious_accessibility_finding(page, user, path):
    page.goto(path)
    expect(page.locator("main")).to_be_visible()
    assert_accessible(page)


def test_the_pages_of_a_real_reset_and_a_real_confirmation_link_too(page, user):
    """The new-password form behind a valid reset link, and a valid confirmation link's page."""
    from allauth.account.forms import default_token_generator
    from allauth.account.models import EmailAddress, EmailConfirmationHMAC
    from allauth.account.utils import user_pk_to_url_str

    key = default_token_generator.make_token(user)
    page.goto(f"/accounts/password/reset/key/{user_pk_to_url_str(user)}-{key}/")
    expect(page.get_by_label("New Password", exact=True)).to_be_visible()
    assert_accessible(page)

    address, _ = EmailAddress.objects.get_or_create(user=user, email=user.email)
    page.goto(f"/accounts/confirm-email/{EmailConfirmationHMAC(address).key}/")
    expect(page.get_by_role("button", name="Confirm")).to_be_visible()
    assert_accessible(page)


def test_a_sign_up_form_with_errors_has_no_serious_accessibility_finding(page, user):
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email").fill("ada@example.org")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password (again)").fill("other")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    assert_accessible(page)


@pytest.mark.parametrize("name", ["home-incoming-call", "room", "contacts"])
def test_a_members_page_on_a_phone_has_no_serious_accessibility_finding(
    member_context, world, name
):
    path = MEMBER_PAGES[name](world)
    page = member_context(world.ada, **PHONE).new_page()
    page.goto(path)
    expect(page.locator("main")).to_be_visible()
    assert_accessible(page)


def test_a_log_in_form_with_errors_has_no_serious_accessibility_finding(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Username or email").fill("ada")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("alert").or_(page.locator(".errorlist")).first).to_be_visible()
    assert_accessible(page)


@pytest.mark.parametrize(
    ("status", "path", "signed_in"),
    [
        (404, "/rooms/no-such-room/", True),
        (404, "/no-such-page/", False),
        (403, "/rooms/new/", True),
        (500, "/server-error/", False),
    ],
)
def test_an_error_page_has_no_serious_accessibility_finding(
    page, daphne_server, world, status, path, signed_in
):
    """Rendered here by Django with DEBUG off, as production serves it, with its headers (the
    CSP among them), and handed to the browser at the live server's address. The 403 is a
    form posted without its CSRF token; the 500 is its template, with no context, as Django's
    server_error renders it."""
    client = Client(enforce_csrf_checks=True)
    if signed_in:
        client.force_login(world.ada)
    response = client.post(path, {"name": "No token"}) if status == 403 else client.get(path)
    body = render_to_string("500.html") if status == 500 else response.content
    assert response.status_code == (404 if status == 500 else status)
    headers = dict(response.items())
    page.route(
        f"{daphne_server.url}{path}",
        lambda route: route.fulfill(status=status, headers=headers, body=body),
    )
    page.goto(path)
    expect(page.locator("main h1")).to_be_visible()
    screenshot(page, f"error-{status}-{'member' if signed_in else 'anonymous'}")
    assert_accessible(page)


# --- Announced to screen readers ------------------------------------------------------------

# A screen reader reads what is added inside a live region that was already in the page. This
# marks the live region around `selector` now, to check later that it was not replaced.
MARK_LIVE_REGION = """(selector) => {
  const region = document.querySelector(selector).closest("[aria-live], [role=log], [role=alert]");
  region.dataset.testMark = "kept";
}"""

# What a screen reader gets for the newest `selector`: the live region it is in (and how it
# speaks), whether that region was there before, and the text it reads.
ANNOUNCED = """(selector) => {
  const nodes = document.querySelectorAll(selector);
  const node = nodes[nodes.length - 1];
  const region = node.closest("[aria-live], [role=log], [role=alert]");
  const hidden = node.closest("[aria-hidden=true], [hidden]");
  return {
    role: region.getAttribute("role"),
    live: region.getAttribute("aria-live"),
    kept: region.dataset.testMark === "kept",
    hidden: hidden !== null,
    text: node.textContent.replace(/\\s+/g, " ").trim(),
  };
}"""


def both_in_the_garden(member_context, world):
    """Ada's and Bob's pages of the room, both online, Ada's live region marked."""
    ada_page = member_context(world.ada).new_page()
    bob_page = member_context(world.bob).new_page()
    ada_page.goto(world.room.get_absolute_url())
    bob_page.goto(world.room.get_absolute_url())
    expect(ada_page.get_by_text("2 online")).to_be_visible()
    ada_page.evaluate(MARK_LIVE_REGION, "#message-list")
    return ada_page, bob_page


def test_a_new_message_is_announced_with_its_authors_name(member_context, world):
    ada_page, bob_page = both_in_the_garden(member_context, world)

    say(bob_page, "The roses are out")
    log = ada_page.get_by_role("log", name="Messages in Garden")
    expect(log).to_contain_text("The roses are out")

    announced = ada_page.evaluate(ANNOUNCED, "#message-list .message")
    assert announced == {
        "role": "log",
        "live": "polite",
        "kept": True,
        "hidden": False,
        "text": f"Bob Babbage {announced['text'].split()[2]} The roses are out",
    }


# The live region around the message whose text is `text`, or None: what reads it out as it comes.
LIVE_REGION_OF = """(text) => {
  const node = [...document.querySelectorAll(".message")].find(m => m.textContent.includes(text));
  const region = node.closest("[aria-live], [role=log], [role=alert]");
  return region && region.getAttribute("role");
}"""


def test_older_messages_loaded_above_are_not_read_out_and_new_ones_still_are(member_context, world):
    # A screen reader reads whatever is added inside a live region: a page of 50 older
    # messages, loaded into it, was read out in full.
    for n in range(4, 56):
        cache.delete(f"parley:flood:{world.bob.pk}")  # the flood limit would refuse the most
        room_services.message_post(room=world.room, author=world.bob, body=f"Message number {n}")
    ada_page, bob_page = both_in_the_garden(member_context, world)
    assert ada_page.evaluate(LIVE_REGION_OF, "Message number 55") == "log"

    ada_page.get_by_role("link", name="Older messages").click()
    expect(ada_page.get_by_text("Message number 1", exact=True)).to_be_visible()
    assert ada_page.evaluate(LIVE_REGION_OF, "Message number 1") is None
    assert ada_page.evaluate(LIVE_REGION_OF, "Message number 5") is None
    ada_page.locator(".message-scroller").focus()  # reached by Tab, it scrolls with the keys
    ada_page.keyboard.press("Home")
    expect(ada_page.get_by_text("This is the start of Garden.")).to_be_in_viewport()
    screenshot(ada_page, "room-history-start-desktop")

    say(bob_page, "The tulips are next")
    expect(ada_page.get_by_role("log", name="Messages in Garden")).to_contain_text("The tulips")
    announced = ada_page.evaluate(ANNOUNCED, "#message-list .message")
    assert (announced["role"], announced["kept"]) == ("log", True)
    assert announced["text"].endswith("The tulips are next")
    assert_accessible(ada_page)


def test_an_incoming_call_is_announced_at_once_with_the_callers_name(member_context, world):
    ada_page = member_context(world.ada).new_page()
    bob_page = member_context(world.bob).new_page()
    open_both(bob_page, ada_page, world.bob, world.ada, world.conversation)
    ada_page.evaluate(MARK_LIVE_REGION, "#call-slot")

    bob_page.locator(".direct__header").get_by_role("button", name="Video call", exact=True).click()
    slot = ada_page.locator("#call-slot")
    expect(slot).to_have_attribute("data-call-state", "incoming", timeout=CONNECT_MS)

    # The card is an alert (assertive, and read when it is added), inside the slot's polite
    # region, which stayed while the member socket replaced the slot.
    card = slot.get_by_role("alert")
    expect(card).to_contain_text("Bob Babbage is calling you · Video call")
    alert = ada_page.evaluate(ANNOUNCED, "#call-slot [role=alert]")
    assert alert["role"] == "alert"
    assert not alert["hidden"]
    assert alert["text"].startswith("Bob Babbage is calling you · Video call")
    region = ada_page.evaluate(ANNOUNCED, "#call-slot")
    assert (region["live"], region["kept"], region["hidden"]) == ("polite", True, False)
    screenshot(ada_page, "incoming-call-announced")

    # Bob gives up: the slot's new state is said in the same region.
    bob_page.locator("#call-hangup").click()
    expect(slot).not_to_have_attribute("data-call-state", "incoming", timeout=CONNECT_MS)
    region = ada_page.evaluate(ANNOUNCED, "#call-slot")
    assert (region["live"], region["kept"]) == ("polite", True)
    assert "Bob Babbage" in region["text"]
