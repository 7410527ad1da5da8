"""Member presence: online while any tab is open, in any process; told to contacts only."""

import asyncio
import re
import time
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from accounts.models import Contact
from accounts.presence import member_presence, online_ids, presence_set_in_call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trio(user_factory):
    """Ada and Bob are contacts; Carol knows neither."""
    ada = user_factory(username="ada", display_name="Ada")
    bob = user_factory(username="bob", display_name="Bob")
    carol = user_factory(username="carol", display_name="Carol")
    Contact.objects.create(member=ada, other=bob)
    Contact.objects.create(member=bob, other=ada)
    return SimpleNamespace(ada=ada, bob=bob, carol=carol)


@pytest.fixture(autouse=True)
def empty_presence_store():
    """With Redis, entries written by an earlier test (under ids reused since) are cleared."""
    if settings.REDIS_URL:
        client = member_presence._sync_redis()
        for key in client.scan_iter(f"{member_presence.index}*"):
            client.delete(key)


@pytest.fixture
def member_socket(site_socket):
    """An open member socket; the frame it sends as it opens (the contacts' presence as it is
    then) is `socket.caught_up`, read here so that tests see the pushes after it."""

    async def open_(member):
        socket = await site_socket("/ws/member/", member)
        assert (await socket.connect())[0]
        has_contacts = await database_sync_to_async(Contact.objects.filter(member=member).exists)()
        socket.caught_up = await socket.receive_from() if has_contacts else ""
        return socket

    return open_


async def presence_of(socket, member, wait: float = 4) -> str:
    """The status text of the next presence fragment about `member` this socket receives."""
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.receive_from(timeout=wait)
            if f"presence-of-{member.pk}" in frame:
                assert f'hx-swap-oob="outerHTML:.presence-of-{member.pk}"' in frame
                return re.search(r'<span class="presence__text">(.*?)</span>', frame).group(1)


async def test_a_contact_sees_a_member_come_online_when_their_first_tab_opens(trio, member_socket):
    bob = await member_socket(trio.bob)
    ada = await member_socket(trio.ada)

    assert await presence_of(bob, trio.ada) == "Online"
    assert online_ids({trio.ada.pk, trio.bob.pk, trio.carol.pk}) == {trio.ada.pk, trio.bob.pk}
    for socket in (ada, bob):
        await socket.disconnect()


async def test_a_member_with_two_tabs_stays_online_until_both_close_then_is_last_seen_now(
    trio, member_socket
):
    bob = await member_socket(trio.bob)
    tabs = [await member_socket(trio.ada) for _ in range(2)]
    assert await presence_of(bob, trio.ada) == "Online"

    await tabs[0].disconnect()
    assert await bob.receive_nothing(timeout=0.5)
    assert online_ids({trio.ada.pk}) == {trio.ada.pk}

    await tabs[1].disconnect()
    assert await presence_of(bob, trio.ada) == "Last seen just now"
    assert online_ids({trio.ada.pk}) == set()
    await database_sync_to_async(trio.ada.refresh_from_db)()
    assert trio.ada.last_seen_at is not None
    await bob.disconnect()


async def test_a_member_who_is_not_a_contact_never_receives_their_presence(trio, member_socket):
    carol = await member_socket(trio.carol)
    ada = await member_socket(trio.ada)
    await ada.disconnect()
    await database_sync_to_async(presence_set_in_call)(member_id=trio.ada.pk, in_call=False)

    assert await carol.receive_nothing(timeout=0.5)
    await carol.disconnect()


async def test_contacts_see_in_a_call_when_the_member_is_set_in_a_call(trio, member_socket):
    bob = await member_socket(trio.bob)
    ada = await member_socket(trio.ada)
    assert await presence_of(bob, trio.ada) == "Online"

    await database_sync_to_async(presence_set_in_call)(member_id=trio.ada.pk, in_call=True)
    assert await presence_of(bob, trio.ada) == "In a call"
    await database_sync_to_async(trio.ada.refresh_from_db)()
    assert trio.ada.in_call

    await database_sync_to_async(presence_set_in_call)(member_id=trio.ada.pk, in_call=False)
    assert await presence_of(bob, trio.ada) == "Online"
    for socket in (ada, bob):
        await socket.disconnect()


async def test_presence_changes_are_saved_even_when_the_channel_layer_is_down(
    trio, member_socket, monkeypatch
):
    async def down(*args, **kwargs):
        raise ConnectionError("the channel layer is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", down)
    await database_sync_to_async(presence_set_in_call)(member_id=trio.ada.pk, in_call=True)

    await database_sync_to_async(trio.ada.refresh_from_db)()
    assert trio.ada.in_call


@pytest.mark.redis
async def test_the_sweep_turns_a_dead_processes_member_offline_exactly_once(trio, member_socket):
    bob = await member_socket(trio.bob)
    # Ada's only entry belongs to a process that was killed: it was last refreshed a TTL ago.
    client = member_presence._sync_redis()
    key = str(trio.ada.pk)
    client.zadd(member_presence.zset(key), {f"{trio.ada.pk}:killed-process": time.time() - 1})
    client.sadd(member_presence.index, key)

    await asyncio.gather(member_presence.sweep(), member_presence.sweep())
    await member_presence.sweep()

    assert await presence_of(bob, trio.ada) == "Last seen just now"
    assert await bob.receive_nothing(timeout=0.5)
    await database_sync_to_async(trio.ada.refresh_from_db)()
    assert trio.ada.last_seen_at is not None
    assert client.zcard(member_presence.zset(key)) == 0
    await bob.disconnect()


