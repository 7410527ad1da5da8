"""The call socket: WebRTC signaling between the two pages of one call, and nobody else.

Only the caller and the callee may open it, and only while the call rings or is active. Each
socket is a *seat*, named by a fresh id: the newest page of a participant takes their seat, and
their older pages are told "moved" and closed. What a page sends is checked field by field and
rebuilt from the checked fields; it goes to the seat group of the other participant addressed
to their current seat, so a page that has just been moved away never gets it.

How the two seats find each other, on whichever process each one is:
- A new seat says `seat.taken` to its own seat group (older pages of that member move away)
  and `seat.joined` to the call group. The other participant's seat learns the new peer seat,
  answers `seat.here` (so the new seat learns it in turn) and, when the call is active, tells
  its page `ready`. The new seat tells its page `ready` when it hears `seat.here`.
- Every announcement carries when the seat was taken: a seat only ever follows a newer one, so
  two pages opening at once still leave exactly one seated.
- A page whose socket dropped comes back with `?seat=<its seat>` and keeps it: its new socket
  takes the seat again (a lingering old socket of that page just closes, with no "moved"), the
  peer hears the same seat again and both pages get `ready` with the same pair, which to them
  means "restart ICE on the connection you have" (a reload or another tab is a new seat, and a
  new connection). A seat id is signed for this member and call, and carries when its page
  first took the seat: that, not the socket's age, decides which page is newest, so a page that
  comes back after the member opened the call elsewhere is the one told "moved".
- A seat that closes (not moved) says `seat.left`; the peer's page is told `peer-away`.
- The services tell the call group `call.state`: active → `ready` when both are seated;
  ended → the socket closes with ENDED.

The call's state is the server's (calls.services): this socket only relays, reports media
connected and keeps the member's seat alive (`call_seen`), and never changes the call otherwise.
"""

import asyncio
import json
import logging
import re
import secrets
import time
from collections import deque
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from calls import services, sweep
from calls.ice import ice_config
from calls.models import Call, seat_group
from parley.live.members import LOGGED_OUT, member_group
from parley.live.sessions import SocketSession
from parley.live.sockets import LiveSocket, in_a_task

logger = logging.getLogger(__name__)

# Closes a call socket for good: MOVED the member opened the call in a newer page, ENDED the
# call is over. (LOGGED_OUT 4001: the session no longer signs the member in.)
MOVED = 4004
ENDED = 4005

MAX_FRAME = 70 * 1024  # characters of one text frame
MAX_SDP = 64 * 1024  # bytes of one session description (UTF-8)
MAX_CANDIDATE = 2 * 1024  # bytes of one candidate line
MAX_NAME = 256  # characters of an sdpMid or a usernameFragment
RATE_FRAMES = 200  # frames a socket may send in any RATE_WINDOW seconds
RATE_WINDOW = 10.0
# What goes out is JSON for the page's script; with these escaped it stays inert even in HTML.
ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

NOT_UNDERSTOOD = "That message could not be understood: send one JSON object."
TOO_LARGE = "That message is too large: at most 70 KiB."
BINARY = "Binary messages are not accepted here; send JSON text."
UNKNOWN = "That kind of message is not known here."
TOO_FAST = "Too many messages: at most 200 every 10 seconds. Slow down."
NOT_ANSWERED = "The call has not been answered yet."
BAD_DESCRIPTION = "A session description must be an offer or an answer with its SDP (v=…)."
SDP_TOO_LARGE = "The session description is too large: at most 64 KiB."
BAD_CANDIDATE = (
    "An ICE candidate must have a candidate string and an sdpMid (text or null), an "
    "sdpMLineIndex (a number or null) and a usernameFragment (text or null)."
)
CANDIDATE_TOO_LARGE = "The ICE candidate is too large: at most 2 KiB."
BAD_STATE = "A state message must say muted, camera and sharing, each true or false."


class FrameError(ValueError):
    """A frame refused with words for the page (sent back as an error frame)."""


