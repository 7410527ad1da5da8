from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.services import LOGGED_OUT, member_group, session_tag
from parley.fragments import notice_fragment


class MemberConsumer(AsyncWebsocketConsumer):
    """The socket every page of a signed-in member keeps open.

    It carries fragments meant for one member wherever they are (their sidebar, and later
    presence and incoming calls). Each open tab is one socket in the member's group.
    MembersOnly has already refused anonymous sockets before this runs.
    """

    async def connect(self) -> None:
        self.group = member_group(self.scope["user"].pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Nothing is sent up this socket yet; say so rather than drop the frame silently.
        await self.send(text_data=notice_fragment("That message could not be understood."))

    async def member_fragment(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def session_ended(self, event: dict) -> None:
        if event["session"] == session_tag(self.scope["session"].session_key):
            await self.close(LOGGED_OUT)
