"""The per-process hub: one channel-layer subscription per group, shared by the local sockets.

The stock Channels path gives every socket a channel of its own and delivers a group's event
once per socket through the channel layer. Here each process subscribes to a group once, with
one channel, and a listener task hands every event it receives to the group's subscriber in
this process (a feature's own fan-out: the room hub for a room's sockets, member presence for
the member sockets). An event then costs the layer one delivery per process, not one per
socket. The hub also holds the process's member sockets (`/ws/member/`, one per open tab) by
member id, so that one event can carry a fragment to the tabs of many members at once
(`members_push`).

Nothing here imports a feature app.
"""

import asyncio
import logging
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from channels.layers import get_channel_layer

from parley.live.members import MEMBERS_GROUP

logger = logging.getLogger(__name__)

# A first subscription that fails is retried after this long, doubling up to RETRY_MAX.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0
# How long a socket waits for its group's first subscription before it opens anyway. It misses
# nothing by opening: when the subscription comes, the subscriber catches up (`subscribed`).
SUBSCRIBE_WAIT = 5.0
# While it has subscriptions, the hub sends itself a probe through the channel layer every
# PROBE_EVERY seconds and waits PROBE_WAIT for it. A probe that fails or never comes means events
# were lost: Redis restarted or could not be reached (a pub/sub connection subscribes again by
# itself, but what was published meanwhile is gone; the core layer's group memberships die with
# Redis's memory). When a probe comes back after that, every group is joined again and each
# subscriber catches up from the database, so a message announced into the gap is not left
# waiting for the next one to reveal it.
PROBE_EVERY = 1.0
PROBE_WAIT = 2.0


class Subscriber(Protocol):
    async def hub_event(self, event: dict) -> None:
        """An event the layer delivered to the group."""

    async def subscribed(self, late: bool) -> None:
        """The group's subscription is in place; `late` when earlier attempts failed, so
        events sent meanwhile never came and must be caught up on (from the database)."""


class MemberSocket(Protocol):
    member_id: int

    async def push(self, html: str) -> None:
        """A fragment for this member's page (the socket holds it until the page may have it)."""


class _Subscription:
    def __init__(self, group: str, subscriber: Subscriber):
        self.group = group
        self.subscriber = subscriber
        self.channel: str | None = None
        self.ready = asyncio.Event()
        self.listener: asyncio.Task | None = None