class CallConsumer(LiveSocket):
    async def connect(self) -> None:
        self.member = self.scope["user"]
        self.member_id = self.member.pk
        self.call_id = self.scope["url_route"]["kwargs"]["call_id"]
        call = await self.read_call()
        if not self.may_open(call):
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.session = SocketSession(self.scope)
        self.polite = self.member_id == call.callee_id
        self.peer_id = call.other_id(self.member_id)
        self.call_group = call.group
        self.seat_group = seat_group(self.call_id, self.member_id)
        self.member_group = member_group(self.member_id)
        self.seat = resumed_seat(self.scope, self.call_id, self.member_id) or new_seat(
            self.call_id, self.member_id
        )
        # When this seat's page first took it, then when this socket did, with the seat as a
        # tie-break: the newest page always wins, and of one page's sockets the newest.
        self.taken = (seat_time(self.seat), time.time_ns(), self.seat)
        self.peer_seat: str | None = None
        self.peer_taken: tuple[int, str] | None = None
        self.sweeping = False
        self.seated = False  # announced: from then on, leaving is announced too
        self.moved = False
        self.frames: deque[float] = deque()  # when the frames of the last RATE_WINDOW came
        self.keeping_alive: asyncio.Task | None = None
        self.rechecking: asyncio.Task | None = None
        self.joined = True  # from here on, leave() has something to undo
        for group in (self.call_group, self.seat_group, self.member_group):
            await self.channel_layer.group_add(group, self.channel_name)
        # Read again now that the groups are joined: a change after this read is an event.
        call = await self.read_call()
        if not self.may_open(call):
            await self.close()
            return
        self.state = call.state
        await self.accept()
        await self.send_json(
            {
                "type": "welcome",
                "seat": self.seat,
                "polite": self.polite,
                "state": self.state,
                "ice": ice_config(member_id=self.member_id, call_id=self.call_id),
            }
        )
        self.seated = True
        await self.announce(self.seat_group, "seat.taken")
        await self.announce(self.call_group, "seat.joined")
        self.keeping_alive = asyncio.ensure_future(self.keep_alive())
        sweep.ensure_sweeping()
        self.sweeping = True

    async def read_call(self, to_async=database_sync_to_async) -> Call | None:
        """The call as of now (overdue calls expired first), if it is this member's."""
        try:
            return await to_async(services.call_of)(self.member, self.call_id)
        except Call.DoesNotExist:
            return None

    def may_open(self, call: Call | None) -> bool:
        """A participant's, ringing or active; never the callee's of a call that rings nowhere
        (they blocked the caller, and must not learn of it)."""
        if call is None or not call.is_live:
            return False
        return not (call.silent and self.member_id == call.callee_id)

    async def leave(self) -> None:
        if not getattr(self, "joined", False):
            return
        for task in (self.keeping_alive, self.rechecking):
            if task is not None:
                task.cancel()
        if self.sweeping:
            sweep.release_sweeping()
        if self.seated and not self.moved:
            try:
                await self.announce(self.call_group, "seat.left")
            except Exception:
                logger.exception("Call %s: saying a seat left failed", self.call_id)
        for group in (self.call_group, self.seat_group, self.member_group):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def announce(self, group: str, kind: str) -> None:
        await self.channel_layer.group_send(
            group,
            {"type": kind, "member_id": self.member_id, "seat": self.seat, "taken": self.taken},
        )

    async def keep_alive(self) -> None:
        """Tell the server this member's call page is still there, until the socket closes.

        It also reads the call again: a `call.state` the layer lost (Redis restarting) must
        not leave a page waiting for an answer that came, or in a call that ended."""
        while True:
            try:
                await in_a_task(services.call_seen)(call_id=self.call_id, member_id=self.member_id)
            except Exception:
                logger.exception(
                    "Call %s: saying member %s is here failed", self.call_id, self.member_id
                )
            await asyncio.sleep(settings.CALL_KEEPALIVE)
            try:
                call = await self.read_call(in_a_task)
                if call is not None and call.state != self.state:
                    await self.call_state({"state": call.state})
            except Exception:
                logger.exception("Call %s: reading it again failed", self.call_id)

    async def dispatch(self, message: dict) -> None:
        # The member's group also carries what their member socket shows (fragments, room
        # lists, and whatever features add): a call page has no use for it.
        if getattr(self, get_handler_name(message), None) is None:
            return
        await super().dispatch(message)

    async def send_json(self, content: dict) -> None:
        """One JSON frame, with <, > and & escaped: what a page relays is text for its script,
        and stays inert even if something ever put it into HTML."""
        text = json.dumps(content).translate(ESCAPES)
        await self.send(text_data=text)

    def crowded_frame(self, text: str) -> str:
        """Over a cap on open sockets (LiveSocket): the page's script reads JSON."""
        return json.dumps({"type": "error", "message": text}).translate(ESCAPES)

    async def refuse(self, message: str) -> None:
        await self.send_json({"type": "error", "message": message})

    # --- From the page ---------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if not getattr(self, "seated", False):
            return  # the handshake was refused: nothing from this socket is anyone's business
        if not self.within_rate():
            await self.refuse(TOO_FAST)
            return
        try:
            frame = self.parse(text_data, bytes_data)
            kind = frame.get("type")
            if kind not in ("description", "candidate", "state", "connected"):
                raise FrameError(UNKNOWN)
            if self.state != Call.State.ACTIVE:
                raise FrameError(NOT_ANSWERED)
            if kind == "connected":
                await database_sync_to_async(services.call_connected)(
                    call_id=self.call_id, member_id=self.member_id
                )
                return
            relayed = CHECKS[kind](frame)
        except FrameError as refusal:
            await self.refuse(str(refusal))
            return
        await self.relay(relayed)

    def within_rate(self) -> bool:
        now = time.monotonic()
        while self.frames and self.frames[0] <= now - RATE_WINDOW:
            self.frames.popleft()
        if len(self.frames) >= RATE_FRAMES:
            return False
        self.frames.append(now)
        return True

    @staticmethod
    def parse(text: str | None, data: bytes | None) -> dict:
        if text is None:
            raise FrameError(BINARY if data is not None else NOT_UNDERSTOOD)
        if len(text) > MAX_FRAME:
            raise FrameError(TOO_LARGE)
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
            raise FrameError(NOT_UNDERSTOOD) from None
        if not isinstance(frame, dict):
            raise FrameError(NOT_UNDERSTOOD)
        return frame

    async def relay(self, frame: dict) -> None:
        """To the peer's current seat, if they have one: with none, the page was told
        `peer-away` and negotiates again at the next `ready`, so the frame is of no use."""
        if self.peer_seat is None:
            return
        frame["from"] = self.seat
        await self.channel_layer.group_send(
            seat_group(self.call_id, self.peer_id),
            {"type": "call.relay", "to": self.peer_seat, "frame": frame},
        )

    # --- From the other seats and the services ---------------------------------------------

    async def call_relay(self, event: dict) -> None:
        if event["to"] == self.seat and not self.moved:
            await self.send_json(event["frame"])

    async def seat_taken(self, event: dict) -> None:
        """A socket of this member took the seat: an older one moves away. The same page on a
        newer socket is not told (it no longer listens to this one); a page older than this
        one, back from a dropped connection, is told by this one saying it holds the seat."""
        if event["member_id"] != self.member_id or self.moved:
            return
        taken = tuple(event["taken"])
        if taken > self.taken:
            self.moved = True
            if event["seat"] != self.seat:
                await self.send_json({"type": "moved"})
            await self.close(MOVED)
        elif taken < self.taken:
            await self.announce(self.seat_group, "seat.taken")

    async def seat_joined(self, event: dict) -> None:
        if event["member_id"] != self.peer_id or self.moved:
            return
        if self.follow_peer(event):
            await self.announce(self.call_group, "seat.here")
            await self.send_ready()

    async def seat_here(self, event: dict) -> None:
        if event["member_id"] != self.peer_id or self.moved:
            return
        if self.follow_peer(event):
            await self.send_ready()

    def follow_peer(self, event: dict) -> bool:
        """Take the seat in `event` as the peer's, unless a newer one is known already."""
        taken = tuple(event["taken"])
        if self.peer_taken is not None and taken <= self.peer_taken:
            return False
        self.peer_seat, self.peer_taken = event["seat"], taken
        return True

    async def seat_left(self, event: dict) -> None:
        # The peer's seat may be on a newer socket already (its page came back): only the
        # socket the peer seat is on now leaving empties it.
        if event["member_id"] != self.peer_id or event["seat"] != self.peer_seat:
            return
        if tuple(event["taken"]) != self.peer_taken:
            return
        self.peer_seat = None  # peer_taken stays: a seat older than the one that left is gone
        if not self.moved:
            await self.send_json({"type": "peer-away"})

    async def send_ready(self) -> None:
        if self.state == Call.State.ACTIVE and self.peer_seat is not None and not self.moved:
            await self.send_json({"type": "ready", "peer": self.peer_seat})

    async def call_state(self, event: dict) -> None:
        if event["state"] == Call.State.ENDED:
            self.state = Call.State.ENDED
            await self.close(ENDED)
        elif event["state"] == Call.State.ACTIVE and self.state != Call.State.ACTIVE:
            self.state = Call.State.ACTIVE
            await self.send_ready()

    # --- From the member's group -----------------------------------------------------------

    async def session_ended(self, event: dict) -> None:
        if self.session.ended_by(event):
            await self.close(LOGGED_OUT)

    async def session_recheck(self, event: dict) -> None:
        if event["member_id"] == self.member_id:
            # It reads the database; the socket goes on handling frames meanwhile.
            self.rechecking = asyncio.ensure_future(self.recheck_session(event))

    async def recheck_session(self, event: dict) -> None:
        try:
            if not await in_a_task(self.session.still_signs_in)(event):
                await self.close(LOGGED_OUT)
        except Exception:
            logger.exception("Call %s: checking a socket's session failed", self.call_id)


