"""Bad input to calls that their other tests leave out (docs/security.md): the call forms
without CSRF, ids past any integer, and numbers JSON allows but WebRTC does not."""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts import services as contacts
from calls import services
from calls.models import Call

pytestmark = pytest.mark.django_db(transaction=True)

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OFFER = {"type": "description", "description": {"type": "offer", "sdp": SDP}}


@pytest.fixture
def pair(user_factory):
    """Ada and Bob, contacts; Ada is calling Bob."""
    ada = user_factory(username="ada", password=None)
    bob = user_factory(username="bob", password=None)
    contacts.contact_request_send(sender=ada, username="bob")
    contacts.contact_request_send(sender=bob, username="ada")
    call = services.call_start(caller=ada, callee=bob, video=True)
    return ada, bob, call


def client_of(member, **options) -> Client:
    client = Client(**options)
    client.force_login(member)
    return client


# --- The forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "who", "answered"),
    [("decline", "bob", False), ("cancel", "ada", False), ("hangup", "ada", True)],
)
def test_a_call_form_posted_without_its_csrf_token_is_refused_and_the_call_goes_on(
    pair, action, who, answered
):
    ada, bob, call = pair
    if answered:
        services.call_accept(call_id=call.pk, member=bob)
    before = Call.objects.get(pk=call.pk).state
    member = {"ada": ada, "bob": bob}[who]
    response = client_of(member, enforce_csrf_checks=True).post(f"/calls/{call.pk}/{action}/")
    assert response.status_code == 403
    after = Call.objects.get(pk=call.pk)
    assert (after.state, after.outcome) == (before, "")


@pytest.mark.parametrize("action", ["", "accept/", "decline/", "cancel/", "hangup/"])
def test_a_call_id_past_any_database_integer_is_404(pair, action):
    _, bob, call = pair
    client = client_of(bob)
    url = f"/calls/{'9' * 30}/{action}"
    response = client.post(url) if action else client.get(url)
    assert response.status_code == 404
    assert Call.objects.get(pk=call.pk).state == Call.State.RINGING


# --- The call socket -------------------------------------------------------------------------


@pytest.fixture
def seated(pair, site_socket):
    """Both pages of the answered call, past their welcome and ready frames."""

    async def seat() -> tuple:
        ada, bob, call = pair
        await database_sync_to_async(services.call_accept)(call_id=call.pk, member=bob)
        sockets = []
        for member in (ada, bob):
            socket = await site_socket(f"/ws/calls/{call.pk}/", member)
            assert (await socket.connect(timeout=3))[0]
            assert (await socket.receive_json_from(timeout=3))["type"] == "welcome"
            sockets.append(socket)
        for socket in sockets:
            assert (await socket.receive_json_from(timeout=3))["type"] == "ready"
        return (*sockets, call)

    return seat


CANDIDATE = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        # Python's json reads NaN and Infinity, which no browser sends and no field may hold.
        ('{"type": "state", "muted": NaN, "camera": true, "sharing": false}', "true or false"),
        (
            '{"type": "candidate", "candidate": {"candidate": "c", "sdpMLineIndex": Infinity}}',
            "ICE candidate",
        ),
        # Past Python's 4,300 digits an int does not parse at all.
        (
            '{"type": "candidate", "candidate": {"candidate": "c", "sdpMLineIndex": '
            + "9" * 5000
            + "}}",
            "could not be understood",
        ),
        (
            json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": 65536}}),
            "ICE candidate",
        ),
        (
            json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": 1.0}}),
            "ICE candidate",
        ),
        (json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMid": "m" * 257}}), "ICE"),
        (json.dumps({"type": ["description"]}), "not known"),
        (json.dumps({"type": None}), "not known"),
        (json.dumps({"type": "call.state", "state": "ended"}), "not known"),  # a server event
        (json.dumps({"type": "seat.taken", "seat": "0" * 32}), "not known"),
    ],
    ids=[
        "nan",
        "infinity",
        "five-thousand-digits",
        "index-past-unsigned-short",
        "index-a-float",
        "mid-over-256",
        "type-a-list",
        "type-null",
        "a-server-event-name",
        "a-seat-event-name",
    ],
)
async def test_a_frame_json_allows_but_the_call_socket_does_not_gets_an_error_and_nothing_else(
    seated, frame, error
):
    ada_socket, bob_socket, call = await seated()

    await ada_socket.send_to(text_data=frame)
    reply = await ada_socket.receive_json_from(timeout=3)
    assert reply["type"] == "error"
    assert error in reply["message"]
    assert await bob_socket.receive_nothing(timeout=0.3)
    assert (await database_sync_to_async(Call.objects.get)(pk=call.pk)).state == "active"

    await ada_socket.send_json_to(OFFER)
    assert (await bob_socket.receive_json_from(timeout=3))["description"] == OFFER["description"]
    await ada_socket.disconnect()
    await bob_socket.disconnect()
