"""Reading rooms: who may see what, and the queries the pages and sockets make."""

import hashlib
import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.validators import slug_re
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from rooms import fragments
from rooms.models import Membership, Message, Room, direct_pair

PAGE_SIZE = 50


def room_for(member, slug: str) -> Room:
    """The room, if `member` may see it: public rooms to everyone, private ones to members.

    Anything else is a 404, so a private room does not exist for those outside it."""
    room = Room.objects.filter(slug=slug).first()
    if room is None or (room.is_private and not is_member(room, member)):
        raise Http404("No such room.")
    return room


def room_of_member(room_id: int, member) -> Room | None:
    """The room if `member` belongs to it (what a room socket may open), else None."""
    return Room.objects.filter(pk=room_id, memberships__member=member).first()


def is_member(room: Room, member) -> bool:
    return Membership.objects.filter(room=room, member=member).exists()


def membership_of(room: Room, member) -> Membership | None:
    return Membership.objects.filter(room=room, member=member).first()


def directory(query: str = "") -> QuerySet[Room]:
    rooms = Room.objects.filter(is_private=False).annotate(member_count=Count("memberships"))
    if query:
        rooms = rooms.filter(Q(name__icontains=query) | Q(topic__icontains=query))
    return rooms.order_by("-last_activity_at", "pk")


def rooms_of(member, *, kind: str | None = Room.Kind.GROUP) -> list[Membership]:
    """The member's rooms (by default only group rooms: direct conversations are listed with
    the contacts), each with `unread`: messages they have not seen. kind=None: all of them."""
    memberships = Membership.objects.filter(member=member)
    if kind is not None:
        memberships = memberships.filter(room__kind=kind)
    memberships = list(memberships.select_related("room").order_by("room__name", "room__pk"))
    for membership in memberships:
        membership.unread = membership.room.last_seq - membership.last_read_seq
    return memberships


def room_ids_of(member) -> set[int]:
    return set(Membership.objects.filter(member=member).values_list("room_id", flat=True))


DIGEST_LENGTH = 16
SLUG_LENGTH = Room._meta.get_field("slug").max_length
_DIGEST = re.compile(rf"[0-9a-f]{{{DIGEST_LENGTH}}}")


def rooms_digest(room_ids) -> str:
    """A short digest of a set of rooms. A page says with it which rooms its sidebar has a row
    (and so an unread badge) for, and its member socket compares it with the member's rooms
    when it opens: a badge pushed for a row the page lacks is an error in the page (htmx finds
    no target), so a page whose rows differ is sent new ones first."""
    text = ",".join(str(pk) for pk in sorted(room_ids))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def page_rooms_digest(value: object) -> str:
    """A digest a page sent (URL parameters: anything may come), or '' if it is not one."""
    return value if isinstance(value, str) and _DIGEST.fullmatch(value) else ""


def page_room_slug(value: object) -> str:
    """The slug of the room a page says it shows (a URL parameter: anything may come), or ''
    if it is not a slug. It only picks which of the member's own rows is marked as current."""
    is_slug = isinstance(value, str) and len(value) <= SLUG_LENGTH and slug_re.match(value)
    return value if is_slug else ""


@dataclass(frozen=True)
class MemberRooms:
    """A member's rooms as read at one moment, each with `unread`, and what a page shows of
    them: the list of group rooms (the direct conversations' rows are the contact list's)."""

    memberships: list[Membership]

    @property
    def ids(self) -> set[int]:
        return {m.room_id for m in self.memberships}

    @property
    def direct_ids(self) -> set[int]:
        return {m.room_id for m in self.memberships if m.room.kind == Room.Kind.DIRECT}

    @property
    def groups(self) -> list[Membership]:
        """The group rooms: the sidebar's list (direct conversations are the contacts')."""
        return [m for m in self.memberships if m.room.kind == Room.Kind.GROUP]

    @property
    def digest(self) -> str:
        """Of every room a page showing these has a row for (rooms_digest)."""
        return rooms_digest(self.ids)

    def sidebar(self, here: str = "") -> str:
        """The list of group rooms, swapped in by id, each row with its count (the row of
        `here`, the room the page shows, marked as current), and the digest of every room the
        page has a row for once it has this list."""
        return fragments.sidebar(self.groups, digest=self.digest, here=here)

    def badges(self, room_ids: set[int] | None = None) -> str:
        """The unread badge of each room (or of those of `room_ids`), in one fragment."""
        return "".join(
            fragments.unread(m.room_id, m.unread)
            for m in self.memberships
            if room_ids is None or m.room_id in room_ids
        )


def member_rooms(member) -> MemberRooms:
    return MemberRooms(rooms_of(member, kind=None))


def unread_badges(member, room_ids: set[int] | None = None) -> str:
    """The unread badge of each of the member's rooms (or of those of `room_ids`), in one
    fragment ('' for none)."""
    return member_rooms(member).badges(room_ids)


def unread_counts(room_id: int, member_ids: set[int]) -> dict[int, int]:
    """How many messages of the room each of these members has not seen."""
    rows = Membership.objects.filter(room_id=room_id, member_id__in=member_ids).values_list(
        "member_id", "room__last_seq", "last_read_seq"
    )
    return {member_id: last_seq - read for member_id, last_seq, read in rows}


def direct_room(a, b) -> Room | None:
    """The conversation of two members, if they have one."""
    return Room.objects.filter(direct_pair=direct_pair(a.pk, b.pk)).first()


def direct_other(room: Room, member):
    """The other member of a direct conversation, as `member` sees it (None if gone)."""
    return (
        get_user_model()
        .objects.filter(memberships__room=room)
        .exclude(pk=member.pk)
        .only("pk", "username", "display_name", "last_seen_at", "in_call")
        .first()
    )


def direct_unread(member) -> dict[int, Membership]:
    """The member's direct conversations by the other member's id, each with `unread`."""
    found = {}
    for membership in Membership.objects.filter(
        member=member, room__kind=Room.Kind.DIRECT
    ).select_related("room"):
        low, high = (int(part) for part in membership.room.direct_pair.split(":"))
        membership.unread = membership.room.last_seq - membership.last_read_seq
        found[high if low == member.pk else low] = membership
    return found


def latest_messages(room: Room, before: int | None = None) -> tuple[list[Message], int | None]:
    """A page of messages in seq order, and the seq to load older ones from (None: no more)."""
    messages = room.messages.select_related("author").order_by("-seq")
    if before is not None:
        messages = messages.filter(seq__lt=before)
    page = list(messages[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE][::-1]
    return page, (page[0].seq if more else None)


def messages_after(room: Room, seq: int, limit: int) -> list[Message]:
    return list(room.messages.filter(seq__gt=seq).select_related("author").order_by("seq")[:limit])


def last_seq(room_id: int) -> int:
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def message_events(room_id: int, after: int, upto: int) -> list[dict]:
    """Messages after..upto as the hub hands them out, each rendered once."""
    messages = (
        Message.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto)
        .select_related("author", "room")
        .order_by("seq")
    )
    return [
        {
            "type": "room.message",
            "seq": m.seq,
            "html": fragments.message(m),
            "author_id": m.author_id,
            "key": "",
        }
        for m in messages
    ]


def online_members(room: Room, member_ids: set[int]) -> list:
    from django.contrib.auth import get_user_model

    members = get_user_model().objects.filter(pk__in=member_ids, memberships__room=room)
    return sorted(members, key=lambda m: m.name.casefold())


def presence_fragment(room: Room, member_ids: set[int]) -> str:
    return fragments.presence(
        room=room,
        online=online_members(room, member_ids),
        member_count=room.memberships.count(),
    )
