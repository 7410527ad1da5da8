"""The HTML fragments about contacts that the member socket pushes."""

from django.template.loader import render_to_string

from accounts import selectors


def contacts_fragment(member) -> str:
    """One member's contact list, request badge and request notices, each swapped in by id.

    Rendered per member (the unread counts and requests are theirs); these changes are rare.
    """
    return render_to_string(
        "accounts/live.html", {"sidebar_contacts": selectors.sidebar_contacts(member), "oob": True}
    )
