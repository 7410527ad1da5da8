from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from parley.live.members import member_group, session_tag


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
