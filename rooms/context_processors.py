from django.utils.functional import SimpleLazyObject

from rooms import selectors


def sidebar(request):
    """The member's rooms for the sidebar, queried only if the page shows the sidebar."""
    if not request.user.is_authenticated:
        return {}

    return {
        "sidebar_rooms": SimpleLazyObject(lambda: selectors.rooms_of(request.user)),
        # Which rooms the page has rows for, for its member socket. Read by the socket's
        # element, which app.html renders before the sidebar: if a room is joined or left in
        # between, the digest differs from the member's rooms and the socket sends new rows as
        # it opens; it never claims a row the page does not have.
        "sidebar_rooms_digest": SimpleLazyObject(
            lambda: selectors.rooms_digest(selectors.room_ids_of(request.user))
        ),
    }