# --- Seat ids ------------------------------------------------------------------------------
# 32 hex digits: when the page took the seat (14, microseconds), 6 random, and 12 of an HMAC
# over those, the call and the member. Only this member's page of this call can bring it back.

SEAT = re.compile(r"[0-9a-f]{32}")


def seat_signature(call_id: int, member_id: int, head: str) -> str:
    value = f"{call_id}:{member_id}:{head}"
    return salted_hmac("calls.seat", value, algorithm="sha256").hexdigest()[:12]


def new_seat(call_id: int, member_id: int) -> str:
    head = f"{time.time_ns() // 1000:014x}{secrets.token_hex(3)}"
    return head + seat_signature(call_id, member_id, head)


def resumed_seat(scope: dict, call_id: int, member_id: int) -> str | None:
    """The seat a reconnecting page asks for (`?seat=`), if it is one this member was given for
    this call; anything else is ignored, and the page gets a new seat."""
    asked = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("seat", [""])[0]
    if not SEAT.fullmatch(asked):
        return None
    head, signature = asked[:20], asked[20:]
    if not constant_time_compare(signature, seat_signature(call_id, member_id, head)):
        return None
    return asked


def seat_time(seat: str) -> int:
    return int(seat[:14], 16)


# --- Frame checks: each returns the frame to relay, rebuilt from the checked fields ----------


