import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from rooms import services
from rooms.models import Membership, Message, Room

pytestmark = pytest.mark.django_db


def post_messages(room, author, count: int) -> None:
    for n in range(1, count + 1):
        cache.delete(f"parley:flood:{author.pk}")  # the flood limit is for people, not fixtures
        services.message_post(room=room, author=author, body=f"message {n}", key=f"k{n}")


# --- Directory ------------------------------------------------------------------------------


def test_directory_lists_public_rooms_with_topic_members_and_activity(auth_client, room_factory):
    room_factory(name="Gardening", topic="Tomatoes and more")
    room_factory(name="Secret club", is_private=True)
    response = auth_client.get(reverse("room_directory"))
    assert response.status_code == 200
    assert "Gardening" in response.text
    assert "Tomatoes and more" in response.text
    assert "1 member ·" in response.text
    assert "Secret club" not in response.text


def test_search_filters_by_part_of_the_name_and_answers_htmx_with_the_results_alone(
    auth_client, room_factory
):
    room_factory(name="Gardening")
    room_factory(name="Chess")
    response = auth_client.get(
        reverse("room_directory"),
        {"q": "arden"},
        headers={"HX-Request": "true", "HX-Target": "room-results"},
    )
    assert "Gardening" in response.text
    assert "Chess" not in response.text
    assert "<html" not in response.text
    assert 'id="room-results"' in response.text


def test_a_search_in_the_url_works_on_reload(auth_client, room_factory):
    room_factory(name="Gardening")
    room_factory(name="Chess")
    response = auth_client.get(reverse("room_directory"), {"q": "chess"})
    assert "<html" in response.text
    assert 'value="chess"' in response.text
    assert "Chess" in response.text
    assert "Gardening" not in response.text


def test_a_search_that_finds_nothing_says_so(auth_client, room_factory):
    room_factory(name="Chess")
    response = auth_client.get(reverse("room_directory"), {"q": "zzz"})
    assert "No public room matches “zzz”." in response.text


def test_the_directory_pages_by_twenty(auth_client, room_factory, user):
    owner = user
    for n in range(25):
        room_factory(owner=owner, name=f"Room {n:02}")
    first = auth_client.get(reverse("room_directory"))
    second = auth_client.get(reverse("room_directory"), {"page": 2})
    assert first.text.count('class="room-card"') == 20
    assert second.text.count('class="room-card"') == 5
    assert "Page 1 of 2" in first.text


def test_join_from_the_directory_makes_a_member_and_opens_the_room(auth_client, room_factory, user):
    room = room_factory(name="Gardening")
    response = auth_client.post(reverse("room_join", args=[room.slug]))
    assert response["Location"] == room.get_absolute_url()
    assert Membership.objects.filter(room=room, member=user).exists()


# --- Create ---------------------------------------------------------------------------------


def test_creating_a_room_makes_the_creator_its_owner(auth_client, user):
    response = auth_client.post(
        reverse("room_create"), {"name": "Book club", "topic": "One a month"}
    )
    room = Room.objects.get(name="Book club")
    assert response["Location"] == room.get_absolute_url()
    assert room.slug == "book-club"
    assert not room.is_private
    assert Membership.objects.get(room=room).role == Membership.Role.OWNER


