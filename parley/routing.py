"""Every WebSocket route of the site, gathered from the apps."""

from accounts.routing import websocket_urlpatterns as accounts_routes
from rooms.routing import websocket_urlpatterns as rooms_routes

websocket_urlpatterns = [*accounts_routes, *rooms_routes]
