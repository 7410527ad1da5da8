"""Saving never depends on the doorbell: with the channel layer down, every change still happens
and answers as usual, and what could not be announced is logged."""

import socket

import pytest
from django.contrib.auth import get_user
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from parley.live.members import member_push
from rooms.models import Membership, Message

# on_commit callbacks, where announcements start, run only when transactions really commit.
pytestmark = pytest.mark.django_db(transaction=True)

LAYERS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=LAYERS)
def layer_down(request, settings):
    """A real Redis channel layer pointed at a port nothing listens on.

    Changing CHANNEL_LAYERS drops the layers Channels has made (its setting_changed receiver),
    so the next get_channel_layer() makes this one, and the test's end brings the old back.
    """
    url = f"redis://127.0.0.1:{unused_port()}/0"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": LAYERS[request.param], "CONFIG": {"hosts": [url]}}
    }
    return url


@pytest.fixture
def member_client(user):
    client = Client()
    client.force_login(user)
    return client


def failure_logged_for(caplog, group: str) -> bool:
    """Whether an announcement to `group` was logged as failed, with its traceback."""
    return any(
        record.levelname == "ERROR"
        and record.exc_info
        and f"to group {group} failed" in record.getMessage()
        for record in caplog.records
    )


def test_logging_out_with_the_layer_down_still_logs_out(layer_down, member_client, user, caplog):
    session_key = member_client.session.session_key
    response = member_client.post(reverse("account_logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("account_login")
    assert not get_user(member_client).is_authenticated
    assert not Session.objects.filter(session_key=session_key).exists()
    assert failure_logged_for(caplog, f"member-{user.pk}")


def test_posting_without_the_socket_with_the_layer_down_saves_and_redirects(
    layer_down, member_client, user, room_factory, caplog
):
    room = room_factory(owner=user)

    response = member_client.post(
        reverse("room_post", args=[room.slug]), {"body": "heard or not", "key": "k1"}
    )

    assert response.status_code == 302
    assert response["Location"] == room.get_absolute_url()
    assert Message.objects.filter(room=room, body="heard or not").count() == 1
    assert failure_logged_for(caplog, room.group)


def test_joining_a_room_with_the_layer_down_makes_the_membership(
    layer_down, member_client, user, user_factory, room_factory, caplog
):
    room = room_factory(owner=user_factory())

    response = member_client.post(reverse("room_join", args=[room.slug]))

    assert response.status_code == 302
    assert Membership.objects.filter(room=room, member=user).exists()
    assert failure_logged_for(caplog, f"member-{user.pk}")


def test_leaving_a_room_with_the_layer_down_ends_the_membership(
    layer_down, member_client, user, user_factory, room_factory, caplog
):
    room = room_factory(owner=user_factory())
    Membership.objects.create(room=room, member=user)

    response = member_client.post(reverse("room_leave", args=[room.slug]))

    assert response.status_code == 302
    assert not Membership.objects.filter(room=room, member=user).exists()
    assert failure_logged_for(caplog, room.group)


def test_pushing_to_a_member_with_the_layer_down_logs_and_returns(layer_down, user, caplog):
    member_push(member_id=user.pk, html="<p>unheard</p>")

    assert failure_logged_for(caplog, f"member-{user.pk}")
