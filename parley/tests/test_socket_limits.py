"""The caps on open sockets, per member and per address, through the whole ASGI stack."""

import json

import pytest
from channels.db import database_sync_to_async

from parley.live.caps import address_of, socket_caps
from parley.live.members import member_push
from parley.live.sockets import CROWDED

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def open_socket(site_socket):
    """Opens a socket as `member` from `address`; returns it with the frames it got at once."""
    opened = []

    async def make(path, member, address="198.51.100.7"):
        communicator = await site_socket(path, member)
        communicator.scope["client"] = [address, 40000 + len(opened)]
        connected, _ = await communicator.connect()
        assert connected
        opened.append(communicator)
        return communicator

    return make


async def crowded(communicator) -> str | None:
    """The text the socket was told before it was closed as crowded, or None if it is open."""
    first = await communicator.receive_output(timeout=2)
    if first["type"] == "websocket.close":
        return "" if first.get("code") == CROWDED else None
    if first["type"] != "websocket.send":
        return None
    closing = await communicator.receive_output(timeout=2)
    if closing["type"] == "websocket.close" and closing.get("code") == CROWDED:
        return first.get("text", "")
    return None


async def test_a_member_over_the_cap_is_told_too_many_tabs_and_closed_to_try_later(
    settings, open_socket, user
):
    settings.SOCKETS_PER_MEMBER = 2
    first = await open_socket("/ws/member/", user)
    second = await open_socket("/ws/member/", user)
    third = await open_socket("/ws/member/", user)
    told = await crowded(third)
    assert "Too many open tabs" in told
    assert "at most 2" in told
    # The first two are untouched: they still get what is pushed to the member.
    await database_sync_to_async(member_push)(member_id=user.pk, html="<p id='x'>hi</p>")
    for communicator in (first, second):
        assert "hi" in await communicator.receive_from(timeout=2)
    await first.disconnect()
    await second.disconnect()


async def test_a_closed_socket_gives_its_slot_back(settings, open_socket, user):
    settings.SOCKETS_PER_MEMBER = 1
    first = await open_socket("/ws/member/", user)
    await first.disconnect()
    again = await open_socket("/ws/member/", user)
    assert await again.receive_nothing(timeout=0.3)  # not told anything, not closed
    await again.disconnect()


async def test_room_and_member_sockets_count_together(settings, open_socket, duo):
    settings.SOCKETS_PER_MEMBER = 2
    member = await open_socket("/ws/member/", duo.ada)
    room = await open_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    refused = await open_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    assert "Too many open tabs" in await crowded(refused)
    # Bob is somebody else: his sockets are not Ada's.
    bobs = await open_socket(f"/ws/rooms/{duo.room.pk}/", duo.bob)
    await bobs.send_to(text_data=json.dumps({"action": "resume", "after": 0}))
    assert "Too many" not in await bobs.receive_from(timeout=2)
    for communicator in (member, room, bobs):
        await communicator.disconnect()


async def test_one_address_is_capped_across_members(settings, open_socket, user_factory):
    settings.SOCKETS_PER_ADDRESS = 2
    make = database_sync_to_async(user_factory)
    ada, bob, cy = [await make(username=name) for name in ("ada", "bob", "cy")]
    held = [
        await open_socket("/ws/member/", ada, "203.0.113.9"),
        await open_socket("/ws/member/", bob, "203.0.113.9"),
    ]
    refused = await open_socket("/ws/member/", cy, "203.0.113.9")
    told = await crowded(refused)
    assert "from your network address" in told
    elsewhere = await open_socket("/ws/member/", cy, "203.0.113.10")
    assert await elsewhere.receive_nothing(timeout=0.3)
    for communicator in (*held, elsewhere):
        await communicator.disconnect()


async def test_the_call_socket_is_told_in_json_its_script_reads(settings, open_socket, duo):
    from accounts import services as account_services
    from calls import services as calls_services

    def ring():
        account_services.contact_request_send(sender=duo.ada, username="bob")
        account_services.contact_request_send(sender=duo.bob, username="ada")
        return calls_services.call_start(caller=duo.ada, callee=duo.bob, video=False)

    call = await database_sync_to_async(ring)()
    settings.SOCKETS_PER_MEMBER = 1
    member = await open_socket("/ws/member/", duo.ada)
    refused = await open_socket(f"/ws/calls/{call.pk}/", duo.ada)
    told = json.loads(await crowded(refused))
    assert told["type"] == "error"
    assert "Too many open tabs" in told["message"]
    await member.disconnect()


