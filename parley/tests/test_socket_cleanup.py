"""A socket leaves the hub and presence whatever ends it, a handler that raises included."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import Contact
from accounts.presence import member_presence, online_ids
from parley.consumers import MemberConsumer
from parley.live.hub import get_hub
from parley.live.members import member_group
from rooms.consumers import RoomConsumer
from rooms.hub import get_hub as get_room_hub
from rooms.presence import room_presence

pytestmark = pytest.mark.django_db(transaction=True)


async def ended_by_its_handler(socket) -> Exception:
    """Wait for the socket's application to end, and return what it raised."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever the handler raised
        async with asyncio.timeout(3):
            await socket.wait()
    return raised.value


async def test_a_member_socket_whose_handler_raises_leaves_the_hub_and_goes_offline(
    user, site_socket
):
    socket = await site_socket("/ws/member/", user)
    assert (await socket.connect())[0]
    assert online_ids({user.pk}) == {user.pk}

    # An event the handler cannot cope with: it raises, and Channels never calls disconnect.
    await get_channel_layer().group_send(member_group(user.pk), {"type": "member.fragment"})
    assert isinstance(await ended_by_its_handler(socket), KeyError)

    assert online_ids({user.pk}) == set()
    assert user.pk not in get_hub().member_sockets


async def test_a_room_socket_whose_handler_raises_drops_out_of_the_rooms_presence(
    duo, site_socket, monkeypatch
):
    async def broken_receive(self, text_data=None, bytes_data=None):
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(RoomConsumer, "receive", broken_receive)
    socket = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
    assert (await socket.connect())[0]
    assert await room_presence.members(duo.room.pk) == {duo.ada.pk}

    await socket.send_to(text_data="anything")
    assert isinstance(await ended_by_its_handler(socket), RuntimeError)

    assert await room_presence.members(duo.room.pk) == set()
    assert duo.room.pk not in get_room_hub().rooms


async def test_a_member_socket_that_is_closed_normally_leaves_once(user, site_socket, monkeypatch):
    calls = []
    real_leave = MemberConsumer.leave

    async def counting_leave(self):
        calls.append(self.member_id)
        await real_leave(self)

    monkeypatch.setattr(MemberConsumer, "leave", counting_leave)
    socket = await site_socket("/ws/member/", user)
    assert (await socket.connect())[0]
    await socket.disconnect()
    assert calls == [user.pk]
    assert await database_sync_to_async(online_ids)({user.pk}) == set()


async def test_a_member_socket_cancelled_while_it_leaves_still_leaves_everything(
    user_factory, site_socket, settings, monkeypatch
):
    """The server cancels an application still busy after its client went (daphne after
    `application_close_timeout`; a communicator after its `disconnect` timeout): what the
    leaving had not done yet is done all the same."""
    settings.SOCKETS_PER_MEMBER = 1
    ada = await database_sync_to_async(user_factory)(username="ada")
    bob = await database_sync_to_async(user_factory)(username="bob")
    await database_sync_to_async(Contact.objects.create)(member=ada, other=bob)
    await database_sync_to_async(Contact.objects.create)(member=bob, other=ada)
    watching = await site_socket("/ws/member/", bob)
    assert (await watching.connect())[0]
    await watching.receive_from()  # the contacts' presence as it is now
    leaving = await site_socket("/ws/member/", ada)
    assert (await leaving.connect())[0]
    await watching.receive_from()  # Ada is online
    # Ada's leaving is held up (as behind many others on the database thread) until the
    # server has cancelled her socket's application, as daphne does with one still busy.
    real_depart, departing, cancelled = member_presence.depart, asyncio.Event(), asyncio.Event()

    async def depart_once_cancelled(key, member_id):
        departing.set()
        await cancelled.wait()
        return await real_depart(key, member_id)

    monkeypatch.setattr(member_presence, "depart", depart_once_cancelled)
    await leaving.send_input({"type": "websocket.disconnect", "code": 1000})
    await departing.wait()
    leaving.future.cancel()
    cancelled.set()
    await leaving.wait(timeout=5)

    frame = await watching.receive_from(timeout=5)
    assert f"presence-of-{ada.pk}" in frame
    assert "Last seen just now" in frame
    assert await database_sync_to_async(online_ids)({ada.pk}) == set()
    assert ada.pk not in get_hub().member_sockets
    # Her slot under the cap of one socket was given back: a new tab of hers opens.
    again = await site_socket("/ws/member/", ada)
    assert (await again.connect())[0]
    assert "Too many open tabs" not in await again.receive_from()
    for socket in (again, watching):
        await socket.disconnect()
