"""The member socket: the one socket every page of a signed-in member keeps open.

It is wiring, not a feature: it gathers what several features have for one member wherever they
are (rooms' unread badges and room list, contacts' notices and presence, the member's call in the
slot at the top of every page). Each open tab is one socket. MembersOnly has already refused
anonymous sockets before this runs.

How fragments reach it:
- `parley.live.members.member_push(member_id=, html=)`: one member's tabs, through the member's
  channel-layer group (`member.fragment`).
- `parley.live.members.members_push(member_ids=, html=)`: many members' tabs, one event for all
  (presence changes), written by each process's hub to its own member sockets.
- `member.rooms` and `member.contacts` events: the member's rooms, or contacts and requests,
  changed. Each socket renders the new lists itself, with the row of the room its page shows
  (`here`, from its URL) marked as current.
"""

import logging
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from accounts.fragments import contact_list_fragment, contacts_fragment
from accounts.presence import (
    contacts_presence_fragment,
    presence_socket_closed,
    presence_socket_opened,
)
from calls import fragments as call_fragments
from calls.sweep import ensure_sweeping, release_sweeping
from parley.fragments import notice_fragment
from parley.live.hub import get_hub as get_live_hub
from parley.live.members import LOGGED_OUT, member_group
from parley.live.sessions import SocketSession
from parley.live.sockets import LiveSocket
from rooms import selectors
from rooms.hub import get_hub as get_room_hub
from rooms.models import room_group

logger = logging.getLogger(__name__)


class MemberConsumer(LiveSocket):
    async def connect(self) -> None:
        self.member = self.scope["user"]
        self.member_id = self.member.pk
        self.session = SocketSession(self.scope)
        self.group = member_group(self.member_id)
        self.watching: set[int] = set()
        # Which rooms the page has rows for, as it says ('' for a page that does not say).
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.page_rooms = selectors.page_rooms_digest((query.get("rooms") or [""])[0])
        # The room the page shows ('' for none): the lists this socket renders mark its row.
        self.here = selectors.page_room_slug((query.get("here") or [""])[0])
        # What the hub pushes waits here until the socket is accepted and has sent the page
        # what it may have missed: a push is newer than that, so it goes after it.
        self.held: deque[str] | None = deque()
        self.joined = True  # from here on, leave() has something to undo
        ensure_sweeping()  # overdue calls end while this process has sockets open
        await self.channel_layer.group_add(self.group, self.channel_name)
        await get_live_hub().add_member_socket(self)
        await self.watch_rooms()
        await presence_socket_opened(member_id=self.member_id)
        await self.accept()
        # Presence, unread counts and the member's call as of now, in one frame: the page may
        # have missed changes since it was rendered, or while its socket was away (htmx
        # reconnects, no reload).
        # Read after the socket joined the hub, so a change after this read is pushed after it.
        caught_up = await database_sync_to_async(self.catching_up)()
        if caught_up:
            await self.send(text_data=caught_up)
        while self.held:
            await self.send(text_data=self.held.popleft())
        self.held = None

    def catching_up(self) -> str:
        rooms = selectors.member_rooms(self.member)
        if self.page_rooms and self.page_rooms != selectors.rooms_digest(rooms.ids):
            # The member joined or left a room after the page was rendered (a Join clicked as
            # the page opened, an invitation, another tab), or while this socket was away: the
            # page lacks a row, or has one too many, and its badge would have no target. So it
            # gets its rows, with their counts: the rooms and the contacts (who have the direct
            # conversations' rows, and their presence).
            caught_up = contact_list_fragment(self.member, self.here) + rooms.sidebar(self.here)
        else:
            caught_up = contacts_presence_fragment(member=self.member) + rooms.badges()
        return caught_up + call_fragments.slot_catching_up(self.member)

    async def push(self, html: str) -> None:
        if self.held is not None:
            self.held.append(html)
        else:
            await self.send(text_data=html)

    async def leave(self) -> None:
        if not getattr(self, "joined", False):
            return
        # Presence first: it matters most, and the steps after it may fail with the layer.
        try:
            await presence_socket_closed(member_id=self.member_id)
        except Exception:
            logger.exception("Member %s: leaving presence failed", self.member_id)
        release_sweeping()
        await get_live_hub().remove_member_socket(self)
        for room_id in self.watching:
            await get_room_hub().unwatch(room_id, self)
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def watch_rooms(self, rooms: set[int] | None = None) -> set[int]:
        """Follow the unread counts of exactly the rooms the member is in now (or `rooms`);
        the rooms it began to follow."""
        if rooms is None:
            rooms = await database_sync_to_async(selectors.room_ids_of)(self.member)
        for room_id in self.watching - rooms:
            await get_room_hub().unwatch(room_id, self)
            self.watching.discard(room_id)
        added = rooms - self.watching
        for room_id in added:
            await get_room_hub().watch(room_id, room_group(room_id), self)
        self.watching = rooms
        return added

    async def receive(self, text_data=None, bytes_data=None) -> None:
        # Nothing is sent up this socket yet; say so rather than drop the frame silently.
        await self.send(text_data=notice_fragment("That message could not be understood."))

    async def member_fragment(self, event: dict) -> None:
        await self.send(text_data=event["html"])

    async def member_rooms(self, event: dict) -> None:
        """The member joined, left or was invited to a room: a new list for the sidebar.

        Rows come before badges: a room's count follows only once its row is on the page, and
        a room left stops counting before its row goes (a badge without its row is an error in
        the page). Its count as the row was read may be behind by then; it is read again once
        the room is followed, so nothing posted in between is missed."""
        rooms, html = await database_sync_to_async(self.room_list)()
        for room_id in self.watching - rooms.ids:
            await get_room_hub().unwatch(room_id, self)
        self.watching &= rooms.ids
        if rooms.direct_ids - self.watching:
            # A new direct conversation: its row is in the contact list, which accounts pushes
            # after this; it comes now, so that it is there before the conversation's badge.
            html += await database_sync_to_async(contact_list_fragment)(self.member, self.here)
        await self.push(html)
        added = await self.watch_rooms(rooms.ids)
        if added:
            badges = await database_sync_to_async(selectors.unread_badges)(self.member, added)
            if badges:
                await self.push(badges)

    def room_list(self) -> tuple[selectors.MemberRooms, str]:
        rooms = selectors.member_rooms(self.member)
        return rooms, rooms.sidebar(self.here)

    async def member_contacts(self, event: dict) -> None:
        """The member's contacts or requests changed: the new list, badge and notices."""
        html = await database_sync_to_async(contacts_fragment)(self.member, self.here)
        await self.push(html)

    async def session_ended(self, event: dict) -> None:
        if self.session.ended_by(event):
            await self.close(LOGGED_OUT)

    async def session_recheck(self, event: dict) -> None:
        """The member's password changed or they were deactivated: is this session still in?"""
        try:
            signed_in = await database_sync_to_async(self.session.still_signs_in)(event)
        except Exception:
            logger.exception("Checking a member socket's session failed")
            return
        if not signed_in:
            await self.close(LOGGED_OUT)
