"""The room socket: live messages in, rendered fragments out.

Delivery guarantees, per socket: every message of the room reaches the page once, in seq order.
The page says on every (re)open which seq it has; the socket sends what came after from the
database, then live messages from the hub. A live message it has already sent is dropped; one
that arrives after a gap (a message it never got) makes it read the gap from the database.
The hub never waits for those reads: while a socket reads, live messages queue on it.
"""

import asyncio
import json
import logging
from collections import deque

from channels.db import database_sync_to_async
from django.conf import settings

from parley.fragments import notice_fragment
from parley.live.members import LOGGED_OUT
from parley.live.sessions import RECHECK, SocketSession
from parley.live.sockets import LiveSocket, in_a_task
from parley.live.transport import UNSENT_BYTES
from rooms import fragments, selectors, services
from rooms.hub import get_hub
from rooms.presence import room_presence, room_presence_changed

logger = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
CATCH_UP_LIMIT = 500
# What a socket keeps of the room's live messages while it cannot send them (it is reading from
# the database, or its page is slow): at most this many bytes of their HTML, the oldest dropped
# first but never the newest. A gap is read from the database, so dropping loses nothing; it
# bounds what a frozen tab holds alive, which the count alone did not (500 long messages are
# some 12 MB).
PENDING_BYTES = 1024 * 1024
# A catch-up goes out in frames of at most fragments.FRAME_BYTES, each sent once the socket's
# unsent bytes are down to about one frame: a slow page is not aborted by the bound on them
# (SOCKET_UNSENT_LIMIT). A page that reads nothing for PACE_WAIT seconds is sent the frame
# anyway, and the bound closes it as it closes any frozen tab.
PACE_POLL = 0.02
PACE_WAIT = 10.0
# Closes a room socket for good: the member has left the room.
GONE = 4003
LOGGED_OUT_NOTICE = "You have logged out. Log in again to go on chatting."
# A send the server could not save (the database or Redis failing): the draft stays, with this.
NOT_SAVED = "Not sent: the server could not save your message just now. Press Send to try again."
# A draft the page still holds when its socket reopens, that never reached the database: the
# send was lost with the old socket (or never made), and nothing will send it by itself.
NOT_SENT_YET = "Not sent yet: the connection dropped. Press Send to send it."
# Closes a room socket that could not read from the database: the page reconnects and says
# again where it is, so whatever it lacks is read once the database answers.
TRY_AGAIN = 1011
SIGNED_OUT_NOTICE = (
    "You are no longer logged in here: your password changed or your account was closed. "
    "Log in again to go on chatting."
)


