"""The HTML fragments that room sockets push, each rendered from rooms/room.html's partials."""

import secrets

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from rooms.models import Message, Room


def new_key() -> str:
    """An idempotency key for the next send from a composer."""
    return secrets.token_urlsafe(16)


def message(message: Message) -> str:
    """One message, as every member of the room receives it."""
    return messages([message])


def messages(batch: list[Message]) -> str:
    """Messages in seq order, appended to the log, with the page's resume point moved on."""
    return render_to_string(
        "rooms/pushed_messages.html", {"chat_messages": batch, "last_seq": batch[-1].seq}
    )


# A frame of several messages (a catch-up) carries at most this many bytes: well under daphne's
# 1 MiB cap on a WebSocket message and the per-socket bound on unsent bytes
# (settings.SOCKET_UNSENT_LIMIT, 1 MiB), so that a page far behind is sent what it lacks in
# pieces it can take, each moving its resume point on. One message (4,000 characters, at most
# some 20 KB once escaped) always fits.
FRAME_BYTES = 256 * 1024
# The frame's wrapper and its #room-seq update, on top of the messages.
_FRAME_OVERHEAD = 1024


def message_frames(batch: list[Message], limit: int = FRAME_BYTES) -> list[tuple[str, int]]:
    """`batch` (in seq order) as frames of at most `limit` bytes, each with the seq of its last
    message. Each is a complete pushed_messages.html, moving the page's resume point on: a page
    that drops mid-way resumes from the last one it showed."""
    frames, chunk, size = [], [], _FRAME_OVERHEAD
    for message in batch:
        html = render_to_string("rooms/room.html#message", {"message": message})
        length = len(html.encode())
        if chunk and size + length > limit:
            frames.append(_frame(chunk))
            chunk, size = [], _FRAME_OVERHEAD
        chunk.append((message.seq, html))
        size += length
    if chunk:
        frames.append(_frame(chunk))
    return frames


def _frame(chunk: list[tuple[int, str]]) -> tuple[str, int]:
    # Each piece is the output of the message partial, escaped there already.
    rendered = mark_safe("".join(html for _, html in chunk))  # noqa: S308
    last = chunk[-1][0]
    html = render_to_string(
        "rooms/pushed_messages.html", {"rendered_messages": rendered, "last_seq": last}
    )
    return html, last


def composer(
    *, room: Room, key: str, body: str = "", error: str = "", autofocus: bool = True
) -> str:
    """The sender's composer: emptied with a fresh key after a send, or kept with an error."""
    return render_to_string(
        "rooms/room.html#composer",
        {
            "room": room,
            "key": key,
            "body": body,
            "error": error,
            "autofocus": autofocus,
            "oob": True,
        },
    )


def presence(*, room: Room, online: list, member_count: int) -> str:
    return render_to_string(
        "rooms/room.html#presence",
        {"room": room, "online": online, "member_count": member_count, "oob": True},
    )


def unread(room_id: int, count: int) -> str:
    """A sidebar's unread badge for one room."""
    return render_to_string("rooms/unread.html", {"room_id": room_id, "unread": count, "oob": True})


def sidebar(memberships, digest: str = "", here: str = "") -> str:
    """A member's whole list of rooms, for when they join or leave one; `digest`: of all the
    rooms the page has rows for once it has this list (selectors.rooms_digest); `here`: the
    slug of the room the page shows, whose row is marked as current."""
    return render_to_string(
        "rooms/sidebar.html",
        {
            "sidebar_rooms": memberships,
            "sidebar_rooms_digest": digest,
            "current_room_slug": here,
            "oob": True,
        },
    )
