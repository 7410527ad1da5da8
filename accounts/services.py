from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def member_group(member_id: int) -> str:
    return f"member-{member_id}"


def member_push(*, member_id: int, html: str) -> None:
    """Send an already rendered fragment to every open tab of one member.

    The fragment is swapped into those pages by the htmx ws extension, by id.
    """
    async_to_sync(get_channel_layer().group_send)(
        member_group(member_id), {"type": "member.fragment", "html": html}
    )
