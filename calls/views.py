from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.selectors import member_named
from calls import fragments, services
from calls.models import Call
from parley.http import HtmxHttpRequest
from rooms.services import Refused


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """Send the page to `url`: htmx follows HX-Redirect, a plain form a redirect."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _back(request: HtmxHttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.headers.get("Referer", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _refused(request: HtmxHttpRequest, refusal: Refused, fallback: str) -> HttpResponse:
    messages.error(request, str(refusal))
    return _go(request, _back(request, fallback))


def _conversation(call: Call) -> str:
    return call.room.get_absolute_url() if call.room_id else reverse("home")


def _mine(request: HtmxHttpRequest, call_id: int) -> Call:
    try:
        return services.call_of(request.user, call_id)
    except Call.DoesNotExist:
        raise Http404("No such call.") from None


@require_POST
def call_start(request: HtmxHttpRequest, username: str) -> HttpResponse:
    callee = member_named(username)
    try:
        call = services.call_start(
            caller=request.user, callee=callee, video=request.POST.get("kind") != "audio"
        )
    except Refused as refusal:
        return _refused(request, refusal, reverse("home"))
    if call.outcome == Call.Outcome.BUSY:
        # Ended before it rang: say so where the caller is, rather than on an ended call's page.
        messages.warning(request, fragments.ended_text(call, request.user))
        return _go(request, _back(request, reverse("home")))
    return _go(request, call.get_absolute_url())


@require_GET
def call_page(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    return _page(request, _mine(request, call_id), audio=request.GET.get("audio") == "1")


def _page(
    request: HtmxHttpRequest, call: Call, *, audio: bool, template: str = "calls/call.html"
) -> HttpResponse:
    other = call.callee if call.caller_id == request.user.pk else call.caller
    return render(
        request,
        template,
        {
            "call": call,
            "other": other,
            "room": call.room,
            "audio_only": not call.video or audio,
            "polite": call.callee_id == request.user.pk,
            "return_url": _conversation(call),
            # How it ended, for a call page opened (or reloaded) after the end.
            "ended_text": "" if call.is_live else fragments.ended_text(call, request.user),
        },
    )


def _act(request: HtmxHttpRequest, call_id: int, action, then) -> HttpResponse:
    _mine(request, call_id)  # 404 for a call that is not theirs
    try:
        call = action(call_id=call_id, member=request.user)
    except Call.DoesNotExist:
        raise Http404("No such call.") from None
    except Refused as refusal:
        return _refused(request, refusal, reverse("call", args=[call_id]))
    return _go(request, then(call))


@require_POST
def call_accept(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    audio = request.POST.get("audio_only") == "1"
    if not request.htmx:
        query = "?audio=1" if audio else ""
        return _act(request, call_id, services.call_accept, lambda c: c.get_absolute_url() + query)
    _mine(request, call_id)
    try:
        call = services.call_accept(call_id=call_id, member=request.user)
    except Call.DoesNotExist:
        raise Http404("No such call.") from None
    except Refused as refusal:
        return _refused(request, refusal, reverse("call", args=[call_id]))
    # With htmx the answer is the call page's #main, swapped into the #main of the page the
    # Accept was clicked on (templates/calls/slot.html): no redirect to follow, no page to load
    # (its script and styles are there already), and no sidebar to render again. The call itself
    # is under way by then (static/js/call.js started it at the click): it takes the call page
    # over when it is swapped in, and puts its address in the history. A form of an older slot
    # (it swapped .layout, and says no target id) gets the whole page.
    if request.htmx.target == "main":
        return _page(request, call, audio=audio, template="calls/accepted.html")
    return _page(request, call, audio=audio)


@require_POST
def call_decline(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    if request.htmx:  # the member socket replaces the slot in every tab, this one included
        try:
            services.call_decline(call_id=call_id, member=request.user)
        except Call.DoesNotExist:
            raise Http404("No such call.") from None
        except Refused as refusal:
            return _refused(request, refusal, reverse("home"))
        return HttpResponse(status=204)
    return _act(request, call_id, services.call_decline, lambda c: _back(request, reverse("home")))


@require_POST
def call_cancel(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    return _act(request, call_id, services.call_cancel, _conversation)


@require_POST
def call_hangup(request: HtmxHttpRequest, call_id: int) -> HttpResponse:
    return _act(request, call_id, services.call_hangup, _conversation)


@require_GET
def call_slot(request: HtmxHttpRequest) -> HttpResponse:
    call = services.call_live_for(request.user)
    return HttpResponse(fragments.slot(call=call, viewer=request.user, oob=False))
