"""The HTML fragments that room sockets push, each rendered from rooms/room.html's partials."""

import secrets

from django.template.loader import render_to_string

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


def sidebar(memberships) -> str:
    """A member's whole list of rooms, for when they join or leave one."""
    return render_to_string("rooms/sidebar.html", {"sidebar_rooms": memberships, "oob": True})
