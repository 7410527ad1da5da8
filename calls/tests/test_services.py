"""Calls through their services: who may call whom, how a call moves on, how it ends, and what
it leaves behind (lines, presence, the row in the direct conversation)."""

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.utils import timezone

from accounts import presence
from accounts import services as contacts
from calls import fragments, services
from calls.models import Call, Line, duration_text
from rooms import selectors as room_selectors
from rooms import services as room_services
from rooms.models import Message, Room
from rooms.services import Refused

pytestmark = pytest.mark.django_db

# SQLite has no row locks and lets one writer in at a time: racing there shows nothing.
needs_row_locks = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="racing needs PostgreSQL's row locks"
)


def befriend(a, b):
    contacts.contact_request_send(sender=a, username=b.username)
    contacts.contact_request_send(sender=b, username=a.username)


@pytest.fixture
def ada(user_factory):
    return user_factory(username="ada", display_name="Ada")


@pytest.fixture
def bob(user_factory):
    return user_factory(username="bob", display_name="Bob")


@pytest.fixture
def carol(user_factory):
    return user_factory(username="carol", display_name="Carol")


@pytest.fixture
def pair(ada, bob):
    befriend(ada, bob)
    return ada, bob


def ring(caller, callee, video=True) -> Call:
    return services.call_start(caller=caller, callee=callee, video=video)


def answered(caller, callee, video=True) -> Call:
    call = ring(caller, callee, video)
    return services.call_accept(call_id=call.pk, member=callee)


def fresh(call: Call) -> Call:
    return Call.objects.get(pk=call.pk)


def age(call: Call, **fields_ago: float) -> None:
    """Move the call's timestamps back by so many seconds (instead of waiting)."""
    now = timezone.now()
    Call.objects.filter(pk=call.pk).update(
        **{field: now - timedelta(seconds=ago) for field, ago in fields_ago.items()}
    )


def rows(a, b) -> list[str]:
    room = room_selectors.direct_room(a, b)
    return list(room.messages.filter(kind=Message.Kind.CALL).values_list("body", flat=True))


def unread(member, other) -> int:
    return room_selectors.direct_unread(member)[other.pk].unread


def in_call(member) -> bool:
    return get_user_model().objects.get(pk=member.pk).in_call


def lines() -> dict[int, int]:
    return dict(Line.objects.values_list("member_id", "call_id"))


# --- Starting --------------------------------------------------------------------------------


def test_a_call_to_a_contact_rings_and_takes_both_lines(pair):
    ada, bob = pair
    call = ring(ada, bob)
    assert call.state == Call.State.RINGING
    assert call.outcome == ""
    assert call.video
    assert call.room == room_selectors.direct_room(ada, bob)
    assert lines() == {ada.pk: call.pk, bob.pk: call.pk}
    assert services.call_live_for(bob) == call
    assert services.call_live_for(ada) == call


def test_an_audio_call_is_saved_as_audio_only(pair):
    ada, bob = pair
    assert not ring(ada, bob, video=False).video


def test_calling_yourself_is_refused_and_saves_nothing(ada):
    with pytest.raises(Refused, match="You cannot call yourself"):
        ring(ada, ada)
    assert Call.objects.count() == 0
    assert Line.objects.count() == 0


def test_calling_a_member_who_is_not_a_contact_is_refused_and_saves_nothing(ada, bob):
    with pytest.raises(Refused, match="You can only call your contacts"):
        ring(ada, bob)
    assert Call.objects.count() == 0
    assert Line.objects.count() == 0


def test_calling_nobody_an_unknown_username_is_refused_and_saves_nothing(ada):
    with pytest.raises(Refused, match="You can only call your contacts"):
        services.call_start(caller=ada, callee=None, video=True)
    assert Call.objects.count() == 0


def test_calling_a_former_contact_is_refused(pair):
    ada, bob = pair
    contacts.contact_remove(member=bob, username="ada")
    with pytest.raises(Refused, match="You can only call your contacts"):
        ring(ada, bob)
    assert Call.objects.count() == 0


def test_calling_someone_you_blocked_is_refused(pair):
    ada, bob = pair
    contacts.member_block(blocker=ada, username="bob")
    with pytest.raises(Refused, match="You can only call your contacts"):
        ring(ada, bob)
    assert Call.objects.count() == 0


