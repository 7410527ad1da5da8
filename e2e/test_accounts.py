"""Accounts as a person meets them: sign up, log in, log out, and being sent to log in."""

import re

from playwright.sync_api import expect

from conftest import PASSWORD
from e2e.helpers import PHONE, has_no_sideways_scroll, screenshot


def log_in(page, login: str, password: str) -> None:
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def test_a_new_member_signs_up_logs_out_and_logs_in_again_by_email(page, console_errors):
    console_errors(page)
    page.goto("/accounts/signup/")
    expect(page.get_by_role("heading", name="Sign Up")).to_be_visible()
    screenshot(page, "signup-desktop")

    page.get_by_label("Username").fill("grace")
    page.get_by_label("Email").fill("grace@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    with page.expect_websocket(lambda ws: "/ws/member/" in ws.url) as member_socket:
        page.get_by_role("button", name="Sign Up").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Welcome, grace")).to_be_visible()
    expect(page.get_by_role("navigation", name="Account").get_by_role("link")).to_have_text("grace")
    # The page's own socket opened and the server kept it.
    page.wait_for_timeout(300)
    assert not member_socket.value.is_closed()
    screenshot(page, "home-desktop")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("status")).to_have_text("You have signed out.")

    log_in(page, "grace@example.org", PASSWORD)
    expect(page.get_by_role("heading", name="Welcome, grace")).to_be_visible()
    assert console_errors.errors == []


def test_a_wrong_password_gets_a_clear_error_and_no_login(page, user, console_errors):
    console_errors(page)
    page.goto("/accounts/login/")
    log_in(page, "ada", "not-the-password")

    expect(page.get_by_role("alert")).to_have_text(
        "The username and/or password you specified are not correct."
    )
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    screenshot(page, "login-error-desktop")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    assert console_errors.errors == []


def test_an_anonymous_visit_home_is_sent_to_log_in_and_brought_back_after(page, user):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    screenshot(page, "login-desktop")

    log_in(page, "ada", PASSWORD)
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()


def test_an_anonymous_visit_to_a_deeper_page_comes_back_to_that_page(page, user):
    page.goto("/profile/")
    log_in(page, "ada", PASSWORD)
    expect(page).to_have_url(re.compile(r"/profile/$"))
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()


def test_the_entrance_pages_and_home_fit_a_phone_screen(new_context, member_context, user):
    anonymous = new_context(**PHONE).new_page()
    for path, name in (("/accounts/signup/", "signup-phone"), ("/accounts/login/", "login-phone")):
        anonymous.goto(path)
        assert has_no_sideways_scroll(anonymous), path
        screenshot(anonymous, name)

    page = member_context(user, **PHONE).new_page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Welcome, Ada Lovelace")).to_be_visible()
    assert has_no_sideways_scroll(page)
    screenshot(page, "home-phone")


def test_two_members_use_parley_at_once_each_in_their_own_browser(member_context, user_factory):
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    pages = {}
    for member in (ada, bob):
        page = member_context(member).new_page()
        with page.expect_websocket(lambda ws: "/ws/member/" in ws.url):
            page.goto("/")
        pages[member.display_name] = page

    for name, page in pages.items():
        expect(page.get_by_role("heading", name=f"Welcome, {name}")).to_be_visible()


def test_the_profile_form_saves_over_htmx_and_updates_the_header_in_place(member_context, user):
    page = member_context(user).new_page()
    page.goto("/profile/")
    page.get_by_label("Display name").fill("The Countess")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.get_by_role("navigation", name="Account").get_by_role("link")).to_have_text(
        "The Countess"
    )
    screenshot(page, "profile-desktop")
