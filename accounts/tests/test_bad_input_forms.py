"""Bad input to the accounts' forms: allauth's as restyled, the profile, people and contacts
(docs/security.md). Each test checks the answer, that nothing was saved, and that nothing
reached anyone else."""

import pytest
from django.contrib.auth import get_user, get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts import services
from accounts.models import ContactRequest
from conftest import PASSWORD

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
HOSTILE_ESCAPED = (
    "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
)


def signup(client, **fields):
    data = {
        "username": "grace",
        "email": "grace@example.org",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    return client.post(reverse("account_signup"), data | fields)


# --- allauth's forms -------------------------------------------------------------------------


def test_a_sign_up_without_its_csrf_token_is_refused_and_creates_nobody():
    response = signup(Client(enforce_csrf_checks=True))
    assert response.status_code == 403
    assert not get_user_model().objects.exists()


def test_a_log_in_without_its_csrf_token_is_refused_and_signs_nobody_in(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("account_login"), {"login": "ada", "password": PASSWORD})
    assert response.status_code == 403
    assert not get_user(client).is_authenticated


def test_a_log_out_without_its_csrf_token_is_refused_and_keeps_the_member_in(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("account_logout")).status_code == 403
    assert get_user(client) == user


def test_a_password_change_without_its_csrf_token_is_refused_and_keeps_the_password(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    new = "another-long-passphrase-entirely"
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": new, "password2": new},
    )
    assert response.status_code == 403
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"username": HOSTILE}, "Enter a valid username."),
        ({"username": "grace hopper"}, "Enter a valid username."),
        ({"username": "g" * 151}, "Ensure this value has at most 150 characters"),
        ({"email": HOSTILE}, "Enter a valid email address."),
        ({"email": "grace@example.org" + "x" * 300}, "Enter a valid email address."),
        ({"password2": "something-else-entirely"}, "You must type the same password each time."),
        ({"password1": "short", "password2": "short"}, "This password is too short."),
    ],
    ids=[
        "markup-username",
        "username-with-a-space",
        "username-151",
        "markup-email",
        "over-long-email",
        "passwords-differ",
        "password-too-short",
    ],
)
def test_a_sign_up_that_cannot_be_made_says_why_as_text_and_creates_nobody(client, fields, error):
    response = signup(client, **fields)
    assert response.status_code == 200
    assert error in response.text
    assert "<script>alert(2)" not in response.text
    assert not get_user_model().objects.exists()
    assert not get_user(client).is_authenticated


def test_a_password_reset_for_an_unknown_address_answers_as_for_a_known_one(client, user):
    known = client.post(reverse("account_reset_password"), {"email": "ada@example.org"})
    unknown = client.post(reverse("account_reset_password"), {"email": "nobody@example.org"})
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    # Each address gets a mail; the unknown one is told no account has it, nobody else is.
    assert sorted(message.to[0] for message in mail.outbox) == [
        "ada@example.org",
        "nobody@example.org",
    ]


# --- The profile -----------------------------------------------------------------------------


def test_a_profile_saved_without_its_csrf_token_is_refused_and_keeps_the_name(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("profile"), {"display_name": "Mallory"}).status_code == 403
    user.refresh_from_db()
    assert user.display_name == "Ada Lovelace"


def test_a_display_name_in_html_is_saved_as_text_and_shown_as_text_to_its_owner(
    client_of, user_factory
):
    mallory = user_factory(username="mallory")
    client = client_of(mallory)
    saved = client.post(
        reverse("profile"), {"display_name": HOSTILE[:50]}, headers={"HX-Request": "true"}
    )
    mallory.refresh_from_db()
    assert mallory.display_name == HOSTILE[:50]
    for page in (saved.text, client.get(reverse("profile")).text, client.get("/").text):
        assert 'onerror="alert(1)"' not in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


@pytest.mark.parametrize(
    "name",
    ["Ada\x00Lovelace", "Ada\u200bLovelace", "Ada\u2066Lovelace", "Ada\tLovelace"],
    ids=["null", "zero-width-space", "bidi-isolate", "tab"],
)
def test_a_display_name_with_invisible_characters_is_refused_and_the_old_one_kept(
    client_of, user, name
):
    response = client_of(user).post(
        reverse("profile"), {"display_name": name}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert 'aria-invalid="true"' in response.text
    user.refresh_from_db()
    assert user.display_name == "Ada Lovelace"


# --- People and contacts ---------------------------------------------------------------------


def test_a_people_search_in_html_is_echoed_as_text(client_of, user):
    response = client_of(user).get("/people/", {"q": HOSTILE})
    assert response.status_code == 200
    assert "<script>alert(2)" not in response.text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in response.text


@pytest.mark.parametrize(
    ("username", "shown"),
    [
        (HOSTILE, escape(HOSTILE[:50]) + "”"),  # the first 50 characters, as text
        ("n" * 5000, "n" * 50 + "”"),
    ],
    ids=["markup", "five-thousand-characters"],
)
@pytest.mark.parametrize("htmx", [True, False])
def test_a_contact_request_to_a_name_nobody_has_says_so_as_text_and_sends_nothing(
    client_of, user, user_factory, username, shown, htmx
):
    bob = user_factory(username="bob")
    headers = {"HX-Request": "true"} if htmx else {}
    response = client_of(user).post(
        "/contacts/add/", {"username": username}, headers=headers, follow=not htmx
    )
    assert response.status_code == 200
    assert f"Nobody here is called “{shown}" in response.text
    if htmx:  # nobody's actions to stand beside: a notice, appended to the page's notices
        assert '<div id="notices" hx-swap-oob="beforeend">' in response.text
    assert "<script>alert(2)" not in response.text
    assert "n" * 51 not in response.text
    assert not ContactRequest.objects.exists()
    assert not services.selectors.sidebar_contacts(bob).requests


@pytest.mark.parametrize(
    "path",
    [
        "/contacts/requests/{big}/accept/",
        "/contacts/requests/{big}/decline/",
        "/contacts/requests/0/accept/",
        "/people/{hostile}/request/",
        "/people/{hostile}/block/",
        "/people/{hostile}/remove/",
        "/people/{hostile}/cancel/",
        "/people/{hostile}/unblock/",
        "/people/{hostile}/",
        "/people/{hostile}/chat/",
    ],
)
def test_ids_and_names_that_are_nobodys_are_404_or_refused_and_change_nothing(
    client_of, user, path
):
    url = path.format(big="9" * 30, hostile="%3Cscript%3Ealert(2)%3C%2Fscript%3E")
    client = client_of(user)
    response = client.post(url) if not url.endswith(("/people/", "/chat/")) else client.get(url)
    if response.status_code != 404:  # the request form: refused with words, as text
        assert response.status_code == 302
        followed = client.get(response["Location"])
        assert "Nobody here is called “&lt;script&gt;alert(2)&lt;/script&gt;”." in followed.text
    assert not ContactRequest.objects.exists()
    assert get_user_model().objects.count() == 1


def test_answering_a_request_someone_else_received_is_404_and_leaves_it_pending(
    client_of, user, user_factory
):
    bob, carol = user_factory(username="bob"), user_factory(username="carol")
    services.contact_request_send(sender=bob, username="carol")
    request = ContactRequest.objects.get()
    for action in ("accept", "decline"):
        response = client_of(user).post(f"/contacts/requests/{request.pk}/{action}/")
        assert response.status_code == 404
    assert ContactRequest.objects.get() == request
    assert not services.selectors.are_contacts(bob, carol)
    assert not services.selectors.are_contacts(user, bob)
