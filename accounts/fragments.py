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


def contact_list_fragment(member) -> str:
    """The member's contact list alone (with each contact's presence and conversation's unread
    badge), swapped in by id: for a page whose rows are out of date. Request notices stay as
    they are: a page shows them only as requests come."""
    return render_to_string(
        "accounts/sidebar_contacts.html",
        {"sidebar_contacts": selectors.sidebar_contacts(member), "oob": True},
    )
