"""The HTML fragments about contacts that the member socket pushes."""

from django.template.loader import render_to_string

from accounts import selectors


def contacts_fragment(member, here: str = "") -> str:
    """One member's contact list, request badge and request notices, each swapped in by id;
    `here`: the slug of the conversation the page shows, whose row is marked as current.

    Rendered per page (the unread counts and requests are the member's, the current row the
    page's); these changes are rare.
    """
    return render_to_string("accounts/live.html", _context(member, here))


def contact_list_fragment(member, here: str = "") -> str:
    """The member's contact list alone (with each contact's presence and conversation's unread
    badge), swapped in by id: for a page whose rows are out of date. Request notices stay as
    they are: a page shows them only as requests come."""
    return render_to_string("accounts/sidebar_contacts.html", _context(member, here))


def _context(member, here: str) -> dict:
    return {
        "sidebar_contacts": selectors.sidebar_contacts(member),
        "current_room_slug": here,
        "oob": True,
    }
