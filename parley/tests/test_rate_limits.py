"""Request-rate limits on the forms that write (parley/ratelimits.py): past a limit, HTTP 429,
a clear answer, and nothing saved."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ContactRequest
from parley.ratelimits import BUCKETS, WRITES
from rooms.models import Room

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def create_room(client, n, **headers):
    return client.post(reverse("room_create"), {"name": f"Room {n}"}, headers=headers)


def test_creating_rooms_past_the_limit_is_refused_with_429_and_saves_nothing(auth_client):
    allowed, _ = BUCKETS["room-create"]
    for n in range(allowed):
        assert create_room(auth_client, n).status_code == 302
    response = create_room(auth_client, "too many")
    assert response.status_code == 429
    assert response["Retry-After"] == "600"
    assert "Slow down" in response.text
    assert "nothing was changed" in response.text
    assert Room.objects.count() == allowed


def test_an_htmx_form_over_the_limit_gets_a_notice_out_of_band_and_no_swap(auth_client):
    allowed, _ = BUCKETS["room-create"]
    for n in range(allowed):
        create_room(auth_client, n, **HTMX)
    response = create_room(auth_client, "too many", **HTMX)
    assert response.status_code == 429
    assert response["HX-Reswap"] == "none"
    assert 'id="notices" hx-swap-oob="beforeend"' in response.text
    assert 'role="alert"' in response.text
    assert "You are doing that too often" in response.text


def test_limits_count_per_member(auth_client, user_factory):
    allowed, _ = BUCKETS["room-create"]
    for n in range(allowed + 1):
        create_room(auth_client, n)
    other = Client()
    other.force_login(user_factory(username="bob"))
    assert create_room(other, "bob's").status_code == 302


def test_reading_a_form_is_not_counted(auth_client):
    allowed, _ = BUCKETS["room-create"]
    for _ in range(allowed + 5):
        assert auth_client.get(reverse("room_create")).status_code == 200
    assert create_room(auth_client, 1).status_code == 302


def test_profile_edits_past_the_limit_are_not_saved(auth_client, user):
    allowed, _ = BUCKETS["profile"]
    for n in range(allowed):
        auth_client.post(reverse("profile"), {"display_name": f"Ada {n}"})
    response = auth_client.post(reverse("profile"), {"display_name": "Too many"})
    assert response.status_code == 429
    user.refresh_from_db()
    assert user.display_name == f"Ada {allowed - 1}"


def test_contact_actions_share_one_limit_and_past_it_no_request_is_sent(auth_client, user_factory):
    allowed, _ = BUCKETS["contacts"]
    bob = user_factory(username="bob")
    url = reverse("contact_cancel", args=["bob"])
    for _ in range(allowed):
        auth_client.post(url)
    response = auth_client.post(reverse("contact_request", args=["bob"]), headers=HTMX)
    assert response.status_code == 429
    assert not ContactRequest.objects.filter(recipient=bob).exists()


def test_every_limited_form_is_a_url_of_the_site():
    from django.urls import get_resolver

    names = {name for name in get_resolver().reverse_dict if isinstance(name, str)}
    assert set(WRITES) <= names
