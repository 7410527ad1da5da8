"""The call socket through the whole ASGI stack, on whichever channel layer is configured."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from calls import services
from calls.models import Call
from parley.live.announce import group_send
from parley.live.members import member_group, member_push

pytestmark = pytest.mark.django_db(transaction=True)

SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


@pytest.fixture
def trio(user_factory):
    """Ada and Bob are contacts; Carol is a contact of both, but never in their call."""
    from types import SimpleNamespace

    # No passwords: sockets sign in by session, and hashing three takes a second and a half.
    ada = user_factory(username="ada", display_name="Ada", password=None)
    bob = user_factory(username="bob", display_name="Bob", password=None)
    carol = user_factory(username="carol", display_name="Carol", password=None)
    for a, b in ((ada, bob), (ada, carol), (bob, carol)):
        account_services.contact_request_send(sender=a, username=b.username)
        account_services.contact_request_send(sender=b, username=a.username)
    return SimpleNamespace(ada=ada, bob=bob, carol=carol)


@pytest.fixture
def ringing(trio):
    """Ada calls Bob; it rings."""
    return services.call_start(caller=trio.ada, callee=trio.bob, video=True)


@pytest.fixture
def active(trio, ringing):
    """Bob answered Ada's call."""
    return services.call_accept(call_id=ringing.pk, member=trio.bob)


@pytest.fixture
def open_call(site_socket):
    """Open the call socket as `member`; returns the socket and its welcome frame."""

    async def open_socket(call: Call, member):
        socket = await site_socket(f"/ws/calls/{call.pk}/", member)
        connected, _ = await socket.connect(timeout=3)
        assert connected
        welcome = await socket.receive_json_from(timeout=3)
        assert welcome["type"] == "welcome"
        return socket, welcome

    return open_socket


@pytest.fixture
def seated(open_call):
    """Both participants' pages on an active call, past their `ready` frames."""

    async def seat_both(call: Call, caller, callee):
        caller_socket, caller_welcome = await open_call(call, caller)
        callee_socket, callee_welcome = await open_call(call, callee)
        assert await next_frame(caller_socket) == {"type": "ready", "peer": callee_welcome["seat"]}
        assert await next_frame(callee_socket) == {"type": "ready", "peer": caller_welcome["seat"]}
        return caller_socket, caller_welcome["seat"], callee_socket, callee_welcome["seat"]

    return seat_both


async def next_frame(socket: WebsocketCommunicator, wait: float = 3) -> dict:
    return await socket.receive_json_from(timeout=wait)


async def closed_with(socket: WebsocketCommunicator, wait: float = 3) -> int:
    output = await socket.receive_output(timeout=wait)
    assert output["type"] == "websocket.close", output
    return output.get("code")


async def refused(site_socket, call: Call, member) -> bool:
    socket = await site_socket(f"/ws/calls/{call.pk}/", member)
    connected, _ = await socket.connect(timeout=3)
    await socket.disconnect()
    return not connected


async def close_all(*sockets):
    for socket in sockets:
        await socket.disconnect()


def offer(sdp: str = SDP) -> dict:
    return {"type": "description", "description": {"type": "offer", "sdp": sdp}}


# --- Who may open it ---------------------------------------------------------------------


async def test_both_participants_open_the_socket_and_are_welcomed(trio, ringing, open_call):
    ada_socket, ada_welcome = await open_call(ringing, trio.ada)
    bob_socket, bob_welcome = await open_call(ringing, trio.bob)

    assert ada_welcome["polite"] is False
    assert bob_welcome["polite"] is True
    for welcome in (ada_welcome, bob_welcome):
        assert welcome["state"] == "ringing"
        assert len(welcome["seat"]) == 32
        int(welcome["seat"], 16)
        assert isinstance(welcome["ice"]["iceServers"], list)
        assert welcome["ice"]["iceTransportPolicy"] in ("all", "relay")
    assert ada_welcome["seat"] != bob_welcome["seat"]
    # Ringing: nobody is told to start yet.
    assert await ada_socket.receive_nothing(timeout=0.3)
    assert await bob_socket.receive_nothing(timeout=0.1)
    await close_all(ada_socket, bob_socket)


