from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from parley.http import HtmxHttpRequest
from rooms import fragments, selectors, services
from rooms.forms import RoomForm
from rooms.models import Membership, Room

DIRECTORY_PAGE_SIZE = 20


@require_GET
def directory(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    page = Paginator(selectors.directory(query), DIRECTORY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    mine = set(
        Membership.objects.filter(
            member=request.user, room__in=[room.pk for room in page]
        ).values_list("room_id", flat=True)
    )
    context = {"page": page, "query": query, "mine": mine}
    # The search box asks for the results alone; a page link or a reload gets the whole page.
    if request.htmx and request.htmx.target == "room-results":
        return render(request, "rooms/directory.html#room-results", context)
    return render(request, "rooms/directory.html", context)


@require_http_methods(["GET", "POST"])
def room_create(request: HtmxHttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        room = services.room_create(creator=request.user, **form.cleaned_data)
        messages.success(request, f"{room.name} is ready. You are its owner.")
        if request.htmx:
            # A redirect would be followed inside the request and swapped into the form.
            return HttpResponseClientRedirect(room.get_absolute_url())
        return redirect(room)
    template = "rooms/create.html#room-form" if request.htmx else "rooms/create.html"
    return render(request, template, {"form": form})


@require_GET
def room(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    room = selectors.room_for(request.user, slug)
    membership = selectors.membership_of(room, request.user)
    page, older_than = selectors.latest_messages(room)
    other = selectors.direct_other(room, request.user) if room.kind == Room.Kind.DIRECT else None
    context = {
        "room": room,
        "title": _title(room, other),
        "other": other,
        "membership": membership,
        "is_owner": membership is not None and membership.role == Membership.Role.OWNER,
        "chat_messages": page,
        "older_than": older_than,
        "last_seq": page[-1].seq if page else 0,
        "key": fragments.new_key(),
        "member_count": room.memberships.count(),
        "online": None,  # the room socket says who is online as soon as it opens
    }
    if membership is not None:
        services.room_mark_read(room=room, member=request.user, seq=room.last_seq)
    return render(request, "rooms/room.html", context)


def _title(room: Room, other) -> str:
    """A direct conversation is called after the other member, for each of its two members."""
    if room.kind != Room.Kind.DIRECT:
        return room.name
    return other.name if other is not None else "Former member"


@require_GET
def room_socket(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """A fresh copy of the room's socket element: the page fetches it after its socket closed,
    and swapping it in opens a new socket. Nothing comes along: the copy carries no seq (the
    page's #room-seq, outside the element, is what the new socket resumes from, so a socket the
    ws extension reopened meanwhile cannot make it resume from an older one), and the page keeps
    its draft and key (the copy's composer fields are hx-preserve); the new socket's resume
    frame carries them, so a draft that was sent meanwhile is emptied from there."""
    room = selectors.room_for(request.user, slug)
    if not selectors.is_member(room, request.user):
        # Left the room (in another tab, say): no socket, the way back in instead.
        return render(request, "rooms/room.html#join", {"room": room})
    context = {
        "room": room,
        "key": fragments.new_key(),  # used only by a page that has no draft to keep
        "preserve": True,
    }
    if "after" in request.GET:
        # A page rendered before this release keeps its seq inside the element it swaps out,
        # and asks with it: its copy carries one, or its new socket could not resume at all.
        try:
            context["old_page_seq"] = min(max(int(request.GET["after"]), 0), room.last_seq)
        except ValueError:
            context["old_page_seq"] = 0
    return render(request, "rooms/room.html#socket", context)


@require_GET
def room_messages(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Older messages, above the ones the page has."""
    room = selectors.room_for(request.user, slug)
    try:
        before = int(request.GET.get("before", ""))
    except ValueError:
        before = None
    page, older_than = selectors.latest_messages(room, before=before)
    other = selectors.direct_other(room, request.user) if room.kind == Room.Kind.DIRECT else None
    context = {
        "room": room,
        "title": _title(room, other),
        "chat_messages": page,
        "older_than": older_than,
    }
    if request.htmx:
        return render(request, "rooms/room.html#message-batch", context)
    return redirect(room)


@require_POST
def room_post(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Posting without the socket (no JavaScript): the same service, then back to the room."""
    room = selectors.room_for(request.user, slug)
    try:
        services.message_post(
            room=room,
            author=request.user,
            body=request.POST.get("body", ""),
            key=request.POST.get("key", ""),
        )
    except services.Refused as refusal:
        messages.error(request, str(refusal))
    return redirect(room)


@require_POST
def room_join(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    room = selectors.room_for(request.user, slug)
    try:
        services.room_join(room=room, member=request.user)
    except services.Refused as refusal:
        messages.error(request, str(refusal))
        return redirect("room_directory")
    return redirect(room)


@require_POST
def room_leave(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    room = selectors.room_for(request.user, slug)
    try:
        services.room_leave(room=room, member=request.user)
    except services.Refused as refusal:
        messages.error(request, str(refusal))
        return redirect(room)
    messages.info(request, f"You have left {room.name}.")
    return redirect("room_directory")


@require_POST
def room_invite(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    room = selectors.room_for(request.user, slug)
    context = {"room": room, "is_owner": True}
    try:
        membership = services.room_invite(
            room=room, inviter=request.user, username=request.POST.get("username", "")
        )
        context["invited"] = membership.member
    except services.Refused as refusal:
        context["invite_error"] = str(refusal)
    if request.htmx:
        return render(request, "rooms/room.html#invite", context)
    if "invite_error" in context:
        messages.error(request, context["invite_error"])
    else:
        messages.success(request, f"{context['invited'].name} is now in this room.")
    return redirect(room)


@require_GET
def viewer_stylesheet(request: HtmxHttpRequest) -> HttpResponse:
    """Styles this member's own messages as theirs. Messages are rendered once for everybody
    and carry their author's id; this stylesheet is the only part that knows the viewer."""
    response = render(
        request, "rooms/viewer.css", {"member_id": request.user.pk}, content_type="text/css"
    )
    response["Cache-Control"] = "private, max-age=86400"
    response["Vary"] = "Cookie"
    return response