def test_addresses_count_ipv6_by_their_64_and_ipv4_as_is():
    def scope(host):
        return {"client": [host, 1234]}

    assert address_of(scope("2001:db8:1:2:aaaa::1")) == address_of(scope("2001:db8:1:2:bbbb::2"))
    assert address_of(scope("2001:db8:1:2::1")) != address_of(scope("2001:db8:1:3::1"))
    assert address_of(scope("192.0.2.1")) == "192.0.2.1"
    assert address_of(scope("::ffff:192.0.2.1")) == "192.0.2.1"
    assert address_of({"client": None}) is None


async def test_no_slots_stay_taken_after_the_sockets_close(settings, open_socket, user):
    settings.SOCKETS_PER_MEMBER = 3
    for _ in range(3):
        communicator = await open_socket("/ws/member/", user)
        await communicator.disconnect()
    if not settings.REDIS_URL:
        assert user.pk not in socket_caps._local.members


# --- Across processes, on Redis ------------------------------------------------------------


@pytest.fixture
def redis_caps(settings):
    """Two count stores as two processes would have them, on Redis, emptied before and after."""
    import redis

    from parley.live.caps import SocketCaps

    client = redis.Redis.from_url(settings.REDIS_URL)

    def empty():
        for key in client.scan_iter(f"{settings.REDIS_PREFIX}:sockets:*"):
            client.delete(key)

    empty()
    yield SocketCaps(), SocketCaps()
    empty()


@pytest.mark.redis
async def test_a_cap_holds_across_processes(settings, redis_caps):
    settings.SOCKETS_PER_MEMBER, settings.SOCKETS_PER_ADDRESS = 2, 0
    one, two = redis_caps
    taken = [
        await one.take(member_id=7, address="192.0.2.1"),
        await two.take(member_id=7, address=None),
    ]
    assert all(slot is not None for slot, _ in taken)
    assert await one.take(member_id=7, address="192.0.2.2") == (None, "member")
    assert (await two.take(member_id=8, address="192.0.2.1"))[0] is not None
    await one.give_back(taken[0][0])
    assert (await two.take(member_id=7, address=None))[0] is not None


@pytest.mark.redis
async def test_the_slots_of_a_process_that_died_free_themselves(settings, redis_caps):
    import asyncio

    settings.SOCKETS_PER_MEMBER, settings.PRESENCE_TTL, settings.PRESENCE_REFRESH = 1, 1, 3600
    dead, alive = redis_caps
    slot, _ = await dead.take(member_id=9, address="192.0.2.3")
    assert slot is not None
    assert (await alive.take(member_id=9, address=None))[0] is None
    # The dead process never refreshes nor gives back: its entry expires after PRESENCE_TTL.
    await asyncio.sleep(1.5)
    assert (await alive.take(member_id=9, address=None))[0] is not None


@pytest.mark.redis
async def test_refreshing_keeps_a_live_process_s_slots(settings, redis_caps):
    import asyncio

    settings.SOCKETS_PER_MEMBER, settings.PRESENCE_TTL, settings.PRESENCE_REFRESH = 1, 2, 3600
    live, other = redis_caps
    assert (await live.take(member_id=10, address=None))[0] is not None
    await asyncio.sleep(1.2)
    await live.refresh()
    await asyncio.sleep(1.2)  # past the first expiry: only the refresh kept the entry
    assert (await other.take(member_id=10, address=None))[0] is None


async def test_frames_a_refused_socket_sent_before_it_heard_are_ignored(settings, open_socket, duo):
    settings.SOCKETS_PER_MEMBER = 1
    member = await open_socket("/ws/member/", duo.ada)
    refused = await open_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    await refused.send_to(text_data=json.dumps({"action": "resume", "after": 0}))
    assert "Too many open tabs" in await crowded(refused)
    await member.disconnect()
