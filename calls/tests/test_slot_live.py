"""The call slot, pushed over the member socket to every open tab of both members on each change;
and the sweep that ends overdue calls with no request made."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.utils import timezone

from accounts import services as contacts
from calls import services, sweep
from calls.models import Call
from calls.sweep import ensure_sweeping, release_sweeping

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = 'id="call-slot"'


async def run(function, **kwargs):
    return await database_sync_to_async(function)(**kwargs)


def _befriend(a, b):
    contacts.contact_request_send(sender=a, username=b.username)
    contacts.contact_request_send(sender=b, username=a.username)


async def befriend(a, b):
    await run(_befriend, a=a, b=b)


@pytest.fixture
def member(user_factory):
    async def make(username, display_name=None):
        return await run(user_factory, username=username, display_name=display_name or username)

    return make


@pytest.fixture
def pair(member):
    async def make():
        ada, bob = await member("ada", "Ada"), await member("bob", "Bob")
        await befriend(ada, bob)
        return ada, bob

    return make


@pytest.fixture
def tab(site_socket):
    """An open page of `member` (who has a contact, so a conversation): its member socket,
    connected, with the opening frames read."""

    async def open_(member):
        socket = await site_socket("/ws/member/", member)
        assert (await socket.connect())[0]
        # The opening frame (presence, unread badges, the slot) first, however slow the
        # machine: read later, it would pass for a push.
        assert 'id="unread-' in await socket.receive_from(timeout=4)
        await settle(socket)
        return socket

    return open_


async def settle(socket, quiet: float = 0.3) -> list[str]:
    """Read every frame until the socket has been quiet for a moment."""
    frames = []
    while not await socket.receive_nothing(timeout=quiet):
        frames.append(await socket.receive_from())
    return frames


async def slot_frame(socket, text: str = "", wait: float = 4) -> str:
    """The next pushed call slot (containing `text`)."""
    while True:
        frame = await socket.receive_from(timeout=wait)
        if SLOT in frame and text in frame:
            return frame


async def close(*sockets) -> None:
    for socket in sockets:
        await socket.disconnect()


async def ring(caller, callee, video=True) -> Call:
    return await run(services.call_start, caller=caller, callee=callee, video=video)


# --- Ringing ---------------------------------------------------------------------------------


async def test_an_incoming_call_rings_in_every_tab_of_the_callee(pair, tab):
    ada, bob = await pair()
    bob_tabs = [await tab(bob), await tab(bob)]
    call = await ring(ada, bob)
    for bob_tab in bob_tabs:
        frame = await slot_frame(bob_tab)
        assert 'data-call-state="incoming"' in frame
        assert 'hx-swap-oob="true"' in frame
        assert "<strong>Ada</strong> is calling you" in frame
        assert f'hx-post="/calls/{call.pk}/accept/"' in frame
        assert "Accept audio only" in frame
        assert f'hx-post="/calls/{call.pk}/decline/"' in frame
        assert 'class="call-slot__ring"' in frame
        assert 'data-caller-name="Ada"' in frame
    await close(*bob_tabs)


async def test_the_callers_tabs_show_it_ringing_with_cancel(pair, tab):
    ada, bob = await pair()
    ada_tabs = [await tab(ada), await tab(ada)]
    call = await ring(ada, bob, video=False)
    for ada_tab in ada_tabs:
        frame = await slot_frame(ada_tab)
        assert 'data-call-state="outgoing"' in frame
        assert "Calling <strong>Bob</strong>…" in frame
        assert "Audio call" in frame
        assert f'hx-post="/calls/{call.pk}/cancel/"' in frame
        assert "is calling you" not in frame
    await close(*ada_tabs)


async def test_nobody_else_hears_the_call(pair, member, tab):
    ada, bob = await pair()
    carol = await member("carol")
    await befriend(carol, ada)
    carols = await tab(carol)
    await ring(ada, bob)
    await asyncio.sleep(0.3)
    assert all(SLOT not in frame for frame in await settle(carols))
    await close(carols)


async def test_answering_in_one_tab_stops_the_ringing_in_every_other(pair, tab):
    ada, bob = await pair()
    ada_tab, bob_tabs = await tab(ada), [await tab(bob), await tab(bob)]
    call = await ring(ada, bob)
    for bob_tab in bob_tabs:
        await slot_frame(bob_tab, "incoming")
    await slot_frame(ada_tab, "outgoing")
    await run(services.call_accept, call_id=call.pk, member=bob)
    for bob_tab in bob_tabs:
        frame = await slot_frame(bob_tab)
        assert 'data-call-state="active"' in frame
        assert "Answered in another tab" in frame
        assert "call-slot__ring" not in frame
        assert f'hx-post="/calls/{call.pk}/hangup/"' in frame
    frame = await slot_frame(ada_tab)
    assert "In a call with <strong>Bob</strong>" in frame
    assert "Answered in another tab" not in frame
    await close(ada_tab, *bob_tabs)


@pytest.mark.parametrize(
    ("end", "caller_reads", "callee_reads"),
    [
        ("decline", "Bob declined the call.", "You declined the call."),
        ("cancel", "You cancelled the call.", "Missed call from Ada."),
    ],
)
async def test_a_call_ended_while_ringing_says_how_in_every_tab(
    pair, tab, end, caller_reads, callee_reads
):
    ada, bob = await pair()
    ada_tab, bob_tabs = await tab(ada), [await tab(bob), await tab(bob)]
    call = await ring(ada, bob)
    if end == "decline":
        await run(services.call_decline, call_id=call.pk, member=bob)
    else:
        await run(services.call_cancel, call_id=call.pk, member=ada)
    frame = await slot_frame(ada_tab, 'data-call-state="ended"')
    assert caller_reads in frame
    for bob_tab in bob_tabs:
        frame = await slot_frame(bob_tab, 'data-call-state="ended"')
        assert callee_reads in frame
        assert "call-slot__ring" not in frame
    await close(ada_tab, *bob_tabs)


async def test_hanging_up_tells_both_with_the_duration(pair, tab):
    ada, bob = await pair()
    call = await ring(ada, bob)
    await run(services.call_accept, call_id=call.pk, member=bob)
    ada_tab, bob_tab = await tab(ada), await tab(bob)
    await run(services.call_hangup, call_id=call.pk, member=bob)
    assert "Call with Bob ended · 0:0" in await slot_frame(ada_tab, "ended")
    assert "Call with Ada ended · 0:0" in await slot_frame(bob_tab, "ended")
    await close(ada_tab, bob_tab)


async def test_the_call_row_reaches_the_conversations_unread_badge_of_the_callee(pair, tab):
    ada, bob = await pair()
    bob_tab = await tab(bob)
    call = await ring(ada, bob)
    await run(services.call_cancel, call_id=call.pk, member=ada)
    room_id = call.room_id
    frame = await next_with(bob_tab, f'id="unread-{room_id}"')
    assert "</span>1<span" in frame
    await close(bob_tab)


async def next_with(socket, text: str, wait: float = 4) -> str:
    while True:
        frame = await socket.receive_from(timeout=wait)
        if text in frame:
            return frame


# --- Busy and blocked ------------------------------------------------------------------------


async def test_a_busy_callees_tabs_keep_their_call_and_the_caller_reads_busy(pair, member, tab):
    ada, bob = await pair()
    carol = await member("carol", "Carol")
    await befriend(bob, carol)
    theirs = await ring(carol, bob)
    await run(services.call_accept, call_id=theirs.pk, member=bob)
    ada_tab, bob_tab = await tab(ada), await tab(bob)
    call = await ring(ada, bob)
    assert call.outcome == Call.Outcome.BUSY
    assert "Bob is in another call. Try again later." in await slot_frame(ada_tab, "ended")
    await asyncio.sleep(0.3)
    assert all(SLOT not in frame for frame in await settle(bob_tab))
    await close(ada_tab, bob_tab)


async def test_a_call_to_someone_who_blocked_you_reaches_none_of_their_tabs(pair, tab, settings):
    settings.CALL_RING_TIMEOUT = 0.5
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    await run(contacts.member_block, blocker=bob, username="ada")
    ada_tab, bob_tabs = await tab(ada), [await tab(bob), await tab(bob)]
    await ring(ada, bob)
    assert 'data-call-state="outgoing"' in await slot_frame(ada_tab)
    # Rings out like any unanswered call, to the caller; nothing at all to the callee.
    assert "No answer from Bob." in await slot_frame(ada_tab, "ended")
    for bob_tab in bob_tabs:
        assert await settle(bob_tab) == []
    await close(ada_tab, *bob_tabs)


# --- The sweep: no call rings or lasts forever, with no request made --------------------------


async def test_the_sweep_ends_a_call_nobody_answers_as_missed_in_every_tab(pair, tab, settings):
    settings.CALL_RING_TIMEOUT = 0.5
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    ada_tab, bob_tab = await tab(ada), await tab(bob)
    call = await ring(ada, bob)
    await slot_frame(bob_tab, "incoming")
    assert "No answer from Bob." in await slot_frame(ada_tab, "ended")
    assert "Missed call from Ada." in await slot_frame(bob_tab, "ended")
    call = await run(Call.objects.get, pk=call.pk)
    assert call.outcome == Call.Outcome.MISSED
    await close(ada_tab, bob_tab)


async def test_the_sweep_ends_an_answered_call_that_never_connected(pair, tab, settings):
    settings.CALL_CONNECT_TIMEOUT = 0.5
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    ada_tab = await tab(ada)
    call = await ring(ada, bob)
    await run(services.call_accept, call_id=call.pk, member=bob)
    await slot_frame(ada_tab, "active")
    assert "could not connect" in await slot_frame(ada_tab, "ended")
    assert (await run(Call.objects.get, pk=call.pk)).outcome == Call.Outcome.FAILED
    await close(ada_tab)


async def test_the_sweep_ends_a_call_whose_page_is_gone(pair, tab, settings):
    settings.CALL_SEAT_TIMEOUT = 0.5
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    ada_tab = await tab(ada)
    call = await ring(ada, bob)
    await run(services.call_accept, call_id=call.pk, member=bob)
    await run(services.call_connected, call_id=call.pk, member_id=ada.pk)
    await slot_frame(ada_tab, "active")
    assert "Call with Bob ended" in await slot_frame(ada_tab, "ended")
    assert (await run(Call.objects.get, pk=call.pk)).outcome == Call.Outcome.COMPLETED
    await close(ada_tab)


async def test_a_call_seen_by_both_pages_outlives_the_seat_timeout(pair, tab, settings):
    settings.CALL_SEAT_TIMEOUT = 1.5
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    ada_tab = await tab(ada)
    call = await ring(ada, bob)
    await run(services.call_accept, call_id=call.pk, member=bob)
    await run(services.call_connected, call_id=call.pk, member_id=ada.pk)
    for _ in range(15):  # 3 s: twice the timeout, seen every 0.2 s
        await asyncio.sleep(0.2)
        for member_id in (ada.pk, bob.pk):
            await run(services.call_seen, call_id=call.pk, member_id=member_id)
    assert (await run(Call.objects.get, pk=call.pk)).state == Call.State.ACTIVE
    await close(ada_tab)


async def test_the_sweep_stops_with_the_last_socket_and_page_loads_still_end_calls(
    pair, tab, settings
):
    settings.CALL_SWEEP = 0.1
    ada, bob = await pair()
    await close(await tab(ada))
    call = await ring(ada, bob)
    await run(
        Call.objects.filter(pk=call.pk).update,
        created_at=timezone.now() - timedelta(seconds=settings.CALL_RING_TIMEOUT + 1),
    )
    await asyncio.sleep(0.4)
    assert (await run(Call.objects.get, pk=call.pk)).state == Call.State.RINGING
    assert await run(services.call_live_for, member=bob) is None  # expire on read
    assert (await run(Call.objects.get, pk=call.pk)).outcome == Call.Outcome.MISSED


def rename_table(old: str, new: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_sweep_that_keeps_failing_is_logged_once_and_again_when_it_works(
    pair, tab, settings, caplog
):
    # While the database is away every sweep fails: a traceback every CALL_SWEEP seconds, in
    # every process, would bury everything else in the log. Here the calls' table goes away for
    # a while, for real, as far as the sweep can tell.
    settings.CALL_SWEEP = 0.05
    ada, _ = await pair()
    ada_tab = await tab(ada)
    table = Call._meta.db_table
    await run(rename_table, old=table, new=f"{table}_away")
    try:
        await asyncio.sleep(0.5)  # some ten sweeps
    finally:
        await run(rename_table, old=f"{table}_away", new=table)
    await asyncio.sleep(0.3)
    failed = [r for r in caplog.records if r.getMessage().startswith("Ending overdue calls failed")]
    back = [r for r in caplog.records if "works again" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None  # with its traceback
    assert len(back) == 1
    await close(ada_tab)


# --- Catching up when a socket opens ---------------------------------------------------------


async def test_a_tab_opening_while_a_call_rings_gets_it_in_its_opening_frame(pair, site_socket):
    ada, bob = await pair()
    await ring(ada, bob)
    socket = await site_socket("/ws/member/", bob)
    assert (await socket.connect())[0]
    opening = await socket.receive_from(timeout=4)
    assert SLOT in opening
    assert 'data-call-state="incoming"' in opening
    await close(socket)


async def test_a_tab_opening_after_the_call_rang_out_gets_an_empty_slot(
    pair, site_socket, settings
):
    ada, bob = await pair()
    call = await ring(ada, bob)
    await run(
        Call.objects.filter(pk=call.pk).update,
        created_at=timezone.now() - timedelta(seconds=settings.CALL_RING_TIMEOUT + 1),
    )
    socket = await site_socket("/ws/member/", bob)
    assert (await socket.connect())[0]
    opening = await socket.receive_from(timeout=4)
    assert 'data-call-state="none"' in opening
    assert (await run(Call.objects.get, pk=call.pk)).outcome == Call.Outcome.MISSED
    await close(socket)


async def test_a_member_who_never_had_a_call_gets_no_slot_when_a_tab_opens(pair, site_socket):
    ada, _ = await pair()
    socket = await site_socket("/ws/member/", ada)
    assert (await socket.connect())[0]
    assert all(SLOT not in frame for frame in await settle(socket))
    await close(socket)


# --- Presence and the call's group -----------------------------------------------------------


async def test_contacts_see_both_in_a_call_while_it_is_active_and_back_after(pair, member, tab):
    ada, bob = await pair()
    carol = await member("carol", "Carol")
    await befriend(carol, ada)
    await befriend(carol, bob)
    carols, ada_tab, bob_tab = await tab(carol), await tab(ada), await tab(bob)
    await settle(carols)
    call = await ring(ada, bob)
    await run(services.call_accept, call_id=call.pk, member=bob)
    for someone in (ada, bob):
        frame = await next_with(carols, f"presence-of-{someone.pk}")
        assert "In a call" in frame
    await settle(carols)
    await run(services.call_hangup, call_id=call.pk, member=ada)
    for someone in (ada, bob):
        frame = await next_with(carols, f"presence-of-{someone.pk}")
        assert "Online" in frame
        assert "In a call" not in frame
    await close(carols, ada_tab, bob_tab)


async def test_the_calls_group_hears_each_change_of_state(pair):
    ada, bob = await pair()
    call = await ring(ada, bob)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(call.group, channel)
    try:
        await run(services.call_accept, call_id=call.pk, member=bob)
        event = await asyncio.wait_for(layer.receive(channel), 4)
        assert event == {"type": "call.state", "state": "active", "outcome": ""}
        await run(services.call_hangup, call_id=call.pk, member=ada)
        event = await asyncio.wait_for(layer.receive(channel), 4)
        assert event == {"type": "call.state", "state": "ended", "outcome": "completed"}
    finally:
        await layer.group_discard(call.group, channel)


# --- Escaping --------------------------------------------------------------------------------


async def test_names_full_of_html_are_text_in_the_pushed_slot(member, tab):
    hostile = '<img src=x onerror="alert(1)">'
    mallory, bob = await member("mallory", hostile), await member("bob", "Bob")
    await befriend(mallory, bob)
    bob_tab = await tab(bob)
    mallory_tab = await tab(mallory)
    call = await ring(mallory, bob)
    await run(services.call_cancel, call_id=call.pk, member=mallory)
    frames = [
        await slot_frame(bob_tab, "incoming"),
        await slot_frame(bob_tab, "ended"),
        await slot_frame(mallory_tab, "ended"),
    ]
    for frame in frames:
        assert hostile not in frame
    assert "<strong>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</strong> is calling" in frames[0]
    assert "Missed call from &lt;img src=x onerror=&quot;alert(1)&quot;&gt;." in frames[1]
    await close(bob_tab, mallory_tab)


# --- The sweep itself ------------------------------------------------------------------------


async def test_the_sweep_runs_once_per_process_however_many_sockets_join(settings):
    settings.CALL_SWEEP = 0.05
    ensure_sweeping()
    task = sweep._sweep().task
    ensure_sweeping()
    assert sweep._sweep().task is task
    release_sweeping()
    assert not task.done()  # one socket still open
    release_sweeping()
    await asyncio.sleep(0)
    assert task.cancelled()


async def test_the_sweep_goes_on_after_a_failure(settings, monkeypatch, caplog):
    settings.CALL_SWEEP = 0.05
    runs, ran_again = [], threading.Event()

    def expire():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("the database went away for a moment")
        ran_again.set()
        return 0

    monkeypatch.setattr(sweep, "calls_expire", expire)
    ensure_sweeping()
    try:
        assert await asyncio.to_thread(ran_again.wait, 4)
    finally:
        release_sweeping()
    assert "Ending overdue calls failed" in caplog.text
