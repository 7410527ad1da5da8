"""Whether a member is online, in a call, or when they were last seen, as their contacts see it.

INTERIM (issue 7 in progress): `online_ids` knows nobody yet; the member-socket presence across
processes replaces it. The shape of `Status` and `status_of` is what the contact list renders.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.timesince import timesince


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


def online_ids(member_ids: set[int]) -> set[int]:
    """Which of these members have a page open now, in any server process."""
    return set()


def status_of(members) -> dict[int, Status]:
    """The status of each member (User objects with last_seen_at and in_call loaded)."""
    here = online_ids({m.pk for m in members})
    return {
        m.pk: Status("in-call" if m.in_call else "online")
        if m.pk in here
        else Status("offline", m.last_seen_at)
        for m in members
    }
