"""Everything that changes rooms, and the announcements that follow a change.

Views and consumers call these and stay thin. A change is announced only after its transaction
commits, so nobody is told of something the database does not hold.
"""

import hashlib
import logging
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from parley.limits import count_within
from parley.live.announce import group_send
from parley.live.members import member_group
from rooms import fragments
from rooms.models import MESSAGE_MAX_LENGTH, Membership, Message, Room, direct_pair

logger = logging.getLogger(__name__)

# A member may post this many messages in this many seconds, across all rooms and processes.
FLOOD_LIMIT = 10
FLOOD_WINDOW_SECONDS = 5

# Sends an event to a channel-layer group: parley.live.announce.group_send (which logs a layer
# that is down and returns), or a room hub's send_soon.
Announce = Callable[[str, dict], None]


class Refused(Exception):
    """A change the person asked for and may not have; the text is for them."""


# The same words for both members and whatever the cause (a removed contact or a block), so
# that the conversation never tells one of them that the other blocked them.
READ_ONLY_REASON = "You are no longer contacts, so this conversation is read-only."


# --- Rooms -----------------------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:80] or "room"
    slug, n = base, 1
    while Room.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def room_create(*, creator, name: str, topic: str = "", is_private: bool = False) -> Room:
    with transaction.atomic():
        room = Room.objects.create(
            name=name,
            slug=_unique_slug(name),
            topic=topic,
            is_private=is_private,
            created_by=creator,
        )
        Membership.objects.create(room=room, member=creator, role=Membership.Role.OWNER)
        member_rooms_changed(creator.pk)
    return room


def room_join(*, room: Room, member) -> Membership:
    if room.is_private:
        raise Refused("This room is private: its owner has to invite you.")
    membership, created = Membership.objects.get_or_create(room=room, member=member)
    if created:
        member_rooms_changed(member.pk)
    return membership


def room_invite(*, room: Room, inviter, username: str) -> Membership:
    if not Membership.objects.filter(
        room=room, member=inviter, role=Membership.Role.OWNER
    ).exists():
        raise Refused("Only the room's owner can invite people.")
    invitee = get_user_model().objects.filter(username__iexact=username.strip()).first()
    if invitee is None:
        # Cut, as accounts' refusals are: a name is at most 150 characters, so the rest is junk.
        raise Refused(f"Nobody here is called “{username.strip()[:50]}”.")
    membership, created = Membership.objects.get_or_create(room=room, member=invitee)
    if not created:
        raise Refused(f"{invitee.name} is already in this room.")
    member_rooms_changed(invitee.pk)
    return membership


def room_leave(*, room: Room, member) -> None:
    """Leave a room. An owner who leaves hands the room to the member who joined first."""
    if room.kind == Room.Kind.DIRECT:
        raise Refused("A direct conversation cannot be left.")
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(room=room, member=member).first()
        if membership is None:
            return
        membership.delete()
        if membership.role == Membership.Role.OWNER:
            heir = room.memberships.order_by("joined_at", "pk").first()
            if heir is not None:
                heir.role = Membership.Role.OWNER
                heir.save(update_fields=["role"])
        transaction.on_commit(lambda: _announce_left(room, member))
        member_rooms_changed(member.pk)


def _announce_left(room: Room, member) -> None:
    # Every socket of this member in this room closes for good: they are no longer a member.
    group_send(room.group, {"type": "room.left", "member_id": member.pk})


# --- Direct conversations --------------------------------------------------------------------
# Whether two members may write to each other is decided by accounts (contacts); rooms only
# keeps the one conversation of a pair and opens or closes it when told.


def direct_open(*, a, b) -> Room:
    """The one conversation of two members, created if need be, and writable."""
    pair = direct_pair(a.pk, b.pk)
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(direct_pair=pair).first()
        if room is None:
            try:
                with transaction.atomic():
                    room = Room.objects.create(
                        name="Direct conversation",
                        slug=f"direct-{pair.replace(':', '-')}",
                        is_private=True,
                        kind=Room.Kind.DIRECT,
                        direct_pair=pair,
                    )
            except IntegrityError:  # the other member opened it at the same moment
                room = Room.objects.select_for_update().get(direct_pair=pair)
        for member in (a, b):
            _, joined = Membership.objects.get_or_create(room=room, member=member)
            if joined:
                member_rooms_changed(member.pk)  # their socket starts counting unread here
        if room.is_read_only:
            Room.objects.filter(pk=room.pk).update(is_read_only=False)
            room.is_read_only = False
            transaction.on_commit(lambda: _announce_access(room))
    return room


def direct_close(*, a, b) -> Room | None:
    """Make the pair's conversation read-only (history kept); None if they never had one."""
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(direct_pair=direct_pair(a.pk, b.pk)).first()
        if room is not None and not room.is_read_only:
            Room.objects.filter(pk=room.pk).update(is_read_only=True)
            room.is_read_only = True
            transaction.on_commit(lambda: _announce_access(room))
    return room


def _announce_access(room: Room) -> None:
    # Every open page of the conversation swaps its composer: the read-only line is the same
    # for everybody (rendered once); a reopened composer needs a key per page, so each room
    # socket renders its own.
    html = fragments.composer(room=room, key="") if room.is_read_only else ""
    group_send(room.group, {"type": "room.access", "read_only": room.is_read_only, "html": html})


# --- Messages --------------------------------------------------------------------------------


def message_validate(body: object) -> str:
    """The body as it will be saved, or Refused with what is wrong."""
    if not isinstance(body, str):
        raise Refused("That message could not be understood.")
    body = body.strip()
    if not body:
        raise Refused("Write something first.")
    if len(body) > MESSAGE_MAX_LENGTH:
        raise Refused(
            f"Messages can be at most {MESSAGE_MAX_LENGTH:,} characters; yours has {len(body):,}."
        )
    return body


