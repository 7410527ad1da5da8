from django.utils.functional import SimpleLazyObject

from rooms import selectors


def sidebar(request):
    """The member's rooms for the sidebar, queried only if the page shows the sidebar."""
    if not request.user.is_authenticated:
        return {}

    return {"sidebar_rooms": SimpleLazyObject(lambda: selectors.rooms_of(request.user))}
