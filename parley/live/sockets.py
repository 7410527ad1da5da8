"""The base of every Parley socket: whatever happens, what it joined is left.

Channels calls `disconnect` only when the client closes. When a handler raises, the consumer's
run ends with the exception and `disconnect` never runs, so a socket that had joined the hub,
groups or presence would stay there for good (a member shown online forever, because the
presence refresher keeps re-adding them). Here the whole run sits in a try/finally that calls
`leave`, once, whichever way the run ends: the client closed, a handler raised, or the server
cancelled the socket. Leaving runs in a task of its own, which no cancel of the socket's run
reaches: it always finishes (`LiveSocket._leave_once`).

It also counts the socket against the caps on open sockets (parley/live/caps.py) before the
subclass's `connect` runs: a socket over a cap is accepted only to be told why, and closed with
CROWDED (4029): an htmx page shows the notice and stays closed until it is reloaded; the call
page's script retries with its backoff. The slot is given back with everything else in `leave`.
"""

import asyncio
import logging

from channels.db import aclose_old_connections, database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import close_old_connections

from parley.fragments import notice_fragment
from parley.live.caps import MEMBER, address_of, socket_caps

logger = logging.getLogger(__name__)

# Closes a socket over a cap (as HTTP's 429). autobahn lets an application close only with 1000
# or 3000-4999, so not 1013 ("try again later"): the htmx ws extension does not reconnect on
# it, and the notice says to reload; the call page's script retries with its own backoff.
CROWDED = 4029
TOO_MANY_TABS = (
    "Too many open tabs: Parley keeps at most {cap} live connections per member. "
    "Close some tabs or windows, then reload this page."
)
TOO_MANY_FROM_ADDRESS = (
    "Too many live connections from your network address (at most {cap}). "
    "Close some tabs, or wait a little, then reload this page."
)


class LiveSocket(AsyncWebsocketConsumer):
    async def leave(self) -> None:
        """Leave whatever this socket joined. Runs once; a subclass overrides it and must cope
        with a socket that never got as far as joining everything."""

    def crowded_frame(self, text: str) -> str:
        """What a socket over a cap is told before it closes; a socket whose page is not
        htmx (the call socket's script reads JSON) says it in its own format."""
        return notice_fragment(text)

    async def websocket_connect(self, message) -> None:
        member_id = self.scope["user"].pk
        self._slot, full = await socket_caps.take(
            member_id=member_id, address=address_of(self.scope)
        )
        if self._slot is None:
            if full == MEMBER:
                text = TOO_MANY_TABS.format(cap=settings.SOCKETS_PER_MEMBER)
            else:
                text = TOO_MANY_FROM_ADDRESS.format(cap=settings.SOCKETS_PER_ADDRESS)
            logger.warning("Socket refused: member %s is at the %s cap", member_id, full)
            self._crowded = True
            # Accepted so that the page can be told why: a refused handshake is a bare 403.
            await self.accept()
            await self.send(text_data=self.crowded_frame(text))
            await self.close(CROWDED)
            return
        await super().websocket_connect(message)

    async def websocket_receive(self, message) -> None:
        if getattr(self, "_crowded", False):
            return  # what the page sent before it heard it was refused: it never connected
        await super().websocket_receive(message)

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The run may end because it was cancelled: leaving goes on regardless.
            await asyncio.shield(self._leave_once())

    async def disconnect(self, code: int) -> None:
        await asyncio.shield(self._leave_once())

    def _leave_once(self) -> asyncio.Task:
        """The socket's one leaving, in a task of its own, started by whichever comes first:
        the client's close (`disconnect`) or the end of the run.

        Whoever waits for it may be cancelled halfway: the server cancels an application that
        is still busy some time after its client went (daphne: `application_close_timeout`,
        10 s, and again every second after), a test's communicator after its `disconnect`
        timeout (1 s). When many sockets close at once their leavings queue for the one
        database thread, so the last ones are still waiting then. A leaving cancelled with them
        would stop halfway, after the count of the member's sockets went down and before their
        contacts were told: they would show the member online until a reload, and the socket
        would stay in the hub and keep its slot under the caps. So nobody's cancel reaches it.
        """
        leaving = getattr(self, "_leaving", None)
        if leaving is None:
            leaving = self._leaving = asyncio.create_task(self._leave())
            _leavings.add(leaving)  # held until done: the loop keeps only weak references
            leaving.add_done_callback(_leavings.discard)
        return leaving

    async def _leave(self) -> None:
        try:
            await self.leave()
        except Exception:
            logger.exception("%s: leaving failed", type(self).__name__)
        slot = getattr(self, "_slot", None)
        if slot is not None:
            self._slot = None
            try:
                await socket_caps.give_back(slot)
            except Exception:
                logger.exception("%s: giving back its socket slot failed", type(self).__name__)
        # This task handles no event after this, where Channels would close the database
        # connection its work used (see in_a_task): closed here, back to the pool.
        await aclose_old_connections()


# Leavings under way (see LiveSocket._leave_once).
_leavings: set[asyncio.Task] = set()


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