async def test_a_third_member_is_refused_at_the_handshake(trio, active, site_socket):
    assert await refused(site_socket, active, trio.carol)


async def test_a_third_member_cannot_reach_the_call_at_all(trio, active, seated, site_socket):
    ada_socket, _, bob_socket, _ = await seated(active, trio.ada, trio.bob)
    carol = await site_socket(f"/ws/calls/{active.pk}/", trio.carol)
    connected, _ = await carol.connect(timeout=3)
    assert not connected
    # Even a frame pushed past the refused handshake (no server would pass it on) goes nowhere.
    await carol.send_json_to(offer())
    assert await carol.receive_nothing(timeout=0.3)

    assert await ada_socket.receive_nothing(timeout=0.3)
    assert await bob_socket.receive_nothing(timeout=0.1)
    await close_all(ada_socket, bob_socket, carol)


async def test_an_anonymous_socket_is_refused(active):
    from parley.asgi import application

    socket = WebsocketCommunicator(
        application,
        f"/ws/calls/{active.pk}/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
    )
    connected, _ = await socket.connect(timeout=3)
    assert not connected


async def test_an_ended_call_is_refused(trio, ringing, site_socket):
    await database_sync_to_async(services.call_decline)(call_id=ringing.pk, member=trio.bob)
    assert await refused(site_socket, ringing, trio.ada)
    assert await refused(site_socket, ringing, trio.bob)


async def test_an_overdue_call_is_ended_on_opening_and_refused(
    trio, ringing, site_socket, settings
):
    settings.CALL_RING_TIMEOUT = 0
    assert await refused(site_socket, ringing, trio.ada)
    call = await database_sync_to_async(Call.objects.get)(pk=ringing.pk)
    assert (call.state, call.outcome) == ("ended", "missed")


async def test_a_call_that_does_not_exist_is_refused(trio, site_socket):
    assert await refused(site_socket, Call(pk=987654), trio.ada)


async def test_the_callee_of_a_call_that_rings_nowhere_is_refused(trio, site_socket):
    """Bob blocked Ada: her call rings nowhere, and his page cannot learn of it."""

    def blocked_call():
        account_services.member_block(blocker=trio.bob, username="ada")
        return services.call_start(caller=trio.ada, callee=trio.bob, video=True)

    call = await database_sync_to_async(blocked_call)()
    assert await refused(site_socket, call, trio.bob)


# --- Ready, relaying ----------------------------------------------------------------------


async def test_ready_goes_to_both_when_the_callee_accepts(trio, ringing, open_call):
    ada_socket, ada_welcome = await open_call(ringing, trio.ada)
    bob_socket, bob_welcome = await open_call(ringing, trio.bob)
    assert await ada_socket.receive_nothing(timeout=0.3)

    await database_sync_to_async(services.call_accept)(call_id=ringing.pk, member=trio.bob)

    assert await next_frame(ada_socket) == {"type": "ready", "peer": bob_welcome["seat"]}
    assert await next_frame(bob_socket) == {"type": "ready", "peer": ada_welcome["seat"]}
    assert await ada_socket.receive_nothing(timeout=0.3)
    assert await bob_socket.receive_nothing(timeout=0.1)
    await close_all(ada_socket, bob_socket)


async def test_ready_goes_to_both_when_the_second_page_joins_an_active_call(
    trio, active, open_call
):
    ada_socket, ada_welcome = await open_call(active, trio.ada)
    assert ada_welcome["state"] == "active"
    assert await ada_socket.receive_nothing(timeout=0.3)  # alone: nobody to be ready with

    bob_socket, bob_welcome = await open_call(active, trio.bob)
    assert await next_frame(ada_socket) == {"type": "ready", "peer": bob_welcome["seat"]}
    assert await next_frame(bob_socket) == {"type": "ready", "peer": ada_welcome["seat"]}
    await close_all(ada_socket, bob_socket)


