"""Every WebSocket route of the site, gathered from the apps."""

from django.urls import path

from calls.routing import websocket_urlpatterns as calls_routes
from parley.consumers import MemberConsumer
from rooms.routing import websocket_urlpatterns as rooms_routes

websocket_urlpatterns = [
    path("ws/member/", MemberConsumer.as_asgi()),
    *rooms_routes,
    *calls_routes,
]
