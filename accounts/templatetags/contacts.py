from django import template
from django.template.loader import render_to_string

from accounts import selectors
from accounts.presence import status_of

register = template.Library()


@register.simple_tag(takes_context=True)
def contact_presence(context, member) -> str:
    """`member`'s presence fragment if the one looking is their contact, else nothing."""
    viewer = context["request"].user
    if member is None or not selectors.are_contacts(viewer, member):
        return ""
    status = status_of([member])[member.pk]
    return render_to_string(
        "accounts/presence.html", {"status": status, "member_id": member.pk, "oob": False}
    )