async def test_descriptions_candidates_and_state_are_relayed_both_ways(trio, active, seated):
    ada_socket, ada_seat, bob_socket, bob_seat = await seated(active, trio.ada, trio.bob)

    await ada_socket.send_json_to(offer())
    assert await next_frame(bob_socket) == {**offer(), "from": ada_seat}

    answer = {"type": "description", "description": {"type": "answer", "sdp": SDP}}
    await bob_socket.send_json_to(answer)
    assert await next_frame(ada_socket) == {**answer, "from": bob_seat}

    await ada_socket.send_json_to({"type": "candidate", "candidate": CANDIDATE})
    assert await next_frame(bob_socket) == {
        "type": "candidate",
        "candidate": CANDIDATE,
        "from": ada_seat,
    }
    await bob_socket.send_json_to({"type": "candidate", "candidate": None})
    assert await next_frame(ada_socket) == {
        "type": "candidate",
        "candidate": None,
        "from": bob_seat,
    }

    state = {"type": "state", "muted": True, "camera": False, "sharing": False}
    await bob_socket.send_json_to(state)
    assert await next_frame(ada_socket) == {**state, "from": bob_seat}

    # Nothing comes back to whoever sent it.
    assert await ada_socket.receive_nothing(timeout=0.3)
    assert await bob_socket.receive_nothing(timeout=0.1)
    await close_all(ada_socket, bob_socket)


async def test_a_relayed_frame_is_rebuilt_from_its_checked_fields(trio, active, seated):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)
    await ada_socket.send_json_to(
        {
            "type": "candidate",
            "from": "someone-else",
            "to": "everyone",
            "html": "<b>hi</b>",
            "candidate": {"candidate": CANDIDATE["candidate"], "extra": 1},
        }
    )
    assert await next_frame(bob_socket) == {
        "type": "candidate",
        "candidate": {
            "candidate": CANDIDATE["candidate"],
            "sdpMid": None,
            "sdpMLineIndex": None,
            "usernameFragment": None,
        },
        "from": ada_seat,
    }
    await close_all(ada_socket, bob_socket)


async def test_markup_in_sdp_reaches_only_the_peer_escaped_inside_a_json_string(
    trio, active, seated, site_socket
):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)
    # Everyone's other live pages: their member sockets.
    onlookers = []
    for member in (trio.carol, trio.bob, trio.ada):
        socket = await site_socket("/ws/member/", member)
        assert (await socket.connect(timeout=3))[0]
        while not await socket.receive_nothing(timeout=0.3):
            await socket.receive_from()  # what a member socket says as it opens
        onlookers.append(socket)
    sdp = SDP + 'a=x:</script><script>alert(1)</script><img src=x onerror="alert(2)">&amp;\r\n'

    await ada_socket.send_json_to(offer(sdp))

    text = await bob_socket.receive_from(timeout=3)
    assert "<" not in text
    assert ">" not in text
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in text
    assert json.loads(text) == {**offer(sdp), "from": ada_seat}
    assert await ada_socket.receive_nothing(timeout=0.3)
    for socket in onlookers:  # presence news may come and go; never the SDP
        while not await socket.receive_nothing(timeout=0.3):
            assert "alert" not in await socket.receive_from()
    await close_all(ada_socket, bob_socket, *onlookers)


# --- Bad frames: an error to the sender, nothing relayed, socket and call stay up ------------

