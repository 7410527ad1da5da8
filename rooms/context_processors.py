from django.utils.functional import SimpleLazyObject

from rooms import selectors


def sidebar(request):
    """The member's rooms for the sidebar, queried only if the page shows the sidebar."""
    if not request.user.is_authenticated:
        return {}

    # One read of the member's rooms for the page: its sidebar's rows, and the digest its member
    # socket opens with, of the very rooms the page has rows for (if a room is joined or left
    # after this read, the digest differs from the member's rooms and the socket sends new
    # rows as it opens; it never claims a row the page does not have).
    rooms = SimpleLazyObject(lambda: selectors.member_rooms(request.user))
    return {
        "sidebar_rooms": SimpleLazyObject(lambda: rooms.groups),
        "sidebar_rooms_digest": SimpleLazyObject(lambda: rooms.digest),
    }
