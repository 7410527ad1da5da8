"""Sending events to channel-layer groups from synchronous code, after a change is saved.

An announcement is a doorbell: the change is already in the database, and a page that misses
the ring catches up from there when it next (re)connects. So a channel layer that is down costs
the ring, never the change: the failure is logged, and whoever announced goes on as if it had
been heard (a logout still logs out, a post still answers with the posted message).
"""

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def group_send(group: str, event: dict) -> bool:
    """Send an event to a group, waiting until the layer has it. False if the layer failed."""
    return group_send_each([group], event)


def group_send_each(groups: Iterable[str], event: dict) -> bool:
    """Send one event to each group in turn, in one trip to the event loop.

    Stops at the first failure: the layer is down, and every further group would fail as well,
    each after a wait of its own. False if the layer failed.
    """
    groups = list(groups)

    async def send_each() -> bool:
        for n, group in enumerate(groups):
            try:
                await get_channel_layer().group_send(group, event)
            except Exception:
                logger.exception(
                    "Announcing %s to group %s failed (and to %d more groups after it); "
                    "what it announces is saved, pages catch up when they reconnect",
                    event.get("type"),
                    group,
                    len(groups) - n - 1,
                )
                return False
        return True

    return async_to_sync(send_each)()
