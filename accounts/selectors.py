"""Reading contacts: who is whose contact, what a member sees of another, the people search.

Blocks are read here so that they are never shown to the member who is blocked: to them, a
member who blocked them is someone who is not (or no longer) a contact.
"""

from dataclasses import dataclass, field

from django.db.models import Q

from accounts.models import Block, Contact, ContactRequest, User
from accounts.presence import Status, status_of
from rooms import selectors as room_selectors

SEARCH_LIMIT = 25
QUERY_MAX_LENGTH = 100


@dataclass(frozen=True)
class Relation:
    """What `other` is to the member looking: contact, sent, received, blocked (by the one
    looking) or none. `request_id` is the request to answer when `kind` is received."""

    kind: str
    request_id: int | None = None

    @property
    def label(self) -> str:
        return {
            "contact": "Contact",
            "sent": "Request sent",
            "received": "Wants to be your contact",
            "blocked": "Blocked by you",
        }.get(self.kind, "")


@dataclass
class ContactEntry:
    """One contact in the sidebar: their presence and the direct conversation's unread."""

    member: User
    status: Status
    room_slug: str = ""
    room_id: int | None = None
    unread: int = 0


@dataclass
class SidebarContacts:
    entries: list[ContactEntry] = field(default_factory=list)
    requests: list[ContactRequest] = field(default_factory=list)
    # Conversations with former contacts: not listed, but their unread badges must exist on
    # the page, since the member socket keeps every badge of every room of the member live.
    former: list = field(default_factory=list)


def contact_ids(member_id: int) -> set[int]:
    """The ids of a member's contacts: who may see their presence."""
    return set(Contact.objects.filter(member_id=member_id).values_list("other_id", flat=True))


def are_contacts(a, b) -> bool:
    return Contact.objects.filter(member=a, other=b).exists()


def by_name(members) -> list[User]:
    return sorted(members, key=lambda m: (m.name.casefold(), m.pk))


def contacts_of(member) -> list[User]:
    """The member's contacts in name order."""
    return by_name(User.objects.filter(pk__in=contact_ids(member.pk)))


def incoming_requests(member) -> list[ContactRequest]:
    """Requests waiting for the member's answer (never those kept from them by a block)."""
    return list(
        ContactRequest.objects.filter(recipient=member, delivered=True)
        .select_related("sender")
        .order_by("created_at", "pk")
    )


def outgoing_requests(member) -> list[ContactRequest]:
    """Requests the member sent and nobody answered; undelivered ones look the same."""
    return list(
        ContactRequest.objects.filter(sender=member)
        .select_related("recipient")
        .order_by("created_at", "pk")
    )


def blocked_by(member) -> list[User]:
    """Whom the member has blocked."""
    return by_name(
        User.objects.filter(pk__in=Block.objects.filter(blocker=member).values("blocked"))
    )


def sidebar_contacts(member) -> SidebarContacts:
    contacts = contacts_of(member)
    statuses = status_of(contacts)
    rooms = room_selectors.direct_unread(member)
    entries = []
    for contact in contacts:
        entry = ContactEntry(member=contact, status=statuses[contact.pk])
        membership = rooms.get(contact.pk)
        if membership is not None:
            entry.room_id, entry.room_slug = membership.room_id, membership.room.slug
            entry.unread = membership.unread
        entries.append(entry)
    listed = {contact.pk for contact in contacts}
    former = [m for other_id, m in rooms.items() if other_id not in listed]
    return SidebarContacts(entries=entries, requests=incoming_requests(member), former=former)


def relations(viewer, others) -> dict[int, Relation]:
    """What each of `others` is to `viewer`. A member who blocked `viewer` is "none" (or
    "sent", if `viewer` asked them): exactly what a member who never answered looks like."""
    ids = {other.pk for other in others}
    found = {pk: Relation("none") for pk in ids}
    for pk in Contact.objects.filter(member=viewer, other__in=ids).values_list(
        "other_id", flat=True
    ):
        found[pk] = Relation("contact")
    for pk in ContactRequest.objects.filter(sender=viewer, recipient__in=ids).values_list(
        "recipient_id", flat=True
    ):
        found[pk] = Relation("sent")
    for request_id, pk in ContactRequest.objects.filter(
        recipient=viewer, sender__in=ids, delivered=True
    ).values_list("pk", "sender_id"):
        found[pk] = Relation("received", request_id)
    for pk in Block.objects.filter(blocker=viewer, blocked__in=ids).values_list(
        "blocked_id", flat=True
    ):
        found[pk] = Relation("blocked")
    return found


def relation(viewer, other) -> Relation:
    return relations(viewer, [other])[other.pk]


def people_search(viewer, query: str) -> list[User]:
    """Members whose username or display name contains `query` (never matched on email),
    without the one searching and without anyone who blocked them. At most SEARCH_LIMIT + 1,
    so the page can say there are more."""
    query = query.strip()[:QUERY_MAX_LENGTH]
    if not query:
        return []
    return list(
        User.objects.filter(is_active=True)
        .filter(Q(username__icontains=query) | Q(display_name__icontains=query))
        .exclude(pk=viewer.pk)
        .exclude(pk__in=Block.objects.filter(blocked=viewer).values("blocker"))
        .only("pk", "username", "display_name")
        .order_by("username")[: SEARCH_LIMIT + 1]
    )


def member_named(username: str) -> User | None:
    return User.objects.filter(username__iexact=username.strip(), is_active=True).first()
