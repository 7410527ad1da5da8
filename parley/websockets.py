"""ASGI middleware for Parley's WebSockets."""

from functools import partial

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


class FreedOnClose:
    """Under daphne, a closed connection's objects are freed at once, not by a full collection.

    daphne's objects for one WebSocket (about 55 of them, some 19 KiB) form two reference cycles
    that outlive the connection: autobahn resolves the protocol's `is_closed` with the protocol
    itself, and Twisted's HTTP channel keeps in its `requests` the request that was upgraded,
    which points back at it (and at the connection's transport). The connection lived as long as
    the socket, so the cycles are in the oldest generation, which parley/asgi.py's tuning
    collects rarely: a process whose sockets open and close grows by 19 KiB a socket until a
    full collection, which then stops it for 100-300 ms (docs/performance.md, "Presence",
    finding 3). So when the connection closes, both links are dropped; nothing reads them then.

    daphne hands the application `partial(Server.handle_reply, protocol)` as `send`; under any
    other server (or a test's communicator) `send` is something else and this does nothing.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        protocol = send.args[0] if isinstance(send, partial) and send.args else None
        is_closed = getattr(protocol, "is_closed", None)
        if hasattr(is_closed, "addBoth"):
            # The channel is the transport's producer until the transport is lost.
            http_channel = getattr(getattr(protocol, "transport", None), "producer", None)
            is_closed.addBoth(self.release, http_channel)
        return await self.inner(scope, receive, send)

    @staticmethod
    def release(protocol, http_channel) -> None:
        requests = getattr(http_channel, "requests", None)
        if isinstance(requests, list):
            requests.clear()
        # Returning None makes None the Deferred's result, in place of the protocol.
