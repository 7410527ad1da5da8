"""Every WebSocket route of the site, gathered from the apps."""

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from calls.routing import websocket_urlpatterns as calls_routes
from parley.consumers import MemberConsumer
from rooms.routing import websocket_urlpatterns as rooms_routes


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other path (`/ws/nothing/`, `/ws/rooms/abc/`): refused at the handshake (403), as
    a page that is not there is a 404. Without it the router raises, and every such request
    costs an error with a traceback in the log and an HTTP 500."""

    channel_layer_alias = None  # it never hears anything, so it needs no channel

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    path("ws/member/", MemberConsumer.as_asgi()),
    *rooms_routes,
    *calls_routes,
    re_path(r"", NoSuchSocket.as_asgi()),
]
