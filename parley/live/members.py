"""Reaching a member's open pages, whatever feature has something to tell them."""

import hashlib
import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# Closes a socket for good: htmx's ws extension does not reconnect after it.
LOGGED_OUT = 4001
# The process-wide group every process's hub subscribes to once (parley.live.hub): its events
# carry one fragment and the ids of the members whose member sockets should have it.
MEMBERS_GROUP = "parley-members"


def member_group(member_id: int) -> str:
    return f"member-{member_id}"


def session_tag(session_key: str | None) -> str:
    """Names a session on the channel layer without putting its key there."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:24]


def member_push(*, member_id: int, html: str) -> None:
    """Send an already rendered fragment to every open tab of one member.

    The fragment is swapped into those pages by the htmx ws extension, by id.
    """
    async_to_sync(get_channel_layer().group_send)(
        member_group(member_id), {"type": "member.fragment", "html": html}
    )


def members_event(*, member_ids: Iterable[int], html: str) -> dict:
    return {"type": "members.fragment", "member_ids": sorted(set(member_ids)), "html": html}


def members_push(*, member_ids: Iterable[int], html: str) -> None:
    """Send one rendered fragment to every open tab of each of these members, in one event.

    The event goes to every process once; each process's hub writes the string to its own
    member sockets of those ids, so nobody else's socket ever sees it.
    """
    event = members_event(member_ids=member_ids, html=html)
    if event["member_ids"]:
        async_to_sync(get_channel_layer().group_send)(MEMBERS_GROUP, event)