@pytest.mark.redis
async def test_the_refresher_survives_a_redis_error_and_keeps_the_member_online(
    trio, member_socket, settings, monkeypatch
):
    settings.PRESENCE_REFRESH = 0.1
    settings.PRESENCE_SWEEP = 0.05
    ada = await member_socket(trio.ada)
    backend = member_presence._backend()
    real_pipeline = backend.redis.pipeline
    failures = []

    def failing_at_first(*args, **kwargs):
        # The first few rounds (sweeps and a refresh) meet a Redis that is away for a moment.
        if len(failures) < 3:
            failures.append(1)
            raise ConnectionError("Redis went away for a moment")
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(backend.redis, "pipeline", failing_at_first)
    client = member_presence._sync_redis()
    zset, entry = member_presence.zset(str(trio.ada.pk)), backend._entry(trio.ada.pk)
    before = client.zscore(zset, entry)
    await asyncio.sleep(0.8)

    assert failures
    assert not backend.keeper.done()
    assert client.zscore(zset, entry) > before
    await ada.disconnect()


async def frames_until_quiet(socket, quiet: float = 0.5) -> list[str]:
    frames = []
    while not await socket.receive_nothing(timeout=quiet):
        frames.append(await socket.receive_from())
    return frames


async def test_a_socket_opening_is_told_each_contacts_presence_as_it_is_now(
    trio, member_socket, user_factory
):
    dora = await database_sync_to_async(user_factory)(username="dora", display_name="Dora")
    await database_sync_to_async(Contact.objects.create)(member=trio.ada, other=dora)
    await database_sync_to_async(Contact.objects.create)(member=dora, other=trio.ada)
    # Bob comes online after Ada's page was rendered and before its socket opened: the push
    # about him reached no socket of hers.
    bob = await member_socket(trio.bob)
    carol = await member_socket(trio.carol)

    ada = await member_socket(trio.ada)
    first = ada.caught_up

    assert f"presence-of-{trio.bob.pk}" in first
    assert f"presence-of-{dora.pk}" in first
    assert f"presence-of-{trio.carol.pk}" not in first
    assert await presence_of_in(first, trio.bob) == "Online"
    assert await presence_of_in(first, dora) == "Offline"
    for socket in (ada, bob, carol):
        await socket.disconnect()


async def presence_of_in(frame: str, member) -> str:
    found = re.search(
        rf'presence-of-{member.pk}" hx-swap-oob="outerHTML:\.presence-of-{member.pk}">'
        r'<span class="presence__dot" aria-hidden="true"></span>'
        r'<span class="presence__text">(.*?)</span>',
        frame,
    )
    return found.group(1)


async def test_a_change_pushed_while_a_socket_is_connecting_arrives_after_it_is_accepted(
    trio, member_socket, monkeypatch
):
    from parley import consumers

    real_opened = consumers.presence_socket_opened
    pushed = []

    async def opened_then_bob_goes_in_a_call(*, member_id):
        await real_opened(member_id=member_id)
        if member_id == trio.ada.pk and not pushed:
            pushed.append(1)
            # Ada's socket is in the hub, not yet accepted: the push reaches it now.
            await database_sync_to_async(presence_set_in_call)(member_id=trio.bob.pk, in_call=True)
            await asyncio.sleep(0.3)

    monkeypatch.setattr(consumers, "presence_socket_opened", opened_then_bob_goes_in_a_call)
    bob = await member_socket(trio.bob)
    ada = await member_socket(trio.ada)  # fails if a frame came before the accept

    frames = await frames_until_quiet(ada)
    about_bob = [f for f in frames if f"presence-of-{trio.bob.pk}" in f]
    assert about_bob
    assert "In a call" in about_bob[-1]
    for socket in (ada, bob):
        await socket.disconnect()


async def test_many_members_whose_sockets_close_at_once_all_go_offline_for_their_contact(
    member_socket, user_factory
):
    watcher = await database_sync_to_async(user_factory)(username="watcher")
    members = []
    for n in range(150):
        member = await database_sync_to_async(user_factory)(username=f"crowd{n}")
        await database_sync_to_async(Contact.objects.create)(member=member, other=watcher)
        await database_sync_to_async(Contact.objects.create)(member=watcher, other=member)
        members.append(member)
    sockets = [await member_socket(member) for member in members]
    watching = await member_socket(watcher)
    await frames_until_quiet(watching)

    # Each communicator cancels its socket's application 1 s after the close, as daphne does
    # after its application_close_timeout; most of the 150 leavings are still waiting for the
    # database thread then, and must finish all the same.
    await asyncio.gather(*(socket.disconnect() for socket in sockets))

    told = {}
    async with asyncio.timeout(60):  # 150 closes over Redis: seconds on a loaded machine
        while len(told) < len(members):
            frame = await watching.receive_from(timeout=30)
            for pk, text in re.findall(
                r'presence-of-(\d+)"[^>]*><span class="presence__dot" aria-hidden="true">'
                r'</span><span class="presence__text">(.*?)</span>',
                frame,
            ):
                told[int(pk)] = text
    assert set(told.values()) == {"Last seen just now"}
    assert online_ids({m.pk for m in members}) == set()
    await watching.disconnect()