def _client_key(key: str, body: str) -> str:
    # A retry carries the same key and the same body. Another message typed while offline may
    # carry the same key (the composer only gets a fresh one from the server) but not the same
    # body, so it is a new message, not a duplicate.
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"{key[:60]}.{digest}"


def message_was_saved(*, author, key: str, body: str) -> bool:
    """Whether a send with this key and body reached the database (so it is not a draft)."""
    if not key or not isinstance(body, str) or not body.strip():
        return False
    client_key = _client_key(key, body.strip())
    return Message.objects.filter(author=author, client_key=client_key).exists()


def _flood_check(member) -> None:
    try:
        count = count_within(f"parley:flood:{member.pk}", FLOOD_WINDOW_SECONDS)
    except Exception:
        # The cache (Redis) is down or restarting: saving does not depend on it, so the limit
        # lets the message through rather than refuse every member while it is away.
        logger.warning("Counting member %s's messages failed; not limited", member.pk)
        return
    if count > FLOOD_LIMIT:
        raise Refused("You are sending messages too quickly. Wait a few seconds and try again.")


def message_post(
    *, room: Room, author, body: object, key: str = "", announce: Announce | None = None
) -> tuple[Message, bool]:
    """Save a message and announce it to the room. Returns (message, created).

    A send whose key and body match a saved message returns that message (created False) and
    announces nothing: a retry after a reconnect never makes a second copy.

    `announce(group, event)` sends the announcement after the commit. By default it waits here
    until the channel layer has it; a room socket passes its hub's, which hands the event to
    the event loop and returns at once, so the database thread is free for the next post.
    """
    body = message_validate(body)
    client_key = _client_key(key, body) if key else ""
    if client_key:
        existing = Message.objects.filter(author=author, client_key=client_key).first()
        if existing is not None:
            return existing, False
    if not Membership.objects.filter(room=room, member=author).exists():
        raise Refused("You are not a member of this room.")
    _flood_check(author)
    try:
        with transaction.atomic():
            # The row lock numbers this room's messages one after another, in commit order.
            locked = Room.objects.select_for_update().get(pk=room.pk)
            if locked.is_read_only:
                # Read under the lock: a conversation closed a moment ago takes nothing more.
                raise Refused(READ_ONLY_REASON)
            seq = locked.last_seq + 1
            now = timezone.now()
            Room.objects.filter(pk=room.pk).update(last_seq=seq, last_activity_at=now)
            message = Message.objects.create(
                room=room, seq=seq, author=author, body=body, client_key=client_key
            )
            Membership.objects.filter(room=room, member=author).update(last_read_seq=seq)
            transaction.on_commit(lambda: message_announce(message, key=key, announce=announce))
    except IntegrityError:
        # The same send raced itself (two sockets of one page); the first one won.
        existing = Message.objects.filter(author=author, client_key=client_key).first()
        if existing is None:
            raise
        return existing, False
    room.last_seq = seq
    return message, True


def message_post_row(
    *, room: Room, author, body: str, seen_by=(), kind: str = Message.Kind.CALL
) -> Message:
    """Save a row the site writes about an event (a call's outcome) and announce it.

    Not a member's message: no flood limit, and written even to a read-only conversation
    (the call happened while they were contacts). It counts as unread for every member but
    those in `seen_by` (ids): a missed call is news to the callee, not to the caller. One who
    has unread messages before it gets it as unread too: a count cannot skip a row."""
    with transaction.atomic():
        locked = Room.objects.select_for_update().get(pk=room.pk)
        seq = locked.last_seq + 1
        Room.objects.filter(pk=room.pk).update(last_seq=seq, last_activity_at=timezone.now())
        message = Message.objects.create(room=room, seq=seq, author=author, body=body, kind=kind)
        Membership.objects.filter(
            room=room, member_id__in=list(seen_by), last_read_seq=seq - 1
        ).update(last_read_seq=seq)
        transaction.on_commit(lambda: message_announce(message))
    return message


def message_announce(message: Message, key: str = "", announce: Announce | None = None) -> None:
    """Render the message once and send that one string to the room's group.

    The author's id and the send's key come along (not in the HTML), so that each of the
    author's sockets whose composer still holds that key can empty it, whichever socket the send
    travelled on (after a reconnect it may not be the one the page has now).
    """
    (announce or group_send)(
        message.room.group,
        {
            "type": "room.message",
            "seq": message.seq,
            "html": fragments.message(message),
            "author_id": message.author_id,
            "key": key,
        },
    )


def room_mark_read(*, room: Room, member, seq: int) -> None:
    Membership.objects.filter(room=room, member=member, last_read_seq__lt=seq).update(
        last_read_seq=seq
    )


def room_mark_read_many(*, room_id: int, reads: dict[int, int]) -> None:
    """Record what many members have seen in one room: one UPDATE per distinct seq."""
    by_seq: dict[int, list[int]] = {}
    for member_id, seq in reads.items():
        by_seq.setdefault(seq, []).append(member_id)
    with transaction.atomic():
        for seq, member_ids in by_seq.items():
            Membership.objects.filter(
                room_id=room_id, member_id__in=member_ids, last_read_seq__lt=seq
            ).update(last_read_seq=seq)


def member_rooms_changed(member_id: int) -> None:
    """Tell the member's open pages that their list of rooms changed (after commit)."""

    def announce():
        group_send(member_group(member_id), {"type": "member.rooms"})

    transaction.on_commit(announce)
