"""ASGI middleware for Parley's WebSockets."""

from channels.middleware import BaseMiddleware


class MembersOnly(BaseMiddleware):
    """Refuse the handshake of a socket without a signed-in member.

    Sits inside AuthMiddlewareStack, so scope["user"] is known; an anonymous socket is closed
    before it is accepted (the browser sees HTTP 403) and no consumer code ever runs for it.
    """

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is not None and user.is_authenticated:
            return await self.inner(scope, receive, send)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})