class RoomConsumer(LiveSocket):
    # Events reach room sockets through the hub, so a socket needs no channel of its own.
    channel_layer_alias = None

    async def connect(self) -> None:
        self.member = self.scope["user"]
        self.member_id = self.member.pk
        self.session = SocketSession(self.scope)
        self.rechecking: asyncio.Task | None = None
        room_id = self.scope["url_route"]["kwargs"]["room_id"]
        self.room = await database_sync_to_async(selectors.room_of_member)(room_id, self.member)
        if self.room is None:
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.sent_seq: int | None = None  # the newest seq this page has; None until it says
        # Live messages not yet delivered: they came before the page said where it is, or while
        # this socket was reading from the database. Whoever holds the lock delivers them.
        self.pending: deque[dict] = deque()
        self.pending_bytes = 0
        self.lock = asyncio.Lock()  # held while this socket reads from the database and sends
        self.catcher: asyncio.Task | None = None
        self.composer_key = ""  # the idempotency key in this page's composer
        self.joined = True  # from here on, leave() has something to undo
        self.accepted = False  # nothing may be sent before (daphne raises)
        await get_hub().join(self.room.pk, self.room.group, self)
        await room_presence.arrive(self.room.pk, self.member_id)
        await self.accept()
        self.accepted = True
        room_presence_changed(self.room.pk)

    async def leave(self) -> None:
        if not getattr(self, "joined", False):
            return
        if self.catching_up:
            self.catcher.cancel()
        await get_hub().leave(self.room.pk, self)
        if await room_presence.depart(self.room.pk, self.member_id):
            room_presence_changed(self.room.pk)

    # --- From the page ---------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        frame = self.parse(text_data)
        if frame is None:
            await self.send(text_data=notice_fragment("That message could not be understood."))
        elif frame.get("action") == "resume":
            await self.resume(frame.get("after"), frame.get("key"), frame.get("body"))
        elif frame.get("action") == "send":
            await self.post(frame.get("body"), frame.get("key"))
        else:
            await self.send(text_data=notice_fragment("That message could not be understood."))

    @staticmethod
    def parse(text: str | None) -> dict | None:
        if text is None or len(text) > MAX_FRAME:
            return None
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[" nested past the parser
            return None
        return frame if isinstance(frame, dict) else None

    async def post(self, body: object, key: object) -> None:
        key = key if isinstance(key, str) else ""
        try:
            await database_sync_to_async(services.message_post)(
                room=self.room, author=self.member, body=body, key=key, announce=get_hub().send_soon
            )
        except services.Refused as refusal:
            await self.keep_draft(body, key, str(refusal))
            return
        except Exception:
            # Never a silent loss: the sender sees it was not sent, the draft and its key stay
            # (a retry that did reach the database after all is not saved twice).
            logger.exception("Room %s: saving a message failed", self.room.pk)
            await self.keep_draft(body, key, NOT_SAVED)
            return
        await self.empty_composer()

    async def keep_draft(self, body: object, key: str, error: str) -> None:
        kept = body if isinstance(body, str) else ""
        self.composer_key = key or fragments.new_key()
        await self.send(
            text_data=fragments.composer(
                room=self.room, key=self.composer_key, body=kept, error=error
            )
        )

    async def empty_composer(self) -> None:
        self.composer_key = fragments.new_key()
        await self.send(text_data=fragments.composer(room=self.room, key=self.composer_key))

    async def resume(self, after: object, key: object = "", body: object = "") -> None:
        try:
            after = int(after)
        except (TypeError, ValueError):
            after = -1
        if after < 0:
            await self.send(text_data=notice_fragment("That message could not be understood."))
            return
        # The resume frame carries the composer's key and draft: a draft already saved (sent
        # before the socket closed, or queued and sent on another socket) is emptied.
        self.composer_key = key if isinstance(key, str) else ""
        try:
            saved = await database_sync_to_async(services.message_was_saved)(
                author=self.member, key=self.composer_key, body=body
            )
            if saved:
                await self.empty_composer()
            elif isinstance(body, str) and body.strip():
                await self.keep_draft(body, self.composer_key, NOT_SENT_YET)
            async with self.lock:
                self.sent_seq = after
                await self.send_from_database()
                await self.deliver_pending()
        except Exception:
            logger.exception("Room %s: resuming a socket failed", self.room.pk)
            await self.close(TRY_AGAIN)

    # --- From the room (through the hub) ---------------------------------------------------

    async def room_event(self, event: dict) -> None:
        kind = event["type"]
        if kind == "room.message":
            # The hub hands each message to every socket of the room in turn, so this must not
            # wait for the database: a socket that is reading from it keeps the message for later.
            self.pending.append(event)
            self.pending_bytes += len(event["html"])
            # The newest stays, whatever its size: what it follows is then a gap, read from the
            # database; dropped with the rest, nothing would tell this socket it lacks them.
            while len(self.pending) > 1 and (
                len(self.pending) > CATCH_UP_LIMIT or self.pending_bytes > PENDING_BYTES
            ):
                self.take_pending()
            if self.sent_seq is None or self.lock.locked() or self.catching_up:
                return
            if (
                len(self.pending) == 1
                and event["seq"] <= self.sent_seq + 1
                and not self.backed_up()  # else the catcher paces it, and the hub need not wait
            ):
                try:
                    async with self.lock:  # free, so taken without waiting
                        await self.deliver_pending()
                except Exception:
                    logger.exception("Room %s: delivering to a socket failed", self.room.pk)
                    await self.close(TRY_AGAIN)
            else:
                self.catcher = asyncio.ensure_future(self.catch_up())
        elif kind == "room.catch_up":
            # The hub missed messages (it subscribed late): read whatever this page lacks.
            if self.sent_seq is not None:
                self.catcher = asyncio.ensure_future(self.catch_up())
        elif kind == "room.presence":
            # The hub hands it out even while this socket is being accepted; the socket's own
            # arrival is announced right after, to everybody, so one before that is not missed.
            if self.accepted:
                await self.send(text_data=event["html"])
        elif kind == "room.access":
            await self.room_access(event)
        elif kind == "room.left" and event["member_id"] == self.member_id:
            await self.send(text_data=notice_fragment("You have left this room.", level="info"))
            await self.close(GONE)
        elif kind == "session.ended" and self.session.ended_by(event):
            await self.send(text_data=notice_fragment(LOGGED_OUT_NOTICE, level="info"))
            await self.close(LOGGED_OUT)
        elif kind == RECHECK and event["member_id"] == self.member_id:
            # It reads the database, and the hub must not wait for that.
            self.rechecking = asyncio.ensure_future(self.recheck_session(event))

    async def recheck_session(self, event: dict) -> None:
        try:
            if not await in_a_task(self.session.still_signs_in)(event):
                await self.send(text_data=notice_fragment(SIGNED_OUT_NOTICE, level="info"))
                await self.close(LOGGED_OUT)
        except Exception:
            logger.exception("Room %s: checking a socket's session failed", self.room.pk)

    async def room_access(self, event: dict) -> None:
        """A direct conversation became read-only, or writable again: the composer follows."""
        self.room.is_read_only = event["read_only"]
        if self.room.is_read_only:
            await self.send(text_data=event["html"])
        else:
            await self.empty_composer()

    @property
    def catching_up(self) -> bool:
        return self.catcher is not None and not self.catcher.done()

    async def catch_up(self) -> None:
        """Read what is missing from the database, then deliver what came meanwhile."""
        try:
            async with self.lock:
                await self.send_from_database()
                await self.deliver_pending()
        except Exception:
            logger.exception("Room %s: catching a socket up failed", self.room.pk)
            await self.close(TRY_AGAIN)  # it resumes from what it has shown, once it can

    async def deliver_pending(self) -> None:
        while self.pending:
            await self.deliver(self.take_pending())

    def take_pending(self) -> dict:
        event = self.pending.popleft()
        self.pending_bytes -= len(event["html"])
        return event

    async def deliver(self, event: dict) -> None:
        seq = event["seq"]
        if seq <= self.sent_seq:
            return  # the page has it already
        if seq == self.sent_seq + 1:
            await self.paced_send(event["html"])
            self.sent_seq = seq
        else:
            await self.send_from_database()  # a gap: read what is missing, in order
        self.mark_read_soon()
        if (
            event.get("author_id") == self.member_id
            and event.get("key")
            and event["key"] == self.composer_key
        ):
            await self.empty_composer()  # sent from this page, on a socket it no longer has

    async def send_from_database(self) -> None:
        batch = await database_sync_to_async(selectors.messages_after)(
            self.room, self.sent_seq, CATCH_UP_LIMIT
        )
        while batch:
            for frame, last in fragments.message_frames(batch):
                await self.paced_send(frame)
                self.sent_seq = last
                self.mark_read_soon()
            if len(batch) < CATCH_UP_LIMIT:
                break
            batch = await database_sync_to_async(selectors.messages_after)(
                self.room, self.sent_seq, CATCH_UP_LIMIT
            )

    def unsent(self) -> int | None:
        """Bytes sent to this socket that the page has not taken yet (None: unknown here)."""
        unsent_bytes = self.scope.get(UNSENT_BYTES)
        return None if unsent_bytes is None else unsent_bytes()

    @staticmethod
    def pace_below() -> int:
        return min(fragments.FRAME_BYTES, settings.SOCKET_UNSENT_LIMIT // 2)

    def backed_up(self) -> bool:
        unsent = self.unsent()
        return unsent is not None and unsent > self.pace_below()

    async def paced_send(self, frame: str) -> None:
        """Send once the page has taken what it was sent before, or PACE_WAIT has passed."""
        if self.backed_up():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PACE_WAIT
            # Polled: Twisted's transport says nothing when it drains.
            while self.backed_up() and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(PACE_POLL)
        await self.send(text_data=frame)

    def mark_read_soon(self) -> None:
        """What this page has shown counts as read (the hub writes it, for many at once)."""
        get_hub().read(self.room.pk, self.member_id, self.sent_seq)