BAD_FRAMES = [
    ("not json", "could not be understood"),
    ("[1, 2, 3]", "could not be understood"),
    ('"offer"', "could not be understood"),
    ("[" * 60_000, "could not be understood"),
    (json.dumps({"description": {"type": "offer", "sdp": SDP}}), "not known"),
    (json.dumps({"type": "hello"}), "not known"),
    (json.dumps({"type": "welcome", "seat": "x"}), "not known"),
    (json.dumps({"type": "description"}), "offer or an answer"),
    (json.dumps({"type": "description", "description": "v=0"}), "offer or an answer"),
    (json.dumps({"type": "description", "description": {"type": "pranswer", "sdp": SDP}}), "offer"),
    (json.dumps({"type": "description", "description": {"type": "offer"}}), "offer or an answer"),
    (json.dumps({"type": "description", "description": {"type": "offer", "sdp": 7}}), "offer"),
    (
        json.dumps({"type": "description", "description": {"type": "offer", "sdp": "<p>hi</p>"}}),
        "offer or an answer",
    ),
    (json.dumps(offer("v=0\r\n" + "a" * (64 * 1024))), "too large: at most 64 KiB"),
    (json.dumps(offer("v=0\r\n" + "a" * (71 * 1024))), "too large: at most 70 KiB"),
    (json.dumps({"type": "candidate"}), "ICE candidate"),
    (json.dumps({"type": "candidate", "candidate": "candidate:1 1 udp"}), "ICE candidate"),
    (json.dumps({"type": "candidate", "candidate": {"candidate": 5}}), "ICE candidate"),
    (json.dumps({"type": "candidate", "candidate": {"sdpMid": "0"}}), "ICE candidate"),
    (
        json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": "0"}}),
        "ICE candidate",
    ),
    (
        json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": True}}),
        "ICE candidate",
    ),
    (
        json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMLineIndex": -1}}),
        "ICE candidate",
    ),
    (json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "sdpMid": 0}}), "ICE candidate"),
    (
        json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "usernameFragment": ["x"]}}),
        "ICE candidate",
    ),
    (
        json.dumps({"type": "candidate", "candidate": {**CANDIDATE, "candidate": "c" * 2049}}),
        "too large: at most 2 KiB",
    ),
    (json.dumps({"type": "state", "muted": True, "camera": True}), "muted, camera and sharing"),
    (
        json.dumps({"type": "state", "muted": "yes", "camera": True, "sharing": False}),
        "muted, camera and sharing",
    ),
    (json.dumps({"type": "state", "muted": 1, "camera": 0, "sharing": 0}), "true or false"),
]


@pytest.mark.parametrize(("frame", "error"), BAD_FRAMES)
async def test_a_bad_frame_gets_an_error_and_the_socket_still_relays(
    trio, active, seated, frame, error
):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    await ada_socket.send_to(text_data=frame)
    reply = await next_frame(ada_socket)
    assert reply["type"] == "error"
    assert error in reply["message"]
    assert await bob_socket.receive_nothing(timeout=0.3)

    await ada_socket.send_json_to(offer())
    assert await next_frame(bob_socket) == {**offer(), "from": ada_seat}
    call = await database_sync_to_async(Call.objects.get)(pk=active.pk)
    assert call.state == "active"
    await close_all(ada_socket, bob_socket)


async def test_a_binary_frame_gets_an_error_and_the_socket_still_relays(trio, active, seated):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    await ada_socket.send_to(bytes_data=json.dumps(offer()).encode())
    reply = await next_frame(ada_socket)
    assert reply == {"type": "error", "message": reply["message"]}
    assert "Binary" in reply["message"]
    assert await bob_socket.receive_nothing(timeout=0.3)

    await ada_socket.send_json_to(offer())
    assert await next_frame(bob_socket) == {**offer(), "from": ada_seat}
    await close_all(ada_socket, bob_socket)


async def test_signaling_before_the_call_is_answered_is_refused(trio, ringing, open_call):
    ada_socket, _ = await open_call(ringing, trio.ada)
    bob_socket, _ = await open_call(ringing, trio.bob)

    for frame in (
        offer(),
        {"type": "candidate", "candidate": CANDIDATE},
        {"type": "state", "muted": False, "camera": True, "sharing": False},
        {"type": "connected"},
    ):
        await ada_socket.send_json_to(frame)
        assert await next_frame(ada_socket) == {
            "type": "error",
            "message": "The call has not been answered yet.",
        }
    assert await bob_socket.receive_nothing(timeout=0.3)
    call = await database_sync_to_async(Call.objects.get)(pk=ringing.pk)
    assert (call.state, call.connected_at) == ("ringing", None)
    await close_all(ada_socket, bob_socket)


async def test_a_flood_of_candidates_is_cut_at_the_rate_limit_and_relaying_resumes(
    trio, active, seated, monkeypatch
):
    from calls import consumers

    monkeypatch.setattr(consumers, "RATE_WINDOW", 3.0)
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    for n in range(260):
        candidate = {**CANDIDATE, "candidate": f"{CANDIDATE['candidate']} generation {n}"}
        await ada_socket.send_json_to({"type": "candidate", "candidate": candidate})
    errors = [await next_frame(ada_socket) for _ in range(60)]
    assert all(e == {"type": "error", "message": consumers.TOO_FAST} for e in errors)
    relayed = [await next_frame(bob_socket) for _ in range(200)]
    assert [frame["candidate"]["candidate"].split()[-1] for frame in relayed] == [
        str(n) for n in range(200)
    ]
    assert await bob_socket.receive_nothing(timeout=0.3)
    call = await database_sync_to_async(Call.objects.get)(pk=active.pk)
    assert call.state == "active"

    await asyncio.sleep(3.1)
    await ada_socket.send_json_to(offer())
    assert await next_frame(bob_socket) == {**offer(), "from": ada_seat}
    await close_all(ada_socket, bob_socket)