def test_a_call_to_someone_who_blocked_you_is_saved_silent_and_rings_nobody(pair):
    ada, bob = pair
    contacts.member_block(blocker=bob, username="ada")
    call = ring(ada, bob)
    assert call.silent
    assert call.state == Call.State.RINGING
    assert lines() == {ada.pk: call.pk}  # bob's line stays free: he may take other calls
    assert services.call_live_for(bob) is None
    assert services.call_live_for(ada) == call
    # Bob is free for his own calls meanwhile.
    assert fragments.slot_context(call=services.call_live_for(bob), viewer=bob) == {
        "slot_state": "none"
    }


def test_a_silent_call_ends_as_missed_after_the_ring_timeout_and_posts_no_row(pair, settings):
    ada, bob = pair
    contacts.member_block(blocker=bob, username="ada")
    call = ring(ada, bob)
    age(call, created_at=settings.CALL_RING_TIMEOUT + 1)
    assert services.calls_expire() == 1
    call = fresh(call)
    assert call.state == Call.State.ENDED
    assert call.outcome == Call.Outcome.MISSED
    assert rows(ada, bob) == []
    assert Line.objects.count() == 0
    # To the caller it reads like any unanswered call.
    assert fragments.ended_text(call, ada) == "No answer from Bob."


def test_the_member_who_blocked_you_cannot_answer_or_see_the_silent_call(pair):
    ada, bob = pair
    contacts.member_block(blocker=bob, username="ada")
    call = ring(ada, bob)
    for action in (services.call_accept, services.call_decline, services.call_hangup):
        with pytest.raises(Call.DoesNotExist):
            action(call_id=call.pk, member=bob)
    with pytest.raises(Call.DoesNotExist):
        services.call_of(bob, call.pk)
    call = fresh(call)
    assert call.state == Call.State.RINGING
    assert not in_call(bob)
    assert lines() == {ada.pk: call.pk}


def test_calling_while_in_a_call_is_refused_and_saves_nothing(pair, carol):
    ada, bob = pair
    befriend(ada, carol)
    first = answered(ada, bob)
    with pytest.raises(Refused, match="You are already in a call"):
        ring(ada, carol)
    assert list(Call.objects.all()) == [first]
    assert lines() == {ada.pk: first.pk, bob.pk: first.pk}


def test_calling_while_your_own_call_rings_is_refused(pair, carol):
    ada, bob = pair
    befriend(ada, carol)
    first = ring(ada, bob)
    with pytest.raises(Refused, match="already in a call"):
        ring(ada, carol)
    assert Call.objects.count() == 1
    assert fresh(first).state == Call.State.RINGING


def test_a_call_to_someone_in_a_call_ends_at_once_as_busy(pair, carol):
    ada, bob = pair
    befriend(bob, carol)
    theirs = answered(carol, bob)
    call = ring(ada, bob)
    assert call.state == Call.State.ENDED
    assert call.outcome == Call.Outcome.BUSY
    assert fresh(call).outcome == Call.Outcome.BUSY
    # Bob's call goes on untouched; Ada's line is free again.
    assert fresh(theirs).state == Call.State.ACTIVE
    assert lines() == {bob.pk: theirs.pk, carol.pk: theirs.pk}
    assert services.call_live_for(bob) == theirs
    assert in_call(bob)
    assert not in_call(ada)
    assert rows(ada, bob) == ["Missed video call"]
    assert unread(bob, ada) == 1
    assert unread(ada, bob) == 0
    assert fragments.ended_text(call, ada) == "Bob is in another call. Try again later."


def test_a_caller_whose_call_was_busy_can_call_again(pair, carol):
    ada, bob = pair
    befriend(bob, carol)
    theirs = answered(carol, bob)
    ring(ada, bob)
    services.call_hangup(call_id=theirs.pk, member=carol)
    assert ring(ada, bob).state == Call.State.RINGING