class Hub:
    """One per event loop (one per server process)."""

    def __init__(self):
        self.layer = get_channel_layer()
        self.loop = asyncio.get_running_loop()
        self.subscriptions: dict[str, _Subscription] = {}
        self.pending: set[object] = set()
        self.tasks: set[asyncio.Task] = set()  # held here so that none is collected mid-run
        self.outbox: deque[tuple[str, dict]] = deque()
        self.sender: asyncio.Task | None = None
        self.member_sockets: dict[int, set[MemberSocket]] = {}
        self.members_relay = _MembersRelay(self)
        self.probe_group = f"hub-probe-{uuid.uuid4().hex}"
        self.watcher: asyncio.Task | None = None

    # --- Subscriptions -------------------------------------------------------------------

    def subscribe(self, group: str, subscriber: Subscriber) -> _Subscription:
        """Start listening to `group` for `subscriber` (one per group in this process)."""
        subscription = self.subscriptions.get(group)
        if subscription is None:
            subscription = self.subscriptions[group] = _Subscription(group, subscriber)
            subscription.listener = asyncio.create_task(self._listen(subscription))
            if group != self.probe_group and (self.watcher is None or self.watcher.done()):
                self.watcher = asyncio.create_task(self._watch())
        return subscription

    async def unsubscribe(self, group: str) -> None:
        subscription = self.subscriptions.pop(group, None)
        if subscription is None:
            return
        subscription.listener.cancel()
        if subscription.channel is not None and subscription.ready.is_set():
            try:
                await self.layer.group_discard(group, subscription.channel)
            except Exception:
                logger.exception("Leaving %s on the channel layer failed", group)

    @staticmethod
    async def ready(subscription: _Subscription) -> None:
        """Wait until the group is subscribed, for SUBSCRIBE_WAIT at most."""
        if subscription.ready.is_set():
            return
        try:
            await asyncio.wait_for(asyncio.shield(subscription.ready.wait()), SUBSCRIBE_WAIT)
        except TimeoutError:
            logger.warning("%s: a socket opens before its group is subscribed", subscription.group)

    async def _subscribe(self, subscription: _Subscription) -> bool:
        """Subscribe until it works; True when it took more than one attempt."""
        delay, late = RETRY_FIRST, False
        while True:
            try:
                if subscription.channel is None:
                    subscription.channel = await self.layer.new_channel()
                await self.layer.group_add(subscription.group, subscription.channel)
                return late
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "Subscribing to %s failed; trying again in %.1f s", subscription.group, delay
                )
                late = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _listen(self, subscription: _Subscription) -> None:
        late = await self._subscribe(subscription)
        subscription.ready.set()
        subscriber = subscription.subscriber
        try:
            await subscriber.subscribed(late)
        except Exception:
            logger.exception("%s: catching up after subscribing failed", subscription.group)
        while True:
            try:
                event = await self.layer.receive(subscription.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Keep listening; the subscriber catches up on what was missed meanwhile.
                logger.exception("%s: reading from the channel layer failed", subscription.group)
                await asyncio.sleep(1)
                self.soon(("resume", subscription.group), 0, lambda: subscriber.subscribed(True))
                continue
            try:
                await subscriber.hub_event(event)
            except Exception:
                logger.exception("%s: handling %s failed", subscription.group, event.get("type"))

    # --- Watching the layer --------------------------------------------------------------

    async def _watch(self) -> None:
        prober = _Prober()
        probe = self.subscribe(self.probe_group, prober)
        n, lost = 0, False
        try:
            while True:
                await asyncio.sleep(PROBE_EVERY)
                if not any(group != self.probe_group for group in self.subscriptions):
                    self.watcher = None  # a subscription from here on starts a new watcher
                    return
                n += 1
                if not await self._probe(probe, prober, n, again=lost):
                    if not lost:
                        logger.warning("The channel layer lost a probe: events may be lost")
                    lost = True
                elif lost:
                    lost = False
                    logger.warning("The channel layer is back: catching up every group")
                    await self._rejoin()
        finally:
            await self.unsubscribe(self.probe_group)

    async def _probe(self, probe: _Subscription, prober: "_Prober", n: int, again: bool) -> bool:
        try:
            async with asyncio.timeout(PROBE_WAIT):
                await probe.ready.wait()
                if again:  # the core layer forgot the membership with Redis's memory
                    await self.layer.group_add(self.probe_group, probe.channel)
                await self.layer.group_send(self.probe_group, {"type": "hub.probe", "n": n})
                while prober.seen < n:
                    prober.arrived.clear()
                    await prober.arrived.wait()
            return True
        except asyncio.CancelledError:
            raise
        except Exception:  # TimeoutError: it never came
            return False

    async def _rejoin(self) -> None:
        for subscription in list(self.subscriptions.values()):
            if subscription.group == self.probe_group or not subscription.ready.is_set():
                continue
            try:
                await self.layer.group_add(subscription.group, subscription.channel)
            except Exception:
                logger.exception("Joining %s again failed", subscription.group)
            subscriber = subscription.subscriber
            self.soon(("resume", subscription.group), 0, lambda s=subscriber: s.subscribed(True))

    # --- Member sockets ------------------------------------------------------------------

    async def add_member_socket(self, socket: MemberSocket) -> None:
        """Let fragments addressed to `socket.member_id` reach this socket (see members_push).

        Returns once this process is subscribed to the members' group."""
        self.member_sockets.setdefault(socket.member_id, set()).add(socket)
        await self.ready(self.subscribe(MEMBERS_GROUP, self.members_relay))

    async def remove_member_socket(self, socket: MemberSocket) -> None:
        sockets = self.member_sockets.get(socket.member_id)
        if sockets is None or socket not in sockets:
            return
        sockets.discard(socket)
        if not sockets:
            del self.member_sockets[socket.member_id]
        if not self.member_sockets:
            await self.unsubscribe(MEMBERS_GROUP)

    # --- Deferred work and sending -------------------------------------------------------

    def soon(self, key: object, delay: float, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` once, `delay` seconds after the first call for `key` in that time."""
        if key in self.pending:
            return
        self.pending.add(key)

        async def run():
            await asyncio.sleep(delay)
            self.pending.discard(key)
            try:
                await work()
            except Exception:
                logger.exception("Deferred work %r failed", key)

        self.spawn(run())

    def spawn(self, work: Awaitable[None]) -> asyncio.Task:
        """Run `work` as a task the hub keeps until it is done."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def send_soon(self, group: str, event: dict) -> None:
        """Send `event` to `group` through the channel layer, from any thread, without waiting.

        Events go out one after another in the order of the calls: the database thread announces
        each message as it commits, so a room's messages leave this process in seq order.
        """
        self.loop.call_soon_threadsafe(self._post, group, event)

    def _post(self, group: str, event: dict) -> None:
        self.outbox.append((group, event))
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send_outbox())

    async def _send_outbox(self) -> None:
        while self.outbox:
            group, event = self.outbox.popleft()
            try:
                await self.layer.group_send(group, event)
            except Exception:
                # What was announced is saved all the same: sockets read it from the database.
                logger.exception("Announcing %s to %s failed", event.get("type"), group)


class _Prober:
    """The hub's own probe group's subscriber: notes the newest probe that came back."""

    def __init__(self):
        self.seen = 0
        self.arrived = asyncio.Event()

    async def hub_event(self, event: dict) -> None:
        if event.get("type") == "hub.probe":
            self.seen = max(self.seen, event["n"])
            self.arrived.set()

    async def subscribed(self, late: bool) -> None:
        pass


class _MembersRelay:
    """Writes each `members.fragment` event to this process's member sockets of its ids."""

    def __init__(self, hub: Hub):
        self.hub = hub

    async def hub_event(self, event: dict) -> None:
        if event["type"] != "members.fragment":
            return
        html = event["html"]
        for member_id in event["member_ids"]:
            for socket in list(self.hub.member_sockets.get(member_id, ())):
                try:
                    await socket.push(html)
                except Exception:
                    logger.exception("Writing to a member socket failed")

    async def subscribed(self, late: bool) -> None:
        # Fragments pushed to members describe a change; a page that missed one while this
        # process was not subscribed shows it after its next reload. Nothing to read back.
        pass


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
