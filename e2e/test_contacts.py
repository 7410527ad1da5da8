"""Contacts and direct conversations as three people use them, each in their own browser."""

import re

from playwright.sync_api import expect

from accounts import services as contact_services
from e2e.helpers import PHONE, has_no_sideways_scroll, say, screenshot
from rooms import services as room_services


def contact_list(page):
    return page.get_by_role("list", name="Your contacts")


def test_finding_asking_accepting_chatting_and_blocking_live(
    member_context, user_factory, console_errors
):
    ada = user_factory(username="ada", display_name="Ada Lovelace")
    bob = user_factory(username="bob", display_name="Bob Marley")
    carol = user_factory(username="carol", display_name="Carol")
    ada_page = console_errors(member_context(ada).new_page())
    bob_page = console_errors(member_context(bob).new_page())
    bob_page.goto("/")
    expect(contact_list(bob_page)).to_contain_text("No contacts yet.")

    # Ada finds Bob by typing part of his display name, and asks him.
    ada_page.goto("/people/")
    ada_page.get_by_label("Search people").press_sequentially("marl")
    expect(ada_page).to_have_url(re.compile(r"/people/\?q=marl$"))
    results = ada_page.get_by_role("list", name="People found")
    expect(results.get_by_role("listitem")).to_have_count(1)
    expect(results).not_to_contain_text("bob@example.org")
    screenshot(ada_page, "people-search-desktop")
    results.get_by_role("button", name="Add contact: Bob Marley").click()
    expect(results.get_by_role("status")).to_have_text("Request sent to Bob Marley.")
    expect(results).to_contain_text("Request sent")

    # Bob's open page shows it at once: a badge on Contacts and a notice with the answer.
    expect(bob_page.locator("#contact-requests-badge")).to_contain_text("1")
    notice = bob_page.locator("#request-notices .notice")
    expect(notice).to_contain_text("Ada Lovelace would like to be your contact.")
    screenshot(bob_page, "contact-request-notice-desktop")
    bob_tab_two = console_errors(bob_page.context.new_page())
    bob_tab_two.goto("/contacts/")
    expect(bob_tab_two.locator("#contact-requests-badge")).to_contain_text("1")

    notice.get_by_role("button", name="Accept").click()
    expect(notice).to_have_count(0)
    expect(bob_page.locator("#contact-requests-badge")).to_have_count(0)
    expect(contact_list(bob_page)).to_contain_text("Ada Lovelace")
    # Bob's other tab and Ada's page follow without a reload, presence included.
    expect(bob_tab_two.locator("#contact-requests-badge")).to_have_count(0)
    expect(contact_list(ada_page)).to_contain_text("Bob Marley")
    expect(contact_list(ada_page).locator(f".presence-of-{bob.pk}")).to_have_count(1)
    bob_tab_two.close()

    # They open their conversation from the contact list and chat, live both ways.
    contact_list(ada_page).get_by_role("link", name=re.compile("Bob Marley")).click()
    expect(ada_page.get_by_role("heading", level=1)).to_contain_text("Bob Marley")
    say(ada_page, "Hello Bob!")
    # Bob is elsewhere: the unread count beside Ada in his list says so, live.
    expect(
        contact_list(bob_page).get_by_role("link", name=re.compile("Ada Lovelace"))
    ).to_contain_text("1 unread")
    screenshot(bob_page, "contact-list-unread-desktop")
    contact_list(bob_page).get_by_role("link", name=re.compile("Ada Lovelace")).click()
    expect(bob_page.get_by_role("heading", level=1)).to_contain_text("Ada Lovelace")
    conversation_url = ada_page.url
    assert bob_page.url == conversation_url
    expect(bob_page.get_by_role("log")).to_contain_text("Hello Bob!")
    say(bob_page, "Hi Ada.")
    expect(ada_page.get_by_role("log")).to_contain_text("Hi Ada.")
    screenshot(ada_page, "direct-conversation-desktop")

    # Bob blocks Ada: her list loses him, and her conversation turns read-only, saying why
    # in words that never mention a block.
    bob_page.goto("/people/ada/")
    bob_page.get_by_role("button", name="Block: Ada Lovelace").click()
    expect(bob_page.get_by_role("status")).to_contain_text("You have blocked Ada Lovelace")
    expect(contact_list(ada_page)).not_to_contain_text("Bob Marley")
    expect(ada_page.locator("#composer")).to_have_text(
        "You are no longer contacts, so this conversation is read-only. Its history is kept."
    )
    expect(ada_page.get_by_label("Message", exact=True)).to_have_count(0)
    expect(ada_page.get_by_role("log")).to_contain_text("Hello Bob!")
    assert "block" not in ada_page.locator("body").inner_text().lower()
    ada_page.goto("/people/bob/")
    # Bob's page looks to her like a stranger's: she may ask (it is never delivered).
    assert "blocked" not in ada_page.locator("main").inner_text().lower()
    expect(ada_page.get_by_role("button", name="Add contact: Bob Marley")).to_be_visible()

    # Carol, not a contact of either, finds no such conversation.
    carol_page = console_errors(member_context(carol).new_page())
    assert carol_page.goto(conversation_url).status == 404
    console_errors.errors[:] = [e for e in console_errors.errors if "404" not in e]
    assert console_errors.errors == []


