"""Fragments any part of the site pushes over a socket."""

from django.template.loader import render_to_string


def notice_fragment(text: str, *, level: str = "error") -> str:
    """A dismissible notice, appended to the page's notices when it arrives."""
    return render_to_string("includes/notice_pushed.html", {"text": text, "level": level})
