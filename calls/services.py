"""Everything that changes calls, and the announcements that follow a change.

The server decides what state a call is in; pages only show it. Each change is one conditional
UPDATE from the states it may come from, so two tabs answering at once, or an answer racing a
hang-up, have exactly one winner whatever the database. A member's `Line` (primary key: the
member) is taken while one of their calls rings or is active: one call at a time, by
construction. After a change commits:

- each participant's open tabs get their `#call-slot` (calls/fragments.py), through the member
  socket: ringing, "Answered in another tab", "No answer", …;
- the call's group gets `call.state`, which the call sockets act on (ready, close when ended);
- contacts see "In a call" while it is active (accounts.presence.presence_set_in_call);
- an ended call leaves a row in the pair's direct conversation ("Video call · 0:07").

Nothing rings or lasts forever: `calls_expire` ends overdue calls, run by every process with
open sockets (calls/sweep.py) and before any read of a member's calls here.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Block, Contact
from accounts.presence import presence_set_in_call
from calls import fragments
from calls.models import Call, Line, duration_text
from parley.live.announce import group_send
from parley.live.members import member_push
from rooms import selectors as room_selectors
from rooms import services as room_services
from rooms.services import Refused

logger = logging.getLogger(__name__)

ENDED_ALREADY = "This call has already ended."


# --- Reading, with overdue calls ended first ---------------------------------------------------


def call_of(member, call_id: int) -> Call:
    """The member's call with this id, as it is now. Call.DoesNotExist if it is not theirs.

    A silent call (to someone who blocked the caller) is not the callee's: it never rang for
    them, so they cannot answer it by its id, and it cannot take them into a call off their line."""
    calls_expire(member_id=member.pk)
    return Call.objects.select_related("caller", "callee", "room").get(
        Q(caller=member) | Q(callee=member, silent=False), pk=call_id
    )


def call_live_for(member) -> Call | None:
    """The member's call that rings or is active, if any (at most one: their Line)."""
    calls_expire(member_id=member.pk)
    line = Line.objects.filter(member=member).select_related("call").first()
    if line is None:
        return None
    return Call.objects.select_related("caller", "callee", "room").get(pk=line.call_id)


# --- Changes -------------------------------------------------------------------------------


def call_start(*, caller, callee, video: bool) -> Call:
    """Ring `callee`. A call to someone busy is saved and ended at once as busy (the caller's
    page says so); to someone who blocked the caller it rings nowhere and ends as missed."""
    if callee is None:
        raise Refused("You can only call your contacts.")
    if callee.pk == caller.pk:
        raise Refused("You cannot call yourself.")
    blocked = Block.objects.filter(blocker=callee, blocked=caller).exists()
    if not blocked and not Contact.objects.filter(member=caller, other=callee).exists():
        raise Refused("You can only call your contacts.")
    calls_expire(member_id=caller.pk)
    calls_expire(member_id=callee.pk)
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.create(
            caller=caller,
            callee=callee,
            video=video,
            room=room_selectors.direct_room(caller, callee),
            silent=blocked,
            caller_seen_at=now,
        )
        # Both lines in one order, the lower member id first: two members calling each other
        # at once would otherwise each take their own line and wait on the other's, a deadlock
        # PostgreSQL ends with an error.
        free = {
            member_id: _take_line(member_id, call)
            for member_id in sorted({caller.pk} if blocked else {caller.pk, callee.pk})
        }
        if not free[caller.pk]:
            raise Refused("You are already in a call. Hang up first.")  # rolls the call back
        if not free.get(callee.pk, True):
            _end(call, Call.Outcome.BUSY, from_states=[Call.State.RINGING])
        else:
            transaction.on_commit(lambda: call_announce(call.pk))
    return call


def _take_line(member_id: int, call: Call) -> bool:
    try:
        with transaction.atomic():
            Line.objects.create(member_id=member_id, call=call)
    except IntegrityError:
        return False
    return True