def seed_contacts(user_factory):
    """Ada with contacts, requests both ways, someone blocked and a conversation."""
    ada = user_factory(username="ada", display_name="Ada Lovelace")
    bob = user_factory(username="bob", display_name="Bob Marley")
    grace = user_factory(username="grace", display_name="Grace Hopper")
    alan = user_factory(username="alan", display_name="Alan Turing")
    user_factory(username="linus", display_name="Linus Torvalds")
    eve = user_factory(username="eve", display_name="Eve")
    for other in (bob, grace):
        contact_services.contact_request_send(sender=ada, username=other.username)
        contact_services.contact_request_send(sender=other, username="ada")
    contact_services.contact_request_send(sender=alan, username="ada")
    contact_services.contact_request_send(sender=ada, username="linus")
    contact_services.member_block(blocker=ada, username="eve")
    room = room_services.direct_open(a=ada, b=bob)
    room_services.message_post(room=room, author=bob, body="Are we still on for Friday?")
    room_services.message_post(room=room, author=ada, body="Yes! Seven o'clock.")
    room_services.message_post(room=room, author=bob, body="See you there.")
    assert eve
    return ada, room


def test_contacts_pages_look_right_on_desktop_and_phone(
    member_context, user_factory, console_errors
):
    ada, room = seed_contacts(user_factory)
    for name, options in (("desktop", {}), ("phone", PHONE)):
        page = console_errors(member_context(ada, **options).new_page())
        page.goto("/")
        expect(contact_list(page)).to_contain_text("Bob Marley")
        expect(page.locator("#contact-requests-badge")).to_contain_text("1")
        screenshot(page, f"contact-list-{name}")
        page.goto("/contacts/")
        expect(page.get_by_role("heading", name="Requests for you")).to_be_visible()
        screenshot(page, f"contacts-page-{name}")
        assert has_no_sideways_scroll(page)
        page.goto("/people/?q=a")
        expect(page.get_by_role("list", name="People found")).to_be_visible()
        # Text boxes are styled like every other one (one rule for them all lost its body).
        search_box = page.get_by_label("Search people")
        assert search_box.evaluate("box => getComputedStyle(box).minHeight") == "44px"
        screenshot(page, f"people-search-{name}")
        assert has_no_sideways_scroll(page)
        page.goto(room.get_absolute_url())
        expect(page.get_by_role("log")).to_contain_text("See you there.")
        screenshot(page, f"direct-conversation-{name}")
        assert has_no_sideways_scroll(page)
        page.goto("/people/bob/")
        screenshot(page, f"member-page-{name}")
        page.context.close()
    assert console_errors.errors == []
