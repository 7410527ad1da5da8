"""The base layout as a person uses it: notices, keyboard focus, allauth's other pages."""

import pytest
from playwright.sync_api import expect

from e2e.helpers import screenshot


def test_a_notice_can_be_dismissed(member_context, user):
    page = member_context(user).new_page()
    page.goto("/profile/")
    page.get_by_label("Display name").fill("Ada")
    # Without htmx's help: a plain form post, a redirect and a Django message.
    page.evaluate("document.getElementById('profile-form').submit()")

    notice = page.get_by_role("status").filter(has_text="Your profile is saved.")
    expect(notice).to_be_visible()
    page.get_by_role("button", name="Dismiss notice").click()
    expect(notice).to_be_hidden()


def test_keyboard_focus_is_visible(member_context, user):
    page = member_context(user).new_page()
    page.goto("/")
    page.keyboard.press("Tab")
    skip_link = page.get_by_role("link", name="Skip to content")
    expect(skip_link).to_be_focused()
    expect(skip_link).to_be_in_viewport()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    screenshot(page, "focus-desktop")


@pytest.mark.parametrize(
    ("path", "heading", "name"),
    [
        ("/accounts/password/change/", "Change Password", "change-password"),
        ("/accounts/email/", "Email Addresses", "email"),
    ],
)
def test_allauths_member_pages_use_parleys_layout(
    member_context, user, console_errors, path, heading, name
):
    page = console_errors(member_context(user).new_page())
    page.goto(path)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expect(page.get_by_role("navigation", name="Rooms and contacts")).to_be_visible()
    screenshot(page, f"{name}-desktop")
    assert console_errors.errors == []


def test_password_reset_page_uses_the_entrance_layout(page, console_errors):
    console_errors(page)
    page.goto("/accounts/password/reset/")
    expect(page.get_by_role("heading", name="Password Reset")).to_be_visible()
    page.get_by_label("Email").fill("nobody@example.org")
    page.get_by_role("button", name="Reset My Password").click()
    expect(page.get_by_role("heading", name="Password Reset")).to_be_visible()
    screenshot(page, "password-reset-sent-desktop")
    assert console_errors.errors == []