def race(*jobs) -> list[str]:
    """Run each job in its own thread, all at once: what each one gave ("ok", or the refusal)."""
    barrier, outcomes = threading.Barrier(len(jobs)), [None] * len(jobs)

    def run(index, job):
        try:
            barrier.wait()
            job()
            outcomes[index] = "ok"
        except Refused as refusal:
            outcomes[index] = str(refusal)
        except Exception as error:  # shown by the test, rather than lost in a thread
            outcomes[index] = f"error: {error!r}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def assert_lines_consistent() -> None:
    """Every live call holds both its lines (one, if silent); no line points at an ended call."""
    for call in Call.objects.all():
        held = set(Line.objects.filter(call=call).values_list("member_id", flat=True))
        if call.is_live:
            assert held == ({call.caller_id} if call.silent else {call.caller_id, call.callee_id})
        else:
            assert held == set()


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_two_calls_to_one_member_at_once_ring_once_and_the_other_is_busy(pair, carol):
    ada, bob = pair
    befriend(carol, bob)
    outcomes = race(lambda: ring(ada, bob), lambda: ring(carol, bob))
    assert outcomes == ["ok", "ok"]
    assert sorted(Call.objects.values_list("state", "outcome")) == [
        ("ended", "busy"),
        ("ringing", ""),
    ]
    assert_lines_consistent()


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_a_double_clicked_call_button_rings_once(pair):
    ada, bob = pair
    outcomes = race(lambda: ring(ada, bob), lambda: ring(ada, bob))
    assert sorted(outcomes) == ["You are already in a call. Hang up first.", "ok"]
    assert Call.objects.count() == 1
    assert_lines_consistent()


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_two_members_calling_each_other_at_once_get_words_not_an_error(pair, monkeypatch):
    ada, bob = pair
    real_take_line, first = services._take_line, threading.local()

    def take_line_then_pause(member_id, call):
        taken = real_take_line(member_id, call)
        if not getattr(first, "done", False):
            first.done = True
            time.sleep(0.3)  # each now holds the line it took first, whatever the scheduling
        return taken

    monkeypatch.setattr(services, "_take_line", take_line_then_pause)
    outcomes = race(lambda: ring(ada, bob), lambda: ring(bob, ada))
    assert not [outcome for outcome in outcomes if outcome.startswith("error")]
    assert Call.objects.filter(state=Call.State.RINGING).count() == 1
    assert_lines_consistent()


# --- Answering -------------------------------------------------------------------------------


def test_accepting_makes_the_call_active_and_both_in_a_call(pair):
    ada, bob = pair
    call = ring(ada, bob)
    call = services.call_accept(call_id=call.pk, member=bob)
    assert call.state == Call.State.ACTIVE
    assert call.answered_at is not None
    assert call.connected_at is None
    assert in_call(ada)
    assert in_call(bob)
    assert lines() == {ada.pk: call.pk, bob.pk: call.pk}


def test_contacts_see_in_a_call_while_it_is_active_and_online_after(pair, monkeypatch):
    ada, bob = pair
    monkeypatch.setattr(presence, "online_ids", lambda ids: set(ids))  # both have pages open

    def statuses():
        members = get_user_model().objects.filter(pk__in=[ada.pk, bob.pk])
        return {pk: status.text for pk, status in presence.status_of(members).items()}

    call = ring(ada, bob)
    assert statuses() == {ada.pk: "Online", bob.pk: "Online"}
    services.call_accept(call_id=call.pk, member=bob)
    assert statuses() == {ada.pk: "In a call", bob.pk: "In a call"}
    services.call_hangup(call_id=call.pk, member=ada)
    assert statuses() == {ada.pk: "Online", bob.pk: "Online"}


def test_the_caller_cannot_accept_their_own_call(pair):
    ada, bob = pair
    call = ring(ada, bob)
    with pytest.raises(Refused, match="Only Bob can answer this call"):
        services.call_accept(call_id=call.pk, member=ada)
    assert fresh(call).state == Call.State.RINGING
    assert not in_call(ada)


def test_accepting_again_says_it_was_answered_in_another_tab(pair):
    ada, bob = pair
    call = answered(ada, bob)
    answered_at = fresh(call).answered_at
    with pytest.raises(Refused, match="You answered this call in another tab"):
        services.call_accept(call_id=call.pk, member=bob)
    assert fresh(call).answered_at == answered_at


