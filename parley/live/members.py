"""Reaching a member's open pages, whatever feature has something to tell them."""

import hashlib

from parley.live.announce import group_send

# Closes a socket for good: htmx's ws extension does not reconnect after it.
LOGGED_OUT = 4001


def member_group(member_id: int) -> str:
    return f"member-{member_id}"


def session_tag(session_key: str | None) -> str:
    """Names a session on the channel layer without putting its key there."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:24]


def member_push(*, member_id: int, html: str) -> None:
    """Send an already rendered fragment to every open tab of one member.

    The fragment is swapped into those pages by the htmx ws extension, by id.
    """
    group_send(member_group(member_id), {"type": "member.fragment", "html": html})