# --- Seats ---------------------------------------------------------------------------------


async def test_a_newer_tab_takes_the_seat_and_the_older_one_is_told_and_closed(
    trio, active, seated, open_call
):
    ada_socket, ada_seat, old_tab, old_seat = await seated(active, trio.ada, trio.bob)

    new_tab, new_welcome = await open_call(active, trio.bob)

    assert await next_frame(old_tab) == {"type": "moved"}
    assert await closed_with(old_tab) == 4004
    assert await next_frame(ada_socket) == {"type": "ready", "peer": new_welcome["seat"]}
    assert await next_frame(new_tab) == {"type": "ready", "peer": ada_seat}
    assert new_welcome["seat"] != old_seat

    await ada_socket.send_json_to(offer())
    assert await next_frame(new_tab) == {**offer(), "from": ada_seat}
    assert await old_tab.receive_nothing(timeout=0.3)
    await new_tab.send_json_to({"type": "state", "muted": True, "camera": True, "sharing": False})
    assert (await next_frame(ada_socket))["from"] == new_welcome["seat"]

    await old_tab.disconnect()  # the moved tab going away is not the peer going away
    assert await ada_socket.receive_nothing(timeout=0.3)
    await close_all(ada_socket, new_tab)


async def test_two_tabs_opening_at_once_leave_exactly_one_seated(
    trio, active, open_call, site_socket
):
    ada_socket, ada_welcome = await open_call(active, trio.ada)
    first, second = [await site_socket(f"/ws/calls/{active.pk}/", trio.bob) for _ in range(2)]

    async def open_tab(tab):
        assert (await tab.connect(timeout=3))[0]
        return await next_frame(tab)

    first_welcome, second_welcome = await asyncio.gather(open_tab(first), open_tab(second))
    frames = {}
    for tab in (first, second):
        frames[tab] = []
        while not await tab.receive_nothing(timeout=0.5):
            output = await tab.receive_output()
            frames[tab].append(json.loads(output["text"]) if "text" in output else output)
    moved = [tab for tab in (first, second) if {"type": "moved"} in frames[tab]]
    assert len(moved) == 1
    kept = second if moved[0] is first else first
    kept_seat = (second_welcome if kept is second else first_welcome)["seat"]

    await ada_socket.send_json_to(offer())
    assert await next_frame(kept) == {**offer(), "from": ada_welcome["seat"]}
    # Ada's page ends up with the kept tab as its peer, whatever order the news came in.
    readies = []
    while not await ada_socket.receive_nothing(timeout=0.3):
        readies.append(await next_frame(ada_socket))
    assert readies[-1] == {"type": "ready", "peer": kept_seat}
    await close_all(ada_socket, first, second)


async def test_the_peer_is_told_when_the_other_page_goes_away_and_comes_back(
    trio, active, seated, open_call
):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    await bob_socket.disconnect()
    assert await next_frame(ada_socket) == {"type": "peer-away"}
    await ada_socket.send_json_to(offer())  # to nobody: dropped, no error
    assert await ada_socket.receive_nothing(timeout=0.3)

    bob_again, welcome = await open_call(active, trio.bob)
    assert await next_frame(ada_socket) == {"type": "ready", "peer": welcome["seat"]}
    assert await next_frame(bob_again) == {"type": "ready", "peer": ada_seat}
    assert await bob_again.receive_nothing(timeout=0.3)  # the offer to nobody stayed dropped
    await close_all(ada_socket, bob_again)


# --- The call's state, from the server ----------------------------------------------------


async def test_hanging_up_closes_both_sockets_with_ended(trio, active, seated):
    ada_socket, _, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    await database_sync_to_async(services.call_hangup)(call_id=active.pk, member=trio.ada)

    assert await closed_with(ada_socket) == 4005
    assert await closed_with(bob_socket) == 4005
    await close_all(ada_socket, bob_socket)