def test_two_accepts_that_both_read_it_ringing_have_one_winner(pair, monkeypatch):
    # Both tabs read the call while it rang; the conditional UPDATE decides, not the read.
    ada, bob = pair
    call = ring(ada, bob)
    stale = [fresh(call), fresh(call)]
    monkeypatch.setattr(services, "call_of", lambda member, call_id: stale.pop())
    services.call_accept(call_id=call.pk, member=bob)
    with pytest.raises(Refused, match="another tab"):
        services.call_accept(call_id=call.pk, member=bob)
    assert fresh(call).state == Call.State.ACTIVE


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_the_same_accept_from_two_tabs_at_once_has_exactly_one_winner(pair):
    ada, bob = pair
    call = ring(ada, bob)
    barrier, outcomes = threading.Barrier(2), []

    def accept():
        try:
            barrier.wait()
            services.call_accept(call_id=call.pk, member=bob)
            outcomes.append("accepted")
        except Refused as refusal:
            outcomes.append(str(refusal))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["You answered this call in another tab.", "accepted"]
    assert fresh(call).state == Call.State.ACTIVE


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_an_accept_racing_a_cancel_has_exactly_one_winner(pair):
    ada, bob = pair
    call = ring(ada, bob)
    barrier, outcomes = threading.Barrier(2), {}

    def act(name, action, member):
        try:
            barrier.wait()
            action(call_id=call.pk, member=member)
            outcomes[name] = "done"
        except Refused:
            outcomes[name] = "refused"
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=act, args=("accept", services.call_accept, bob)),
        threading.Thread(target=act, args=("cancel", services.call_cancel, ada)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["done", "refused"]
    call = fresh(call)
    if outcomes["accept"] == "done":
        assert call.state == Call.State.ACTIVE
        assert rows(ada, bob) == []
        assert (in_call(ada), in_call(bob)) == (True, True)
    else:
        assert call.outcome == Call.Outcome.CANCELLED
        assert rows(ada, bob) == ["Video call · cancelled"]
        assert (in_call(ada), in_call(bob)) == (False, False)


# --- Ending ----------------------------------------------------------------------------------


def test_declining_ends_the_call_frees_both_lines_and_leaves_a_read_row(pair):
    ada, bob = pair
    call = services.call_decline(call_id=ring(ada, bob).pk, member=bob)
    assert call.state == Call.State.ENDED
    assert call.outcome == Call.Outcome.DECLINED
    assert Line.objects.count() == 0
    assert rows(ada, bob) == ["Video call · declined"]
    assert unread(bob, ada) == 0
    assert unread(ada, bob) == 0
    assert fragments.ended_text(call, ada) == "Bob declined the call."
    assert fragments.ended_text(call, bob) == "You declined the call."


def test_only_the_callee_can_decline(pair):
    ada, bob = pair
    call = ring(ada, bob)
    with pytest.raises(Refused, match="Only the person you are calling can decline"):
        services.call_decline(call_id=call.pk, member=ada)
    assert fresh(call).state == Call.State.RINGING


def test_cancelling_ends_the_call_and_is_news_to_the_callee(pair):
    ada, bob = pair
    call = services.call_cancel(call_id=ring(ada, bob, video=False).pk, member=ada)
    assert call.outcome == Call.Outcome.CANCELLED
    assert Line.objects.count() == 0
    assert rows(ada, bob) == ["Audio call · cancelled"]
    assert unread(bob, ada) == 1
    assert unread(ada, bob) == 0
    assert fragments.ended_text(call, bob) == "Missed call from Ada."
    assert fragments.ended_text(call, ada) == "You cancelled the call."


def test_only_the_caller_can_cancel(pair):
    ada, bob = pair
    call = ring(ada, bob)
    with pytest.raises(Refused, match="Only the caller can cancel a call"):
        services.call_cancel(call_id=call.pk, member=bob)
    assert fresh(call).state == Call.State.RINGING


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_either_side_hangs_up_and_the_row_gives_the_real_duration(pair, who):
    ada, bob = pair
    call = answered(ada, bob)
    age(call, answered_at=7.2)
    call = services.call_hangup(call_id=call.pk, member=ada if who == "caller" else bob)
    assert call.state == Call.State.ENDED
    assert call.outcome == Call.Outcome.COMPLETED
    assert timedelta(seconds=7) <= call.duration < timedelta(seconds=8)
    assert rows(ada, bob) == ["Video call · 0:07"]
    assert unread(ada, bob) == 0
    assert unread(bob, ada) == 0
    assert not in_call(ada)
    assert not in_call(bob)
    assert Line.objects.count() == 0
    assert fragments.ended_text(call, ada) == "Call with Bob ended · 0:07"
    assert fragments.ended_text(call, bob) == "Call with Ada ended · 0:07"


def test_an_audio_call_row_says_audio(pair):
    ada, bob = pair
    call = answered(ada, bob, video=False)
    services.call_connected(call_id=call.pk, member_id=ada.pk)
    age(call, answered_at=65.5)
    services.call_hangup(call_id=call.pk, member=bob)
    assert rows(ada, bob) == ["Audio call · 1:05"]


def test_the_row_is_by_the_caller_and_is_a_call_row(pair):
    ada, bob = pair
    services.call_decline(call_id=ring(bob, ada).pk, member=ada)
    row = Message.objects.get()
    assert row.kind == Message.Kind.CALL
    assert row.author == bob
    assert row.room == room_selectors.direct_room(ada, bob)


def test_hanging_up_while_it_rings_is_cancelling_for_the_caller(pair):
    ada, bob = pair
    call = services.call_hangup(call_id=ring(ada, bob).pk, member=ada)
    assert call.outcome == Call.Outcome.CANCELLED


def test_hanging_up_while_it_rings_is_declining_for_the_callee(pair):
    ada, bob = pair
    call = services.call_hangup(call_id=ring(ada, bob).pk, member=bob)
    assert call.outcome == Call.Outcome.DECLINED


def test_a_call_that_ended_while_the_pair_stopped_being_contacts_still_leaves_its_row(pair):
    ada, bob = pair
    call = answered(ada, bob)
    contacts.contact_remove(member=bob, username="ada")  # which ends the call
    with pytest.raises(Refused, match="already ended"):
        services.call_hangup(call_id=call.pk, member=ada)
    assert Room.objects.get(kind=Room.Kind.DIRECT).is_read_only
    assert rows(ada, bob) == ["Video call · 0:00"]


def test_a_call_row_leaves_earlier_unread_messages_unread(pair):
    ada, bob = pair
    room = room_selectors.direct_room(ada, bob)
    room_services.message_post(room=room, author=bob, body="Are you there?")
    room_services.message_post(room=room, author=bob, body="Call me")
    services.call_decline(call_id=ring(ada, bob).pk, member=bob)
    assert unread(ada, bob) == 3  # behind already: the row is one more to read


@pytest.mark.parametrize(
    ("action", "who"),
    [
        (services.call_accept, "bob"),
        (services.call_decline, "bob"),
        (services.call_cancel, "ada"),
        (services.call_hangup, "ada"),
        (services.call_hangup, "bob"),
    ],
)
def test_acting_on_an_ended_call_is_refused_and_changes_nothing(pair, action, who):
    ada, bob = pair
    call = services.call_decline(call_id=ring(ada, bob).pk, member=bob)
    before = fresh(call)
    with pytest.raises(Refused, match="This call has already ended"):
        action(call_id=call.pk, member={"ada": ada, "bob": bob}[who])
    after = fresh(call)
    assert (after.state, after.outcome, after.ended_at) == (
        before.state,
        before.outcome,
        before.ended_at,
    )
    assert rows(ada, bob) == ["Video call · declined"]
    assert (in_call(ada), in_call(bob)) == (False, False)


def test_cancelling_or_declining_an_answered_call_is_refused(pair):
    ada, bob = pair
    call = answered(ada, bob)
    with pytest.raises(Refused, match="This call was answered already"):
        services.call_cancel(call_id=call.pk, member=ada)
    with pytest.raises(Refused, match="This call was answered already"):
        services.call_decline(call_id=call.pk, member=bob)
    assert fresh(call).state == Call.State.ACTIVE
    assert rows(ada, bob) == []


@pytest.mark.parametrize(
    "action",
    [
        services.call_accept,
        services.call_decline,
        services.call_cancel,
        services.call_hangup,
    ],
)
def test_a_call_that_is_not_yours_does_not_exist_for_you(pair, carol, action):
    ada, bob = pair
    call = ring(ada, bob)
    with pytest.raises(Call.DoesNotExist):
        action(call_id=call.pk, member=carol)
    with pytest.raises(Call.DoesNotExist):
        action(call_id=call.pk + 1000, member=bob)
    assert fresh(call).state == Call.State.RINGING
    assert services.call_live_for(carol) is None


# --- Connected and seen ----------------------------------------------------------------------


def test_connected_is_saved_once_and_only_while_active(pair):
    ada, bob = pair
    call = ring(ada, bob)
    assert not services.call_connected(call_id=call.pk, member_id=ada.pk)
    services.call_accept(call_id=call.pk, member=bob)
    assert services.call_connected(call_id=call.pk, member_id=ada.pk)
    first = fresh(call).connected_at
    assert not services.call_connected(call_id=call.pk, member_id=bob.pk)
    assert fresh(call).connected_at == first


def test_seen_moves_only_that_participants_time(pair, carol):
    ada, bob = pair
    call = answered(ada, bob)
    age(call, caller_seen_at=20, callee_seen_at=20)
    services.call_seen(call_id=call.pk, member_id=bob.pk)
    services.call_seen(call_id=call.pk, member_id=carol.pk)  # not in it: nothing
    call = fresh(call)
    assert timezone.now() - call.callee_seen_at < timedelta(seconds=5)
    assert timezone.now() - call.caller_seen_at > timedelta(seconds=19)


# --- Nothing rings or lasts forever ----------------------------------------------------------


def test_a_call_ringing_past_the_ring_timeout_ends_as_missed(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    call = ring(ada, bob)
    age(call, created_at=6)
    assert services.calls_expire() == 1
    call = fresh(call)
    assert call.outcome == Call.Outcome.MISSED
    assert call.ended_at is not None
    assert Line.objects.count() == 0
    assert rows(ada, bob) == ["Missed video call"]
    assert unread(bob, ada) == 1  # news to the callee only
    assert unread(ada, bob) == 0
    assert fragments.ended_text(call, bob) == "Missed call from Ada."
    assert fragments.ended_text(call, ada) == "No answer from Bob."


def test_a_call_still_within_the_ring_timeout_keeps_ringing(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    call = ring(ada, bob)
    age(call, created_at=4)
    assert services.calls_expire() == 0
    assert fresh(call).state == Call.State.RINGING


def test_an_answered_call_that_never_connects_ends_as_failed(pair, settings):
    ada, bob = pair
    settings.CALL_CONNECT_TIMEOUT = 5
    call = answered(ada, bob)
    age(call, answered_at=6)
    assert services.calls_expire() == 1
    call = fresh(call)
    assert call.outcome == Call.Outcome.FAILED
    assert rows(ada, bob) == ["Video call · could not connect"]
    assert (in_call(ada), in_call(bob)) == (False, False)
    assert Line.objects.count() == 0
    assert "ask your admin about TURN" in fragments.ended_text(call, ada)


def test_a_connected_call_outlives_the_connect_timeout(pair, settings):
    ada, bob = pair
    settings.CALL_CONNECT_TIMEOUT = 5
    call = answered(ada, bob)
    services.call_connected(call_id=call.pk, member_id=bob.pk)
    age(call, answered_at=60)
    assert services.calls_expire() == 0
    assert fresh(call).state == Call.State.ACTIVE


def test_a_participant_not_seen_for_the_seat_timeout_ends_the_call_as_completed(pair, settings):
    ada, bob = pair
    settings.CALL_SEAT_TIMEOUT = 5
    call = answered(ada, bob)
    services.call_connected(call_id=call.pk, member_id=ada.pk)
    age(call, answered_at=30, callee_seen_at=6)
    assert services.calls_expire() == 1
    call = fresh(call)
    assert call.outcome == Call.Outcome.COMPLETED
    assert (in_call(ada), in_call(bob)) == (False, False)
    assert rows(ada, bob) == ["Video call · 0:30"]


def test_being_seen_keeps_the_call_alive(pair, settings):
    ada, bob = pair
    settings.CALL_SEAT_TIMEOUT = 5
    call = answered(ada, bob)
    services.call_connected(call_id=call.pk, member_id=ada.pk)
    age(call, caller_seen_at=6, callee_seen_at=6)
    services.call_seen(call_id=call.pk, member_id=ada.pk)
    services.call_seen(call_id=call.pk, member_id=bob.pk)
    assert services.calls_expire() == 0
    assert fresh(call).state == Call.State.ACTIVE


def test_expiring_for_one_member_leaves_other_members_calls(pair, carol, user_factory, settings):
    ada, bob = pair
    dave = user_factory(username="dave")
    befriend(carol, dave)
    settings.CALL_RING_TIMEOUT = 5
    ours, theirs = ring(ada, bob), ring(carol, dave)
    age(ours, created_at=6)
    age(theirs, created_at=6)
    assert services.calls_expire(member_id=ada.pk) == 1
    assert fresh(ours).state == Call.State.ENDED
    assert fresh(theirs).state == Call.State.RINGING


def test_expiring_twice_ends_a_call_once(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    age(ring(ada, bob), created_at=6)
    assert services.calls_expire() == 1
    assert services.calls_expire() == 0
    assert rows(ada, bob) == ["Missed video call"]


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_three_processes_sweeping_at_once_end_each_call_once(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    age(ring(ada, bob), created_at=6)
    ended = []
    outcomes = race(*[lambda: ended.append(services.calls_expire()) for _ in range(3)])
    assert outcomes == ["ok", "ok", "ok"]
    assert sum(ended) == 1
    assert rows(ada, bob) == ["Missed video call"]
    assert unread(bob, ada) == 1
    assert_lines_consistent()


def test_reading_a_members_call_ends_it_first_when_overdue(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    call = ring(ada, bob)
    age(call, created_at=6)
    assert services.call_live_for(bob) is None
    assert fresh(call).outcome == Call.Outcome.MISSED


def test_reading_one_call_ends_it_first_when_overdue(pair, settings):
    ada, bob = pair
    settings.CALL_CONNECT_TIMEOUT = 5
    call = answered(ada, bob)
    age(call, answered_at=6)
    assert services.call_of(ada, call.pk).outcome == Call.Outcome.FAILED


def test_accepting_a_call_that_rang_out_is_refused_and_it_stays_missed(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    call = ring(ada, bob)
    age(call, created_at=6)
    with pytest.raises(Refused, match="This call has already ended"):
        services.call_accept(call_id=call.pk, member=bob)
    assert fresh(call).outcome == Call.Outcome.MISSED
    assert not in_call(bob)


def test_an_overdue_call_frees_the_line_for_a_new_one(pair, settings):
    ada, bob = pair
    settings.CALL_RING_TIMEOUT = 5
    age(ring(ada, bob), created_at=6)
    assert ring(ada, bob).state == Call.State.RINGING  # started after ending the old one


# --- Small parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (7.9, "0:07"), (754, "12:34"), (3723, "1:02:03")],
)
def test_durations_read_like_a_clock(seconds, text):
    assert duration_text(timedelta(seconds=seconds)) == text


def test_no_duration_reads_as_zero():
    assert duration_text(None) == "0:00"


# --- The contact ends, and the call with it --------------------------------------------------


@pytest.mark.parametrize("how", ["remove", "block"])
def test_removing_or_blocking_a_contact_ends_their_active_call(pair, how):
    ada, bob = pair
    call = answered(ada, bob)
    if how == "remove":
        contacts.contact_remove(member=bob, username="ada")
    else:
        contacts.member_block(blocker=bob, username="ada")
    call = fresh(call)
    assert (call.state, call.outcome) == (Call.State.ENDED, Call.Outcome.COMPLETED)
    assert lines() == {}
    assert not in_call(ada)
    assert not in_call(bob)
    assert rows(ada, bob) == ["Video call · 0:00"]


def test_removing_a_contact_stops_their_call_ringing(pair):
    ada, bob = pair
    call = ring(ada, bob)
    contacts.contact_remove(member=ada, username="bob")
    call = fresh(call)
    assert (call.state, call.outcome) == (Call.State.ENDED, Call.Outcome.CANCELLED)
    assert lines() == {}
    with pytest.raises(Refused):
        services.call_accept(call_id=call.pk, member=bob)


def test_a_hang_up_that_loses_to_the_answer_still_ends_the_call(pair, monkeypatch):
    ada, bob = pair
    call = ring(ada, bob)
    # Ada's hang-up read the call while it rang; Bob's answer commits before her UPDATE does.
    stale = fresh(call)
    services.call_accept(call_id=call.pk, member=bob)
    read = services.call_of
    monkeypatch.setattr(
        services,
        "call_of",
        lambda member, call_id: stale if member == ada else read(member, call_id),
    )
    ended = services.call_hangup(call_id=call.pk, member=ada)
    assert (ended.state, ended.outcome) == (Call.State.ENDED, Call.Outcome.COMPLETED)
