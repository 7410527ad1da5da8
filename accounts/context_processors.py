from django.utils.functional import SimpleLazyObject

from accounts import selectors


def contacts(request):
    """The member's contacts and requests for the sidebar, queried only if the page shows it."""
    if not request.user.is_authenticated:
        return {}
    return {"sidebar_contacts": SimpleLazyObject(lambda: selectors.sidebar_contacts(request.user))}
