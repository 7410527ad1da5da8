"""The base of every Parley socket: whatever happens, what it joined is left.

Channels calls `disconnect` only when the client closes. When a handler raises, the consumer's
run ends with the exception and `disconnect` never runs, so a socket that had joined the hub,
groups or presence would stay there for good (a member shown online forever, because the
presence refresher keeps re-adding them). Here the whole run sits in a try/finally that calls
`leave`, once, whichever way the run ends: the client closed, a handler raised, or the server
cancelled the socket.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class LiveSocket(AsyncWebsocketConsumer):
    async def leave(self) -> None:
        """Leave whatever this socket joined. Runs once; a subclass overrides it and must cope
        with a socket that never got as far as joining everything."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: the run may end because it was cancelled, and leaving must still finish.
            await asyncio.shield(self._leave_once())

    async def disconnect(self, code: int) -> None:
        await self._leave_once()

    async def _leave_once(self) -> None:
        if getattr(self, "_left", False):
            return
        self._left = True
        try:
            await self.leave()
        except Exception:
            logger.exception("%s: leaving failed", type(self).__name__)


def in_a_task(work):
    """`work` (sync, reads the database) for a socket's background task to await.

    database_sync_to_async closes connections outside the context the work ran in: the
    connection it opens is handed back to the awaiting task and closed at the next event a
    consumer handles. A background task handles no events, and one cancelled while the work
    runs (the socket closed) never even gets the connection back: it is lost to the pool
    until a garbage collection. So the work closes its own connection, in its own context.
    """

    def run(*args, **kwargs):
        try:
            return work(*args, **kwargs)
        finally:
            close_old_connections()

    return database_sync_to_async(run)