def test_creating_over_htmx_sends_the_browser_to_the_room(auth_client):
    response = auth_client.post(
        reverse("room_create"), {"name": "Book club"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == Room.objects.get().get_absolute_url()


def test_two_rooms_with_one_name_get_different_addresses(auth_client, room_factory):
    room_factory(name="Book club")
    auth_client.post(reverse("room_create"), {"name": "Book club"})
    assert sorted(Room.objects.values_list("slug", flat=True)) == ["book-club", "book-club-2"]


def test_create_errors_are_shown_inline_over_htmx(auth_client):
    response = auth_client.post(
        reverse("room_create"), {"name": "", "topic": "x" * 201}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert "This field is required." in response.text
    assert "Ensure this value has at most 200 characters" in response.text
    assert not Room.objects.exists()


# --- A room ---------------------------------------------------------------------------------


def test_the_room_page_shows_the_newest_fifty_messages_and_a_link_to_older_ones(
    auth_client, room_factory, user
):
    room = room_factory(owner=user)
    post_messages(room, user, 60)
    response = auth_client.get(room.get_absolute_url())
    seqs = [int(n) for n in re.findall(r'data-seq="(\d+)"', response.text)]
    assert seqs == list(range(11, 61))
    assert f"{reverse('room_messages', args=[room.slug])}?before=11" in response.text
    assert 'ws-connect="/ws/rooms/' in response.text
    assert 'id="room-seq" name="after" value="60"' in response.text


def test_older_messages_load_the_page_before_with_no_link_at_the_start(
    auth_client, room_factory, user
):
    room = room_factory(owner=user)
    post_messages(room, user, 60)
    response = auth_client.get(
        reverse("room_messages", args=[room.slug]), {"before": 11}, headers={"HX-Request": "true"}
    )
    seqs = [int(n) for n in re.findall(r'data-seq="(\d+)"', response.text)]
    assert seqs == list(range(1, 11))
    assert "?before=" not in response.text
    assert "This is the start of General." in response.text


def test_a_public_room_can_be_read_before_joining_but_has_no_socket(
    auth_client, room_factory, user_factory
):
    room = room_factory(owner=user_factory())
    response = auth_client.get(room.get_absolute_url())
    assert response.status_code == 200
    assert "/ws/rooms/" not in response.text
    assert "Join General" in response.text


@pytest.mark.parametrize("page", ["room", "room_messages"])
def test_a_private_room_does_not_exist_for_a_non_member(
    auth_client, room_factory, user_factory, page
):
    room = room_factory(owner=user_factory(), is_private=True)
    assert auth_client.get(reverse(page, args=[room.slug])).status_code == 404


@pytest.mark.parametrize("action", ["room_post", "room_join", "room_leave", "room_invite"])
def test_a_private_room_refuses_every_action_of_a_non_member_with_404(
    auth_client, room_factory, user_factory, action
):
    room = room_factory(owner=user_factory(), is_private=True)
    response = auth_client.post(reverse(action, args=[room.slug]), {"body": "hi", "username": "x"})
    assert response.status_code == 404
    assert not Message.objects.exists()
    assert room.memberships.count() == 1


def test_the_owner_invites_by_username_and_the_room_opens_to_the_invitee(
    client, room_factory, user_factory
):
    owner, guest = user_factory(), user_factory(username="grace")
    room = room_factory(owner=owner, is_private=True)
    client.force_login(guest)
    assert client.get(room.get_absolute_url()).status_code == 404

    client.force_login(owner)
    response = client.post(
        reverse("room_invite", args=[room.slug]),
        {"username": "Grace"},
        headers={"HX-Request": "true"},
    )
    assert "grace is now in this room." in response.text

    client.force_login(guest)
    assert client.get(room.get_absolute_url()).status_code == 200


@pytest.mark.parametrize(
    ("username", "error"),
    [("nobody", "Nobody here is called “nobody”."), ("ada", "already in this room")],
)
def test_an_invitation_that_cannot_be_made_says_why(
    auth_client, room_factory, user, username, error
):
    room = room_factory(owner=user, is_private=True)
    response = auth_client.post(
        reverse("room_invite", args=[room.slug]),
        {"username": username},
        headers={"HX-Request": "true"},
    )
    assert error in response.text
    assert 'role="alert"' in response.text


def test_only_the_owner_may_invite(client, room_factory, user_factory):
    owner, member = user_factory(), user_factory()
    room = room_factory(owner=owner, is_private=True)
    Membership.objects.create(room=room, member=member)
    user_factory(username="grace")
    client.force_login(member)
    client.post(reverse("room_invite", args=[room.slug]), {"username": "grace"})
    assert room.memberships.count() == 2


def test_leaving_removes_the_membership_and_an_owner_hands_the_room_on(
    client, room_factory, user_factory
):
    owner, member = user_factory(), user_factory()
    room = room_factory(owner=owner)
    services.room_join(room=room, member=member)
    client.force_login(owner)
    response = client.post(reverse("room_leave", args=[room.slug]))
    assert response["Location"] == reverse("room_directory")
    assert list(room.memberships.values_list("member", "role")) == [
        (member.pk, Membership.Role.OWNER)
    ]


def test_posting_without_javascript_saves_and_returns_to_the_room(auth_client, room_factory, user):
    room = room_factory(owner=user)
    response = auth_client.post(
        reverse("room_post", args=[room.slug]), {"body": "plain form", "key": "abc"}
    )
    assert response["Location"] == room.get_absolute_url()
    assert Message.objects.get().body == "plain form"


def test_a_too_long_message_posted_without_javascript_is_refused_with_a_notice(
    auth_client, room_factory, user
):
    room = room_factory(owner=user)
    response = auth_client.post(
        reverse("room_post", args=[room.slug]), {"body": "x" * 4001}, follow=True
    )
    assert "Messages can be at most 4,000 characters; yours has 4,001." in response.text
    assert not Message.objects.exists()


def test_the_sidebar_lists_my_rooms_with_unread_counts(client, room_factory, user_factory):
    ada, bob = user_factory(), user_factory()
    room = room_factory(owner=ada, name="Gardening")
    services.room_join(room=room, member=bob)
    post_messages(room, ada, 3)
    client.force_login(bob)
    response = client.get(reverse("home"))
    assert re.search(
        rf'Gardening</span>\s*<span id="unread-{room.pk}" class="unread">'
        r'<span class="visually-hidden">, </span>3<span class="visually-hidden"> unread',
        response.text,
    )
    client.get(room.get_absolute_url())
    assert f'<span id="unread-{room.pk}" class="unread"></span>' in client.get("/").text


def test_the_viewer_stylesheet_marks_only_my_messages_as_mine(auth_client, user):
    response = auth_client.get(reverse("viewer_stylesheet"))
    assert response["Content-Type"].startswith("text/css")
    assert f'.message[data-author="{user.pk}"]' in response.text
    assert "private" in response["Cache-Control"]


def test_a_fresh_socket_after_leaving_offers_to_join_instead(client, room_factory, user_factory):
    owner, member = user_factory(), user_factory()
    room = room_factory(owner=owner)
    client.force_login(member)
    response = client.get(reverse("room_socket", args=[room.slug]), headers={"HX-Request": "true"})
    assert "ws-connect" not in response.text
    assert "Join General" in response.text