def call_accept(*, call_id: int, member) -> Call:
    """The callee answers. From two tabs at once, exactly one wins; the other is refused."""
    call = call_of(member, call_id)
    if call.callee_id != member.pk:
        raise Refused(f"Only {call.callee.name} can answer this call.")
    now = timezone.now()
    with transaction.atomic():
        won = Call.objects.filter(pk=call.pk, state=Call.State.RINGING).update(
            state=Call.State.ACTIVE, answered_at=now, caller_seen_at=now, callee_seen_at=now
        )
        if not won:
            call.refresh_from_db()
            raise Refused(
                "You answered this call in another tab."
                if call.state == Call.State.ACTIVE
                else ENDED_ALREADY
            )
        for member_id in (call.caller_id, call.callee_id):
            presence_set_in_call(member_id=member_id, in_call=True)
        transaction.on_commit(lambda: call_announce(call.pk))
    call.refresh_from_db()
    return call


def call_decline(*, call_id: int, member) -> Call:
    call = call_of(member, call_id)
    if call.callee_id != member.pk:
        raise Refused("Only the person you are calling can decline.")
    return _end_or_refuse(call, Call.Outcome.DECLINED, from_states=[Call.State.RINGING])


def call_cancel(*, call_id: int, member) -> Call:
    call = call_of(member, call_id)
    if call.caller_id != member.pk:
        raise Refused("Only the caller can cancel a call.")
    return _end_or_refuse(call, Call.Outcome.CANCELLED, from_states=[Call.State.RINGING])


def call_hangup(*, call_id: int, member) -> Call:
    """Either participant ends the call: while it rings that is cancelling or declining."""
    call = call_of(member, call_id)
    if call.state == Call.State.RINGING:
        try:
            if call.caller_id == member.pk:
                return call_cancel(call_id=call_id, member=member)
            return call_decline(call_id=call_id, member=member)
        except Refused:
            # Answered a moment before (in a tab of either): hanging up still means "done".
            call = call_of(member, call_id)
            if call.state != Call.State.ACTIVE:
                raise
    return _end_or_refuse(call, Call.Outcome.COMPLETED, from_states=[Call.State.ACTIVE])


def calls_end_between(*, a, b) -> int:
    """End the pair's call, if they have one: they are no longer contacts (removed, blocked).

    Runs inside the transaction that ended the contact (accounts.events.contact_ended)."""
    ended = 0
    live = Call.objects.filter(Q(caller=a, callee=b) | Q(caller=b, callee=a), state__in=Call.LIVE)
    for call in live:
        active = call.state == Call.State.ACTIVE
        outcome = Call.Outcome.COMPLETED if active else Call.Outcome.CANCELLED
        ended += _end(call, outcome, from_states=[call.state])
    return ended


def call_connected(*, call_id: int, member_id: int) -> bool:
    """A participant's page connected its media: the call no longer risks failing."""
    return bool(
        Call.objects.filter(pk=call_id, state=Call.State.ACTIVE, connected_at__isnull=True).update(
            connected_at=timezone.now()
        )
    )


def call_seen(*, call_id: int, member_id: int) -> None:
    """A participant's call page is there (its call socket says so every CALL_KEEPALIVE s)."""
    calls = Call.objects.filter(pk=call_id, state__in=Call.LIVE)
    now = timezone.now()
    calls.filter(caller_id=member_id).update(caller_seen_at=now)
    calls.filter(callee_id=member_id).update(callee_seen_at=now)


