"""The HTML fragments calls push: a member's `#call-slot`, the same on every page they have open."""

from django.db.models import Q
from django.template.loader import render_to_string

from calls.models import Call, duration_text


def slot(*, call: Call | None, viewer, oob: bool = True) -> str:
    """The call as `viewer` sees it, for the slot at the top of every page (empty: no call)."""
    context = slot_context(call=call, viewer=viewer) | {"oob": oob}
    return render_to_string("calls/slot.html", context)


def slot_catching_up(member) -> str:
    """The slot for a member socket that just opened: the page may show a call that changed
    while its socket was away. '' for a member who never had a call (nothing can be stale)."""
    from calls import services

    if not Call.objects.filter(Q(caller=member) | Q(callee=member)).exists():
        return ""
    return slot(call=services.call_live_for(member), viewer=member)


def slot_context(*, call: Call | None, viewer) -> dict:
    if call is None:
        return {"slot_state": "none"}
    incoming = call.callee_id == viewer.pk
    other = call.caller if incoming else call.callee
    if call.state == Call.State.RINGING:
        state = "incoming" if incoming else "outgoing"
    elif call.state == Call.State.ACTIVE:
        state = "active"
    else:
        state = "ended"
    return {
        "slot_state": state,
        "call": call,
        "other": other,
        "incoming": incoming,
        "ended_text": ended_text(call, viewer) if state == "ended" else "",
    }


def ended_text(call: Call, viewer) -> str:
    """How an ended call reads to one of its two participants."""
    incoming = call.callee_id == viewer.pk
    other = (call.caller if incoming else call.callee).name
    match call.outcome:
        case Call.Outcome.COMPLETED:
            return f"Call with {other} ended · {duration_text(call.duration)}"
        case Call.Outcome.DECLINED:
            return "You declined the call." if incoming else f"{other} declined the call."
        case Call.Outcome.CANCELLED:
            return f"Missed call from {other}." if incoming else "You cancelled the call."
        case Call.Outcome.MISSED:
            return f"Missed call from {other}." if incoming else f"No answer from {other}."
        case Call.Outcome.BUSY:
            return f"{other} is in another call. Try again later."
        case _:
            return (
                f"The call with {other} could not connect: the network between you blocks "
                "calls; ask your admin about TURN."
            )
