import hashlib

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
    async_to_sync(get_channel_layer().group_send)(
        member_group(member_id), {"type": "member.fragment", "html": html}
    )


def member_logged_out(*, member, session_key: str | None) -> None:
    """Close every socket of the session that logged out: its member socket and room sockets.

    The member's other sessions (other browsers, other devices) keep theirs.
    """
    from rooms.models import Room

    event = {"type": "session.ended", "session": session_tag(session_key)}
    send = async_to_sync(get_channel_layer().group_send)
    send(member_group(member.pk), event)
    for room in Room.objects.filter(memberships__member=member).only("pk"):
        send(room.group, event)