def calls_expire(*, member_id: int | None = None) -> int:
    """End every overdue call (of one member, or of everyone); how many were ended.

    Ringing past CALL_RING_TIMEOUT: missed. Answered, but no media within CALL_CONNECT_TIMEOUT:
    failed. Active with a participant's call page gone for CALL_SEAT_TIMEOUT: ended."""
    now = timezone.now()
    ring = now - timedelta(seconds=settings.CALL_RING_TIMEOUT)
    connect = now - timedelta(seconds=settings.CALL_CONNECT_TIMEOUT)
    seat = now - timedelta(seconds=settings.CALL_SEAT_TIMEOUT)
    overdue = Call.objects.filter(
        Q(state=Call.State.RINGING, created_at__lt=ring)
        | Q(state=Call.State.ACTIVE, connected_at__isnull=True, answered_at__lt=connect)
        | Q(state=Call.State.ACTIVE) & (Q(caller_seen_at__lt=seat) | Q(callee_seen_at__lt=seat))
    )
    if member_id is not None:
        overdue = overdue.filter(Q(caller_id=member_id) | Q(callee_id=member_id))
    ended = 0
    for call in overdue:
        if call.state == Call.State.RINGING:
            outcome = Call.Outcome.MISSED
        elif call.connected_at is None:
            outcome = Call.Outcome.FAILED
        else:
            outcome = Call.Outcome.COMPLETED
        with transaction.atomic():
            ended += _end(call, outcome, from_states=[call.state])
    return ended


# --- Ending ----------------------------------------------------------------------------------


def _end_or_refuse(call: Call, outcome: str, *, from_states: list[str]) -> Call:
    with transaction.atomic():
        if not _end(call, outcome, from_states=from_states):
            call.refresh_from_db()
            if call.state == Call.State.ACTIVE:
                raise Refused("This call was answered already.")
            raise Refused(ENDED_ALREADY)
    call.refresh_from_db()
    return call


def _end(call: Call, outcome: str, *, from_states: list[str]) -> bool:
    """End the call if it is still in one of `from_states`; False if it had moved on.
    Runs inside the caller's transaction."""
    now = timezone.now()
    was_active = call.state == Call.State.ACTIVE
    if not Call.objects.filter(pk=call.pk, state__in=from_states).update(
        state=Call.State.ENDED, outcome=outcome, ended_at=now
    ):
        return False
    Line.objects.filter(call=call).delete()
    call.state, call.outcome, call.ended_at = Call.State.ENDED, outcome, now
    if was_active:
        for member_id in (call.caller_id, call.callee_id):
            presence_set_in_call(member_id=member_id, in_call=False)
    if call.room_id is not None and not call.silent:
        room_services.message_post_row(
            room=call.room,
            author=call.caller,
            body=row_text(call),
            # News to the callee only when they did not take part.
            seen_by=[call.caller_id]
            if outcome in (Call.Outcome.MISSED, Call.Outcome.BUSY, Call.Outcome.CANCELLED)
            else [call.caller_id, call.callee_id],
        )
    transaction.on_commit(lambda: call_announce(call.pk))
    return True


def row_text(call: Call) -> str:
    """What the direct conversation says of an ended call."""
    kind = call.kind_label
    match call.outcome:
        case Call.Outcome.COMPLETED:
            return f"{kind} · {duration_text(call.duration)}"
        case Call.Outcome.DECLINED:
            return f"{kind} · declined"
        case Call.Outcome.CANCELLED:
            return f"{kind} · cancelled"
        case Call.Outcome.FAILED:
            return f"{kind} · could not connect"
        case _:  # missed, busy
            return f"Missed {kind.lower()}"


# --- Announcing ------------------------------------------------------------------------------


def call_announce(call_id: int) -> None:
    """Tell both participants' tabs, and the call's sockets, how the call stands now.

    Never raises: the change is saved whether or not the channel layer takes the news."""
    try:
        call = Call.objects.select_related("caller", "callee").get(pk=call_id)
        for viewer in (call.caller, call.callee):
            if viewer.pk == call.callee_id and call.silent:
                continue  # a call to someone who blocked the caller reaches nobody
            if not call.is_live and Line.objects.filter(member=viewer).exists():
                continue  # busy in another call: its slot stays; the row in the chat tells
            member_push(member_id=viewer.pk, html=fragments.slot(call=call, viewer=viewer))
        group_send(call.group, {"type": "call.state", "state": call.state, "outcome": call.outcome})
    except Exception:
        logger.exception("Announcing call %s failed", call_id)
