import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    # allauth counts attempts in the cache; each test starts with none.
    cache.clear()


def logged_in_member(client: Client):
    return client.get(reverse("home")).wsgi_request.user


# --- Who may see what ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["home", "profile", "account_change_password", "account_email"])
def test_anonymous_visit_is_sent_to_log_in_and_told_where_it_came_from(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={reverse(name)}"


@pytest.mark.parametrize("name", ["account_login", "account_signup", "account_reset_password"])
def test_auth_pages_open_to_anonymous_visitors_in_parleys_layout(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 200
    assert '<main id="main" class="entrance"' in response.text
    assert "entrance__card" in response.text


# --- Sign up, log in, log out --------------------------------------------------------------


def test_sign_up_creates_the_member_and_signs_them_in(client):
    response = client.post(
        reverse("account_signup"),
        {
            "username": "grace",
            "email": "grace@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    member = get_user_model().objects.get(username="grace")
    assert member.email == "grace@example.org"
    assert logged_in_member(client) == member


def test_sign_up_with_a_taken_username_shows_the_error_and_creates_nobody(client, user):
    response = client.post(
        reverse("account_signup"),
        {
            "username": user.username,
            "email": "other@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200
    assert "A user with that username already exists." in response.text
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("login", ["ada", "ada@example.org"])
def test_log_in_by_username_or_by_email(client, user, login):
    response = client.post(reverse("account_login"), {"login": login, "password": PASSWORD})
    assert response.status_code == 302
    assert logged_in_member(client) == user


def test_wrong_password_gets_a_clear_error_and_no_login(client, user):
    response = client.post(reverse("account_login"), {"login": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert "The username and/or password you specified are not correct." in response.text
    assert 'role="alert"' in response.text
    assert not logged_in_member(client).is_authenticated


def test_after_logging_in_the_member_is_brought_back_to_where_they_were_going(client, user):
    response = client.post(
        f"{reverse('account_login')}?next={reverse('profile')}",
        {"login": "ada", "password": PASSWORD},
    )
    assert response["Location"] == reverse("profile")


def test_repeated_failed_logins_are_rate_limited_even_with_the_right_password(client, user):
    for _ in range(5):
        client.post(reverse("account_login"), {"login": "ada", "password": "wrong"})
    response = client.post(reverse("account_login"), {"login": "ada", "password": PASSWORD})
    assert "Too many failed login attempts" in response.text
    assert not logged_in_member(client).is_authenticated


def test_log_out_is_a_post_and_a_get_only_asks(auth_client, user):
    assert auth_client.get(reverse("account_logout")).status_code == 200
    assert logged_in_member(auth_client) == user
    response = auth_client.post(reverse("account_logout"))
    assert response["Location"] == reverse("account_login")
    assert not logged_in_member(auth_client).is_authenticated


# --- Passwords and email -------------------------------------------------------------------


def test_change_password_keeps_the_member_signed_in_and_the_new_one_works(auth_client, user):
    new = "another-long-and-unguessable-passphrase"
    response = auth_client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": new, "password2": new},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
    assert logged_in_member(auth_client) == user


def test_password_reset_mails_a_link_that_sets_a_new_password(client, user):
    response = client.post(reverse("account_reset_password"), {"email": "ada@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ada@example.org"]
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[0].body)
    assert link, mail.outbox[0].body

    form_page = client.get(link.group(1), follow=True)
    new = "a-brand-new-long-passphrase"
    response = client.post(form_page.redirect_chain[-1][0], {"password1": new, "password2": new})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)


def test_with_mandatory_verification_a_new_member_must_confirm_their_address(client, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    response = client.post(
        reverse("account_signup"),
        {
            "username": "linus",
            "email": "linus@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response["Location"] == reverse("account_email_verification_sent")
    assert not logged_in_member(client).is_authenticated
    assert len(mail.outbox) == 1
    assert "linus@example.org" in mail.outbox[0].to


# --- Profile -------------------------------------------------------------------------------


def test_profile_saves_a_display_name_and_shows_it_in_the_header(auth_client, user):
    response = auth_client.post(reverse("profile"), {"display_name": "Countess"}, follow=True)
    user.refresh_from_db()
    assert user.display_name == "Countess"
    assert re.search(r'id="member-name"[^>]*>Countess</a>', response.text)
    assert "Your profile is saved." in response.text


def test_profile_over_htmx_returns_the_form_and_the_header_name_out_of_band(auth_client, user):
    response = auth_client.post(
        reverse("profile"), {"display_name": "Countess"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'id="profile-form"' in response.text
    assert 'role="status">Saved.' in response.text
    assert re.search(r'id="member-name"[^>]*hx-swap-oob="true">Countess</a>', response.text)


def test_an_empty_display_name_falls_back_to_the_username(auth_client, user):
    auth_client.post(reverse("profile"), {"display_name": "   "})
    user.refresh_from_db()
    assert user.display_name == ""
    assert user.name == "ada"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("x" * 51, "Ensure this value has at most 50 characters"),
        ("Ada\u202eecalevoL", "Use letters, numbers, spaces and punctuation only."),
        ("Ada\nLovelace", "Use letters, numbers, spaces and punctuation only."),
    ],
)
def test_a_bad_display_name_is_refused_inline_and_the_old_one_kept(auth_client, user, name, error):
    response = auth_client.post(
        reverse("profile"), {"display_name": name}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert error in response.text
    assert 'aria-invalid="true"' in response.text
    user.refresh_from_db()
    assert user.display_name == "Ada Lovelace"


# --- The base layout -----------------------------------------------------------------------


def test_home_shows_the_members_name_and_a_log_out_button(auth_client):
    response = auth_client.get(reverse("home"))
    assert response.status_code == 200
    assert "Welcome, Ada Lovelace" in response.text
    assert re.search(r'<form method="post" action="/accounts/logout/">', response.text)
    assert 'class="sidebar"' in response.text


def test_pages_load_htmx_and_its_ws_extension_from_this_site_and_nothing_from_elsewhere(
    auth_client,
):
    text = auth_client.get(reverse("home")).text
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer>' in text
    assert '<script src="/static/django_htmx/ext/hx-ws-2.min.js" defer>' in text
    assert re.search(r'ws-connect="/ws/member/\?rooms=[0-9a-f]{16}"', text)
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_every_htmx_request_carries_the_csrf_token(auth_client):
    response = auth_client.get(reverse("home"))
    token = response.context["csrf_token"]
    assert f"""hx-headers='{{"X-CSRFToken": "{token}"}}'""" in response.text


def test_pages_are_sent_with_a_strict_content_security_policy(client):
    policy = client.get(reverse("account_login"))["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_django_messages_are_shown_as_dismissible_notices(auth_client):
    response = auth_client.post(reverse("profile"), {"display_name": "Ada"}, follow=True)
    assert re.search(
        r'<dialog open class="notice notice--success">\s*<p role="status">Your profile is saved.',
        response.text,
    )
    assert '<form method="dialog">' in response.text
