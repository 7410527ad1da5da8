"""Whether a member is online, in a call, or when they were last seen, as their contacts see it.

A member is online while any of their member sockets (`/ws/member/`, one per open tab, opened by
every signed-in page) is open, in any server process. The member socket (parley/consumers.py)
calls `presence_socket_opened` and `presence_socket_closed`; the counting across processes is
parley.live.presence's, under one key per member.

- The first socket anywhere makes the member online; their contacts are told.
- The last socket closing makes them offline: `User.last_seen_at` is saved, contacts are told.
- A server process killed with SIGKILL closes nothing: its entries stop being refreshed and
  another process's sweep finds them expired, saves `last_seen_at` and tells the contacts, within
  PRESENCE_TTL + PRESENCE_SWEEP seconds of the kill (45 + 5 = 50 s in production).
- A tab that vanished without a close (a laptop lid) is closed by daphne's keepalive: after
  `--ping-interval` seconds without a frame (20 s by default, checked every 2 s) daphne pings, and
  closes the socket when no pong comes within `--ping-timeout` (30 s by default): within 52 s.

A change is rendered once (templates/accounts/presence.html) and pushed, as one event to every
process, to the member sockets of the member's accepted contacts only (parley.live.members
.members_push): nobody else's socket ever carries it.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.template.loader import get_template, render_to_string
from django.utils import timezone
from django.utils.timesince import timesince

from accounts.models import Contact
from parley.live.members import members_push
from parley.live.presence import Presence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    kind: str  # "online", "in-call" or "offline"
    last_seen: datetime | None = None

    @property
    def is_online(self) -> bool:
        return self.kind != "offline"

    @property
    def text(self) -> str:
        if self.kind == "online":
            return "Online"
        if self.kind == "in-call":
            return "In a call"
        return last_seen_text(self.last_seen)


def last_seen_text(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "Offline"
    now = now or timezone.now()
    local_now, local_when = timezone.localtime(now), timezone.localtime(when)
    if now - when < timedelta(minutes=1):
        return "Last seen just now"
    if now - when < timedelta(hours=12) or local_when.date() == local_now.date():
        return f"Last seen {timesince(when, now, depth=1)} ago"
    if local_when.date() == local_now.date() - timedelta(days=1):
        return "Last seen yesterday"
    if now - when < timedelta(days=7):
        return f"Last seen on {local_when:%A}"
    return f"Last seen on {local_when.day} {local_when:%B %Y}"


async def _gone_elsewhere(key: str, member_ids: set[int]) -> None:
    """Members whose last entry expired (their process died): offline, in one process only."""
    for member_id in member_ids:
        await database_sync_to_async(presence_went_offline)(member_id=member_id)


async def _back(key: str, member_ids: set[int]) -> None:
    for member_id in member_ids:
        await database_sync_to_async(presence_announce)(member_id=member_id)


member_presence = Presence("members", on_gone=_gone_elsewhere, on_back=_back)


def online_ids(member_ids: set[int]) -> set[int]:
    """Which of these members have a page open now, in any server process.

    Callable from sync code (a view rendering the contact list), in any thread."""
    return {m for _, m in member_presence.present_now((m, m) for m in member_ids)}


def status_of(members) -> dict[int, Status]:
    """The status of each member (User objects with last_seen_at and in_call loaded)."""
    here = online_ids({m.pk for m in members})
    return {
        m.pk: Status("in-call" if m.in_call else "online")
        if m.pk in here
        else Status("offline", m.last_seen_at)
        for m in members
    }


# --- Changes, each announced to the member's contacts after it commits ----------------------


async def presence_socket_opened(*, member_id: int) -> None:
    """A member socket of `member_id` opened (in this process)."""
    if await member_presence.arrive(member_id, member_id):
        await database_sync_to_async(presence_announce)(member_id=member_id)


async def presence_socket_closed(*, member_id: int) -> None:
    """A member socket of `member_id` closed (in this process), however it ended."""
    if await member_presence.depart(member_id, member_id):
        await database_sync_to_async(presence_went_offline)(member_id=member_id)


def presence_went_offline(*, member_id: int) -> None:
    """The member's last page closed (or their process died): remember when, tell contacts."""
    get_user_model().objects.filter(pk=member_id).update(last_seen_at=timezone.now())
    transaction.on_commit(lambda: presence_announce(member_id=member_id))


def presence_set_in_call(*, member_id: int, in_call: bool) -> None:
    """The member is in a call, or no longer: saved, and their contacts see "In a call"."""
    get_user_model().objects.filter(pk=member_id).update(in_call=in_call)
    transaction.on_commit(lambda: presence_announce(member_id=member_id))


def presence_fragment(member) -> str:
    """The member's presence as an out-of-band fragment for their contacts' pages."""
    status = status_of([member])[member.pk]
    return render_to_string(
        "accounts/presence.html", {"member_id": member.pk, "status": status, "oob": True}
    )


def contacts_presence_fragment(*, member) -> str:
    """The presence of each of the member's contacts as it is now, out-of-band fragments in one
    string: what a page that just opened its member socket may have missed.

    Every signed-in page lists the member's contacts in its sidebar, so each has a target."""
    contacts = list(
        get_user_model()
        .objects.filter(pk__in=Contact.objects.filter(member=member).values("other_id"))
        .only("pk", "last_seen_at", "in_call")
    )
    statuses = status_of(contacts)
    template = get_template("accounts/presence.html")
    return "".join(
        template.render({"member_id": c.pk, "status": statuses[c.pk], "oob": True})
        for c in contacts
    )


def presence_announce(*, member_id: int) -> None:
    """Push the member's presence as it is now to their contacts' member sockets.

    Never raises: the change is saved whether or not the channel layer takes the news."""
    try:
        member = get_user_model().objects.filter(pk=member_id).first()
        if member is None:
            return
        contacts = set(
            Contact.objects.filter(member_id=member_id).values_list("other_id", flat=True)
        )
        if contacts:
            members_push(member_ids=contacts, html=presence_fragment(member))
    except Exception:
        logger.exception("Announcing the presence of member %s failed", member_id)
