from parley.live.announce import group_send_each
from parley.live.members import member_group, session_tag


def member_logged_out(*, member, session_key: str | None) -> None:
    """Close every socket of the session that logged out: its member socket and room sockets.

    The member's other sessions (other browsers, other devices) keep theirs.
    """
    from rooms.models import Room

    event = {"type": "session.ended", "session": session_tag(session_key)}
    rooms = Room.objects.filter(memberships__member=member).only("pk")
    # A layer that is down is logged and skipped: the logout itself must still happen.
    group_send_each([member_group(member.pk), *(room.group for room in rooms)], event)