def check_description(frame: dict) -> dict:
    description = frame.get("description")
    if not isinstance(description, dict):
        raise FrameError(BAD_DESCRIPTION)
    kind, sdp = description.get("type"), description.get("sdp")
    if kind not in ("offer", "answer") or not isinstance(sdp, str) or not sdp.startswith("v="):
        raise FrameError(BAD_DESCRIPTION)
    if len(sdp.encode()) > MAX_SDP:
        raise FrameError(SDP_TOO_LARGE)
    return {"type": "description", "description": {"type": kind, "sdp": sdp}}


def check_candidate(frame: dict) -> dict:
    if "candidate" not in frame:
        raise FrameError(BAD_CANDIDATE)
    candidate = frame["candidate"]
    if candidate is None:  # the end of this side's candidates
        return {"type": "candidate", "candidate": None}
    if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
        raise FrameError(BAD_CANDIDATE)
    line = candidate["candidate"]
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    fragment = candidate.get("usernameFragment")
    for name in (mid, fragment):
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            raise FrameError(BAD_CANDIDATE)
    # bool is an int to Python, not to the page; the index is an unsigned short in WebRTC.
    if index is not None and (type(index) is not int or not 0 <= index <= 65535):
        raise FrameError(BAD_CANDIDATE)
    if len(line.encode()) > MAX_CANDIDATE:
        raise FrameError(CANDIDATE_TOO_LARGE)
    return {
        "type": "candidate",
        "candidate": {
            "candidate": line,
            "sdpMid": mid,
            "sdpMLineIndex": index,
            "usernameFragment": fragment,
        },
    }


def check_state(frame: dict) -> dict:
    shown = {name: frame.get(name) for name in ("muted", "camera", "sharing")}
    if not all(isinstance(value, bool) for value in shown.values()):
        raise FrameError(BAD_STATE)
    return {"type": "state", **shown}


CHECKS = {"description": check_description, "candidate": check_candidate, "state": check_state}
