from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.forms import ProfileForm
from accounts.models import User
from accounts.presence import status_of
from parley.fragments import notice_fragment
from parley.http import HtmxHttpRequest
from rooms import selectors as room_selectors
from rooms import services as room_services


@require_http_methods(["GET", "POST"])
def profile(request: HtmxHttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        if request.htmx:
            # The form and, out of band, the name in the header.
            return render(
                request, "accounts/profile.html#profile-saved", {"form": form, "saved": True}
            )
        messages.success(request, "Your profile is saved.")
        return redirect("profile")
    template = "accounts/profile.html#profile-form" if request.htmx else "accounts/profile.html"
    return render(request, template, {"form": form})


@require_GET
def member_socket(request: HtmxHttpRequest) -> HttpResponse:
    """A fresh copy of the member socket's element, which opens a new socket when swapped in.
    It says the rooms the page asked with (its sidebar's), not the member's rooms now: the new
    socket compares the two and sends the page new rows if they differ."""
    digest = room_selectors.page_rooms_digest(request.GET.get("rooms"))
    here = room_selectors.page_room_slug(request.GET.get("here"))
    return render(
        request, "includes/member_socket.html", {"sidebar_rooms_digest": digest, "here": here}
    )


# --- People and contacts ---------------------------------------------------------------------


def _back(request: HtmxHttpRequest, fallback: str) -> str:
    """Where a form without JavaScript returns to: the page it was on, if it is ours."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def _answer(
    request: HtmxHttpRequest, other: User | None, done: str, *, level: int = messages.SUCCESS
) -> HttpResponse:
    """After an action on a person: for htmx, that person's actions again, and out of band
    the member's contact list and notices; without JavaScript, back to the page it came from."""
    if request.htmx and request.POST.get("from") == "notice":
        # The member socket replaces the notices in every tab, this one included.
        return HttpResponse(status=204)
    if request.htmx:
        context = {
            "done": done,
            "failed": level == messages.ERROR,
            "full": request.POST.get("full") == "1",
            "next": request.POST.get("next", ""),
        }
        if other is not None:
            context |= {"person": other, "relation": selectors.relation(request.user, other)}
        response = render(request, "accounts/answer.html", context)
        if other is None:
            # No person whose actions the words could stand beside (nobody has that name): they
            # come as a notice instead of being lost.
            level = "error" if context["failed"] else "info"
            response.content += notice_fragment(done, level=level).encode()
        return response
    messages.add_message(request, level, done)
    return redirect(_back(request, reverse("person", args=[other.username]) if other else "/"))


@require_GET
def people(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[: selectors.QUERY_MAX_LENGTH]
    found = selectors.people_search(request.user, query)
    more = len(found) > selectors.SEARCH_LIMIT
    found = found[: selectors.SEARCH_LIMIT]
    known = selectors.relations(request.user, found)
    context = {
        "query": query,
        "results": [(person, known[person.pk]) for person in found],
        "more": more,
    }
    # The search box asks for the results alone; a reload gets the whole page.
    if request.htmx and request.htmx.target == "people-results":
        return render(request, "accounts/people.html#people-results", context)
    return render(request, "accounts/people.html", context)


@require_GET
def person(request: HtmxHttpRequest, username: str) -> HttpResponse:
    other = get_object_or_404(User, username=username, is_active=True)
    relation = selectors.relation(request.user, other)
    # Presence is for contacts only; to anyone else (also one who is blocked) a page shows none.
    status = status_of([other])[other.pk] if relation.kind == "contact" else None
    context = {
        "person": other,
        "relation": relation,
        "status": status,
        "is_me": other.pk == request.user.pk,
        "full": True,
    }
    return render(request, "accounts/person.html", context)


@require_GET
def contacts(request: HtmxHttpRequest) -> HttpResponse:
    listed = selectors.sidebar_contacts(request.user)
    Relation = selectors.Relation
    context = {
        "contact_entries": [(e.member, Relation("contact"), e.status) for e in listed.entries],
        "incoming": [(r.sender, Relation("received", r.pk), None) for r in listed.requests],
        "outgoing": [
            (r.recipient, Relation("sent"), None) for r in selectors.outgoing_requests(request.user)
        ],
        "blocked": [(m, Relation("blocked"), None) for m in selectors.blocked_by(request.user)],
    }
    return render(request, "accounts/contacts.html", context)


@require_POST
def contact_request(request: HtmxHttpRequest, username: str = "") -> HttpResponse:
    username = username or request.POST.get("username", "")
    try:
        outcome = services.contact_request_send(sender=request.user, username=username)
    except services.Refused as refusal:
        other = selectors.member_named(username)
        return _answer(request, other, str(refusal), level=messages.ERROR)
    other = selectors.member_named(username)
    if outcome == "contact":
        return _answer(request, other, f"You and {other.name} are now contacts.")
    return _answer(request, other, f"Request sent to {other.name}.")


@require_POST
def contact_request_cancel(request: HtmxHttpRequest, username: str) -> HttpResponse:
    other = get_object_or_404(User, username=username)
    services.contact_request_cancel(sender=request.user, username=username)
    return _answer(request, other, f"Your request to {other.name} is taken back.")


@require_POST
def contact_request_accept(request: HtmxHttpRequest, request_id: int) -> HttpResponse:
    other = services.contact_request_accept(member=request.user, request_id=request_id)
    return _answer(request, other, f"You and {other.name} are now contacts.")


@require_POST
def contact_request_decline(request: HtmxHttpRequest, request_id: int) -> HttpResponse:
    other = services.contact_request_decline(member=request.user, request_id=request_id)
    return _answer(
        request, other, f"You declined the request from {other.name}.", level=messages.INFO
    )


@require_POST
def contact_remove(request: HtmxHttpRequest, username: str) -> HttpResponse:
    other = get_object_or_404(User, username=username)
    services.contact_remove(member=request.user, username=username)
    return _answer(
        request, other, f"{other.name} is no longer one of your contacts.", level=messages.INFO
    )


@require_POST
def member_block(request: HtmxHttpRequest, username: str) -> HttpResponse:
    other = get_object_or_404(User, username=username)
    try:
        services.member_block(blocker=request.user, username=username)
    except services.Refused as refusal:
        return _answer(request, other, str(refusal), level=messages.ERROR)
    return _answer(
        request, other, f"You have blocked {other.name}. They are not told.", level=messages.INFO
    )


@require_POST
def member_unblock(request: HtmxHttpRequest, username: str) -> HttpResponse:
    other = get_object_or_404(User, username=username)
    services.member_unblock(blocker=request.user, username=username)
    return _answer(request, other, f"You have unblocked {other.name}.", level=messages.INFO)


@require_http_methods(["GET", "POST"])
def direct_chat(request: HtmxHttpRequest, username: str) -> HttpResponse:
    """A contact's conversation: opened (made once per pair) and shown. A former contact's
    read-only conversation can still be read by the two of them."""
    other = get_object_or_404(User, username=username, is_active=True)
    if selectors.are_contacts(request.user, other):
        return redirect(room_services.direct_open(a=request.user, b=other))
    room = room_selectors.direct_room(request.user, other)
    if room is not None and room_selectors.is_member(room, request.user):
        return redirect(room)
    messages.info(request, "You can write to your contacts. Send a contact request first.")
    return redirect("person", username=other.username)
