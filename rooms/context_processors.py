from django.utils.functional import SimpleLazyObject

from rooms import selectors


def sidebar(request):
    """The member's rooms for the sidebar, queried only if the page shows the sidebar."""
    if not request.user.is_authenticated:
        return {}

    def rooms():
        memberships = list(selectors.rooms_of(request.user))
        for membership in memberships:
            membership.unread = membership.room.last_seq - membership.last_read_seq
        return memberships

    return {"sidebar_rooms": SimpleLazyObject(rooms)}