async def test_declining_closes_the_callers_ringing_socket_with_ended(trio, ringing, open_call):
    ada_socket, _ = await open_call(ringing, trio.ada)
    await database_sync_to_async(services.call_decline)(call_id=ringing.pk, member=trio.bob)
    assert await closed_with(ada_socket) == 4005
    await close_all(ada_socket)


async def test_a_connected_frame_sets_connected_at_and_is_not_relayed(trio, active, seated):
    ada_socket, _, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    await bob_socket.send_json_to({"type": "connected"})
    await bob_socket.send_json_to({"type": "connected"})  # again after an ICE restart: fine

    assert await ada_socket.receive_nothing(timeout=0.5)
    assert await bob_socket.receive_nothing(timeout=0.1)
    call = await database_sync_to_async(Call.objects.get)(pk=active.pk)
    assert call.connected_at is not None
    assert call.state == "active"
    await close_all(ada_socket, bob_socket)


async def test_an_open_socket_keeps_its_member_seen(trio, active, open_call, settings):
    settings.CALL_KEEPALIVE = 0.2
    ada_socket, _ = await open_call(active, trio.ada)

    def seen_at():
        return Call.objects.values_list("caller_seen_at", "callee_seen_at").get(pk=active.pk)

    await asyncio.sleep(0.1)
    first, callee_first = await database_sync_to_async(seen_at)()
    await asyncio.sleep(0.5)
    later, callee_later = await database_sync_to_async(seen_at)()
    assert later > first
    assert callee_later == callee_first  # only the member whose page it is
    await ada_socket.disconnect()

    await asyncio.sleep(0.1)
    gone, _ = await database_sync_to_async(seen_at)()
    await asyncio.sleep(0.5)
    assert await database_sync_to_async(seen_at)() == (gone, callee_first)


async def test_a_call_ended_while_its_news_was_lost_still_closes_the_socket(
    trio, active, open_call, settings, monkeypatch
):
    settings.CALL_KEEPALIVE = 0.2
    ada_socket, _ = await open_call(active, trio.ada)
    monkeypatch.setattr(services, "call_announce", lambda call_id: None)  # the layer lost it

    await database_sync_to_async(services.call_hangup)(call_id=active.pk, member=trio.bob)

    assert await closed_with(ada_socket) == 4005
    await close_all(ada_socket)


async def test_logging_out_closes_that_sessions_call_socket(trio, active):
    from parley.asgi import application

    client = Client()
    await database_sync_to_async(client.force_login)(trio.ada)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    socket = WebsocketCommunicator(
        application,
        f"/ws/calls/{active.pk}/",
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"cookie", cookie.encode()),
        ],
    )
    assert (await socket.connect(timeout=3))[0]
    assert (await next_frame(socket))["type"] == "welcome"

    await database_sync_to_async(client.post)(reverse("account_logout"))

    assert await closed_with(socket) == 4001
    await close_all(socket)


async def test_a_member_who_can_no_longer_sign_in_is_closed_out(trio, active, open_call):
    ada_socket, _ = await open_call(active, trio.ada)

    def deactivate():
        trio.ada.is_active = False
        trio.ada.save(update_fields=["is_active"])
        account_services.member_credentials_changed(member=trio.ada)

    await database_sync_to_async(deactivate)()

    assert await closed_with(ada_socket) == 4001
    await close_all(ada_socket)


async def test_what_the_member_socket_is_sent_is_no_business_of_the_call_socket(
    trio, active, seated
):
    ada_socket, ada_seat, bob_socket, _ = await seated(active, trio.ada, trio.bob)

    html = '<div id="call-slot" hx-swap-oob="true">In a call with Ada</div>'
    await database_sync_to_async(member_push)(member_id=trio.bob.pk, html=html)
    await database_sync_to_async(group_send)(member_group(trio.bob.pk), {"type": "member.rooms"})
    await database_sync_to_async(group_send)(member_group(trio.bob.pk), {"type": "member.new"})

    assert await bob_socket.receive_nothing(timeout=0.5)
    await ada_socket.send_json_to(offer())
    assert await next_frame(bob_socket) == {**offer(), "from": ada_seat}
    await close_all(ada_socket, bob_socket)
