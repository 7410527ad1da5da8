"""Presence as contacts see it: online while any tab is open, "Last seen" once the last one
closes, online contacts listed first, and nothing of it shown to anyone who is not a contact."""

import time

from playwright.sync_api import expect

from accounts import services as contact_services
from e2e.helpers import PHONE, screenshot


def contact_list(page):
    return page.get_by_role("list", name="Your contacts")


def status_of(page, member):
    """The status in words that `page`'s contact list shows for `member`."""
    return contact_list(page).locator(f".presence-of-{member.pk} .presence__text")


def befriend(a, b) -> None:
    contact_services.contact_request_send(sender=a, username=b.username)
    contact_services.contact_request_send(sender=b, username=a.username)


def presence_frames(page, *members) -> list[str]:
    """Every frame `page`'s sockets receive from now on that names one of `members`' presence."""
    names = [f"presence-of-{member.pk}" for member in members]
    frames: list[str] = []

    def watch(socket):
        socket.on(
            "framereceived",
            lambda payload: (
                isinstance(payload, str)
                and any(name in payload for name in names)
                and frames.append(payload)
            ),
        )

    page.on("websocket", watch)
    return frames


def test_a_contact_is_online_while_any_tab_is_open_and_last_seen_after_the_last_one_closes(
    member_context, user_factory, console_errors
):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    carol = user_factory(username="carol", display_name="Carol")
    befriend(ada, bob)

    ada_page = console_errors(member_context(ada).new_page())
    ada_page.goto("/")
    expect(status_of(ada_page, bob)).to_have_text("Offline")  # never seen yet

    # Carol knows neither of them: her page never carries their presence.
    carol_page = console_errors(member_context(carol).new_page())
    carol_frames = presence_frames(carol_page, ada, bob)
    carol_page.goto("/")

    bob_context = member_context(bob)
    bob_first = console_errors(bob_context.new_page())
    bob_first.goto("/")
    expect(status_of(ada_page, bob)).to_have_text("Online")
    expect(status_of(bob_first, ada)).to_have_text("Online")
    screenshot(ada_page, "presence-online-desktop")

    # A second tab opens and the first closes: Bob is still there.
    bob_second = console_errors(bob_context.new_page())
    bob_second.goto("/rooms/")
    expect(status_of(bob_second, ada)).to_have_text("Online")
    bob_first.close()
    time.sleep(1.5)  # longer than a close takes to reach Ada when it counts
    expect(status_of(ada_page, bob)).to_have_text("Online")

    # The last tab closes: Ada sees when he was last there, within seconds.
    closed_at = time.monotonic()
    bob_second.close()
    expect(status_of(ada_page, bob)).to_have_text("Last seen just now", timeout=5_000)
    assert time.monotonic() - closed_at < 5
    screenshot(ada_page, "presence-last-seen-desktop")

    # A reload shows the same: it is stored, not only pushed.
    ada_page.reload()
    expect(status_of(ada_page, bob)).to_have_text("Last seen just now")

    assert carol_page.locator(f".presence-of-{ada.pk}, .presence-of-{bob.pk}").count() == 0
    assert carol_frames == []
    assert console_errors.errors == []


def test_online_contacts_come_first_then_everyone_by_name(
    member_context, user_factory, console_errors
):
    ada = user_factory(username="ada", display_name="Ada")
    contacts = {
        name: user_factory(username=name.lower(), display_name=name)
        for name in ("Aaron", "Bob", "Zoe")
    }
    for contact in contacts.values():
        befriend(ada, contact)

    for label, options in (("desktop", {}), ("phone", PHONE)):
        page = console_errors(member_context(ada, **options).new_page())
        page.goto("/")
        names = contact_list(page).locator(".contact-list__item .sidebar-list__name")
        expect(names).to_have_count(3)

        zoe_page = console_errors(member_context(contacts["Zoe"]).new_page())
        zoe_page.goto("/")
        expect(status_of(page, contacts["Zoe"])).to_have_text("Online")

        # Shown top to bottom: Zoe (online), then Aaron and Bob (offline) by name.
        shown = sorted(
            (box["y"], name)
            for name, box in (
                (n.inner_text(), n.bounding_box()) for n in names.all() if n.is_visible()
            )
        )
        if label == "desktop":
            assert [name for _, name in shown] == ["Zoe", "Aaron", "Bob"]
        screenshot(page, f"presence-order-{label}")
        zoe_page.context.close()
        expect(status_of(page, contacts["Zoe"])).to_have_text("Last seen just now")
        page.context.close()
    assert console_errors.errors == []
