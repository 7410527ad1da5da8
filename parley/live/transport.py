"""A socket whose browser stopped reading costs the server a bounded amount of memory.

Where outgoing bytes pile up: a consumer's `send` under daphne never waits. It goes straight to
`WebSocketProtocol.handle_reply`, autobahn frames the message and writes it to the Twisted
transport, which keeps whatever the kernel's socket buffer cannot take in a buffer of its own,
without limit (Twisted's `FileDescriptor.dataBuffer` and `_tempDataBuffer`). A frozen tab, or a
proxy that stopped reading from a stalled client, therefore grows the server process by every
frame sent to it until daphne's keepalive gives up on it (about 50 s), and in a busy room that
is megabytes per socket. Nothing else piles up: because `send` never waits, the consumers keep
reading their channel-layer queues, so those stay empty (the in-memory layer's hold at most 100
events each, channels-redis core's 10,000 with a 60 s expiry), and the room hub hands messages to
every socket without waiting for any. Other members are not slowed either; only memory is at
stake.

So `BoundedSend` (ASGI middleware, outside everything else) looks at the transport's unsent bytes
before each frame goes out; over settings.SOCKET_UNSENT_LIMIT the connection is aborted instead:
Twisted drops its buffer at once (a close frame could never be read), the consumer hears a
disconnect (1006) and leaves everything it joined, and the page, when it wakes, reconnects and
catches up from the database like after any network break. A socket costs at most the limit plus
one frame.

It reaches daphne's protocol the way `FreedOnClose` does: daphne hands the application
`partial(Server.handle_reply, protocol)` as `send`. Under any other server (or a test's
communicator) `send` is something else and this does nothing. No daphne subclass and no wrapper
command: `daphne parley.asgi:application` runs it, as the service units do.
"""

import logging
from functools import partial

from django.conf import settings

logger = logging.getLogger(__name__)

# The scope key of a function returning the socket's unsent bytes (None: unknown).
UNSENT_BYTES = "parley.unsent_bytes"


def _buffered(transport):
    """The Twisted TCP transport under `transport` (a TLS transport wraps one), or None when it
    is not one whose buffer we know."""
    for _ in range(3):
        if transport is None:
            return None
        if hasattr(transport, "_tempDataLen") and hasattr(transport, "dataBuffer"):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def unsent_bytes(transport) -> int | None:
    """Bytes written to a Twisted transport that the kernel has not taken yet (None: unknown)."""
    tcp = _buffered(transport)
    if tcp is None:
        return None
    return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen


def abort(protocol) -> None:
    """Drop the connection and, now, the bytes it could not send. Twisted's abort stops writing
    but keeps the buffer until the transport itself is freed, after the consumer has left."""
    protocol.dropConnection(abort=True)
    tcp = _buffered(getattr(protocol, "transport", None))
    if tcp is not None:
        tcp.dataBuffer, tcp.offset, tcp._tempDataBuffer, tcp._tempDataLen = b"", 0, [], 0


class BoundedSend:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        limit = settings.SOCKET_UNSENT_LIMIT
        protocol = send.args[0] if isinstance(send, partial) and send.args else None
        if scope["type"] != "websocket" or not limit or not hasattr(protocol, "dropConnection"):
            return await self.inner(scope, receive, send)
        aborted = False

        async def bounded(message):
            nonlocal aborted
            if message["type"] == "websocket.send":
                if aborted:
                    return
                unsent = unsent_bytes(getattr(protocol, "transport", None))
                if unsent is not None and unsent > limit:
                    aborted = True
                    logger.warning(
                        "Closing a socket that stopped reading (%s bytes unsent, limit %s): %s",
                        unsent,
                        limit,
                        scope.get("path"),
                    )
                    abort(protocol)
                    return
            await send(message)

        # For a consumer that sends a burst (a room's catch-up) to pace it: it waits for the
        # transport to drain instead of piling frames up until this aborts the socket.
        scope = {**scope, UNSENT_BYTES: lambda: unsent_bytes(getattr(protocol, "transport", None))}
        return await self.inner(scope, receive, bounded)
