import logging

from django.db import transaction
from django.db.models import Q
from django.http import Http404

from accounts import selectors
from accounts.events import contact_ended
from accounts.models import Block, Contact, ContactRequest, User
from parley.limits import count_within
from parley.live.announce import group_send, group_send_each
from parley.live.members import member_group, session_tag
from parley.live.sessions import RECHECK
from rooms import services as room_services
from rooms.models import Room

# One kind of refusal across the site: a view that calls accounts and rooms catches one.
from rooms.services import Refused

logger = logging.getLogger(__name__)


def member_logged_out(*, member, session_key: str | None) -> None:
    """Close every socket of the session that logged out: its member socket and room sockets.

    The member's other sessions (other browsers, other devices) keep theirs.
    """

    event = {"type": "session.ended", "session": session_tag(session_key)}
    rooms = Room.objects.filter(memberships__member=member).only("pk")
    # A layer that is down is logged and skipped: the logout itself must still happen.
    group_send_each([member_group(member.pk), *(room.group for room in rooms)], event)


def member_credentials_changed(
    *, member, kept_session: tuple[str | None, str | None] | None = None
) -> None:
    """After the commit, ask every socket of the member to check that its session still signs
    them in (parley.live.sessions); those whose session no longer does close for good.

    `kept_session` is (old key, new key) of the session that made the change and stays signed
    in: Django gave it a new key, and its sockets carry on under that one.
    """

    kept, kept_as = kept_session or (None, None)
    event = {
        "type": RECHECK,
        "member_id": member.pk,
        "kept": session_tag(kept) if kept else "",
        "kept_as": session_tag(kept_as) if kept_as else "",
    }

    def announce():
        rooms = Room.objects.filter(memberships__member=member).only("pk")
        group_send_each([member_group(member.pk), *(room.group for room in rooms)], event)

    transaction.on_commit(announce)


# --- Contacts --------------------------------------------------------------------------------
# A pair's changes take both members' rows lock (in id order), so two tabs, a double click or
# two members asking each other at the same moment come out as exactly one effect.
#
# A block is never revealed: a request to someone who blocked you is kept undelivered and looks
# sent; blocking someone looks to them like being removed (or a request that was never answered
# or was declined), and their direct conversation says what a removal says.

CONTACT_REQUEST_LIMIT = 20
CONTACT_REQUEST_WINDOW_SECONDS = 60 * 60
# A group nobody is in. An undelivered request announces to it what a delivered one would
# announce to the recipient, so the sender's answer takes as long either way.
NOBODY = 0


def _member(username: str) -> User:
    member = selectors.member_named(username or "")
    if member is None:
        shown = (username or "").strip()[:50]
        raise Refused(f"Nobody here is called “{shown}”.")
    return member


def _lock_pair(a, b) -> None:
    list(User.objects.select_for_update().filter(pk__in=[a.pk, b.pk]).order_by("pk"))


def _request_rate_check(member) -> None:
    key = f"parley:contact-requests:{member.pk}"
    if count_within(key, CONTACT_REQUEST_WINDOW_SECONDS) > CONTACT_REQUEST_LIMIT:
        raise Refused(
            f"You have sent {CONTACT_REQUEST_LIMIT} contact requests in the last hour. "
            "Wait a while before you send more."
        )


def contacts_changed(member_id: int, *, to: int | None = None) -> None:
    """After commit, tell the member's open pages that their contacts or requests changed
    (`to` another group instead: see NOBODY). Each page's member socket renders the new list,
    badge and notices (accounts.fragments.contacts_fragment) with that page's own row marked
    as the one it shows: a list rendered once for all tabs would mark none."""

    def announce():
        # Never raises (the layer may be away): what was saved stays saved, and the pages catch
        # up on their next load.
        group_send(member_group(member_id if to is None else to), {"type": "member.contacts"})

    transaction.on_commit(announce)


def _contacts_make(a, b) -> None:
    ContactRequest.objects.filter(Q(sender=a, recipient=b) | Q(sender=b, recipient=a)).delete()
    Contact.objects.bulk_create(
        [Contact(member=a, other=b), Contact(member=b, other=a)], ignore_conflicts=True
    )
    room_services.direct_open(a=a, b=b)
    contacts_changed(a.pk)
    contacts_changed(b.pk)


