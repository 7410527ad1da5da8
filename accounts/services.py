from django.db import transaction

from parley.live.announce import group_send_each
from parley.live.members import member_group, session_tag
from parley.live.sessions import RECHECK
from rooms.models import Room


def member_logged_out(*, member, session_key: str | None) -> None:
    """Close every socket of the session that logged out: its member socket and room sockets.

    The member's other sessions (other browsers, other devices) keep theirs.
    """

    event = {"type": "session.ended", "session": session_tag(session_key)}
    rooms = Room.objects.filter(memberships__member=member).only("pk")
    # A layer that is down is logged and skipped: the logout itself must still happen.
    group_send_each([member_group(member.pk), *(room.group for room in rooms)], event)


def member_credentials_changed(
    *, member, kept_session: tuple[str | None, str | None] | None = None
) -> None:
    """After the commit, ask every socket of the member to check that its session still signs
    them in (parley.live.sessions); those whose session no longer does close for good.

    `kept_session` is (old key, new key) of the session that made the change and stays signed
    in: Django gave it a new key, and its sockets carry on under that one.
    """

    kept, kept_as = kept_session or (None, None)
    event = {
        "type": RECHECK,
        "member_id": member.pk,
        "kept": session_tag(kept) if kept else "",
        "kept_as": session_tag(kept_as) if kept_as else "",
    }

    def announce():
        rooms = Room.objects.filter(memberships__member=member).only("pk")
        group_send_each([member_group(member.pk), *(room.group for room in rooms)], event)

    transaction.on_commit(announce)
