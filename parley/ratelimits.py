"""Request-rate limits on the forms that write, for signed-in members.

allauth limits log-in, sign-up, password changes and resets itself; these are the rest: rooms,
messages posted without the socket, contacts and blocks, the profile, calls. One middleware
covers every such form by its URL name, before the view runs, so a request over a limit saves
nothing. It counts with `parley.limits.count_within`, the fixed window in the cache that the
flood limit on messages and the limit on contact requests already use: an atomic INCR in Redis
with REDIS_URL, shared by every process, and two cache calls a request. (allauth's helpers
count a sliding window but take a spin lock in the cache around every count, and their public
module is marked for deprecation; django-ratelimit would be a dependency for the same fixed
window.)

Over a limit: HTTP 429 with Retry-After. htmx requests get a notice, swapped into the page's
notices out of band and nothing else (base.html lets htmx swap a 429); others a page saying
to slow down.
"""

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from parley.limits import count_within

# A bucket: (requests, per seconds). Generous for a person, tight for a script.
BUCKETS = {
    "room-create": (10, 600),
    "room-membership": (30, 60),
    "message-form": (30, 60),
    "contacts": (30, 60),
    "profile": (10, 60),
    "call-start": (10, 60),
    "call-answer": (30, 60),
}
# Which bucket each form that writes counts in, by URL name.
WRITES = {
    "room_create": "room-create",
    "room_join": "room-membership",
    "room_leave": "room-membership",
    "room_invite": "room-membership",
    "room_post": "message-form",
    "contact_request": "contacts",
    "contact_add": "contacts",
    "contact_cancel": "contacts",
    "contact_accept": "contacts",
    "contact_decline": "contacts",
    "contact_remove": "contacts",
    "member_block": "contacts",
    "member_unblock": "contacts",
    "direct_chat": "contacts",
    "profile": "profile",
    "call_start": "call-start",
    "call_accept": "call-answer",
    "call_decline": "call-answer",
    "call_cancel": "call-answer",
    "call_hangup": "call-answer",
}

SLOW_DOWN = "You are doing that too often. Wait {wait} and try again; nothing was changed."


def _wait(seconds: int) -> str:
    return "a minute" if seconds <= 60 else f"{seconds // 60} minutes"


class WriteRateLimits:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method != "POST" or not settings.WRITE_RATE_LIMITS:
            return None
        match = request.resolver_match
        bucket = WRITES.get(match.url_name) if match else None
        if bucket is None or not request.user.is_authenticated:
            return None
        allowed, window = BUCKETS[bucket]
        if count_within(f"parley:rate:{bucket}:{request.user.pk}", window) <= allowed:
            return None
        return too_many(request, SLOW_DOWN.format(wait=_wait(window)), window)


def too_many(request, text: str, retry_after: int) -> HttpResponse:
    if getattr(request, "htmx", False):
        html = render_to_string("includes/notice_pushed.html", {"text": text, "level": "error"})
        response = HttpResponse(html, status=429)
        response["HX-Reswap"] = "none"  # the notice goes out of band; the form stays as it is
    else:
        response = render(request, "429.html", {"text": text}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