def contact_request_send(*, sender, username: str) -> str:
    """Ask the member called `username` to be a contact. Returns "sent", or "contact" when
    they had asked first (asking each other makes two members contacts)."""
    recipient = _member(username)
    if recipient.pk == sender.pk:
        raise Refused("That is you. Ask someone else to be your contact.")
    with transaction.atomic():
        _lock_pair(sender, recipient)
        if Block.objects.filter(blocker=sender, blocked=recipient).exists():
            raise Refused(f"You have blocked {recipient.name}. Unblock them first.")
        if Contact.objects.filter(member=sender, other=recipient).exists():
            raise Refused(f"{recipient.name} is already one of your contacts.")
        if ContactRequest.objects.filter(sender=sender, recipient=recipient).exists():
            return "sent"  # asking twice is one request
        if ContactRequest.objects.filter(sender=recipient, recipient=sender).exists():
            _contacts_make(sender, recipient)
            return "contact"
        _request_rate_check(sender)
        delivered = not Block.objects.filter(blocker=recipient, blocked=sender).exists()
        ContactRequest.objects.create(sender=sender, recipient=recipient, delivered=delivered)
        contacts_changed(recipient.pk, to=None if delivered else NOBODY)
    return "sent"


def _request_to(member, request_id: int) -> ContactRequest:
    """A request addressed to `member` that they can see, locked with its pair; else 404."""
    request = (
        ContactRequest.objects.filter(pk=request_id, recipient=member, delivered=True)
        .select_related("sender")
        .first()
    )
    if request is None:
        raise Http404("No such request.")
    _lock_pair(member, request.sender)
    # Another tab may have answered it while this one waited for the lock.
    if not ContactRequest.objects.filter(pk=request.pk).exists():
        raise Http404("No such request.")
    return request


def contact_request_accept(*, member, request_id: int) -> User:
    """Accept a request addressed to `member`: the two become contacts. Returns the sender."""
    with transaction.atomic():
        request = _request_to(member, request_id)
        _contacts_make(member, request.sender)
    return request.sender


def contact_request_decline(*, member, request_id: int) -> User:
    """Decline a request addressed to `member`. The sender is not told (it stays unanswered
    to them, until they look again and can ask again). Returns the sender."""
    with transaction.atomic():
        request = _request_to(member, request_id)
        request.delete()
        contacts_changed(member.pk)
    return request.sender


def contact_request_cancel(*, sender, username: str) -> None:
    """Take back a request the member sent (nothing happens if there is none)."""
    recipient = _member(username)
    with transaction.atomic():
        _lock_pair(sender, recipient)
        request = ContactRequest.objects.filter(sender=sender, recipient=recipient).first()
        if request is not None:
            request.delete()
            contacts_changed(recipient.pk, to=None if request.delivered else NOBODY)


def _contact_end(a, b) -> bool:
    """Undo the pair's contact, closing their conversation; whether they were contacts."""
    removed, _ = Contact.objects.filter(Q(member=a, other=b) | Q(member=b, other=a)).delete()
    if removed:
        room_services.direct_close(a=a, b=b)
        contact_ended.send(sender=Contact, a=a, b=b)
        contacts_changed(a.pk)
        contacts_changed(b.pk)
    return bool(removed)


def contact_remove(*, member, username: str) -> None:
    """Either of two contacts ends it; their conversation stays, read-only."""
    other = _member(username)
    with transaction.atomic():
        _lock_pair(member, other)
        _contact_end(member, other)


def member_block(*, blocker, username: str) -> User:
    """Block a member: no more contact, requests, messages or presence between the two.

    To the blocked member it looks like a removal (or an unanswered request)."""
    blocked = _member(username)
    if blocked.pk == blocker.pk:
        raise Refused("You cannot block yourself.")
    with transaction.atomic():
        _lock_pair(blocker, blocked)
        Block.objects.get_or_create(blocker=blocker, blocked=blocked)
        were_contacts = _contact_end(blocker, blocked)
        requests = list(
            ContactRequest.objects.filter(
                Q(sender=blocker, recipient=blocked) | Q(sender=blocked, recipient=blocker)
            )
        )
        for request in requests:
            request.delete()
            if not were_contacts:
                # What a declined or taken-back request would announce, and nothing more.
                contacts_changed(request.recipient_id, to=None if request.delivered else NOBODY)
    return blocked


def member_unblock(*, blocker, username: str) -> User:
    """Lift a block. It brings back no contact: either may ask again."""
    blocked = _member(username)
    Block.objects.filter(blocker=blocker, blocked=blocked).delete()
    return blocked
