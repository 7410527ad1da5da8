"""Every WebSocket route of the site, gathered from the apps."""

from accounts.routing import websocket_urlpatterns as accounts_routes

websocket_urlpatterns = [*accounts_routes]
