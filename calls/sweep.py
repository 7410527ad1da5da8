"""Ending overdue calls in every process that has sockets open.

A ring timeout or a vanished call page must end the call even when the process that started it
died, so no process owns a call's timer: each process with sockets open runs `calls_expire`
every CALL_SWEEP seconds (a conditional UPDATE decides which process ends a given call, and it
is ended once). Reads of a member's calls expire theirs too (calls.services), so a process with
no sockets still never shows a call that should have ended.

Sockets call `ensure_sweeping()` when they open and `release_sweeping()` when they close; the
sweep stops with the last of them.
"""

import asyncio
import logging
import weakref

from django.conf import settings

from calls.services import calls_expire
from parley.live.sockets import in_a_task

logger = logging.getLogger(__name__)


class _Sweep:
    def __init__(self) -> None:
        self.users = 0
        self.task: asyncio.Task | None = None

    def join(self) -> None:
        self.users += 1
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self.run())

    def leave(self) -> None:
        self.users = max(0, self.users - 1)
        if not self.users and self.task is not None:
            self.task.cancel()
            self.task = None

    async def run(self) -> None:
        failed = 0  # sweeps in a row that failed: while the database is away, say
        while True:
            await asyncio.sleep(settings.CALL_SWEEP)
            try:
                await in_a_task(calls_expire)()
            except Exception:
                failed += 1
                if failed == 1:  # once, not every CALL_SWEEP seconds of an outage
                    logger.exception(
                        "Ending overdue calls failed; trying again every %s s, logging only "
                        "once it works",
                        settings.CALL_SWEEP,
                    )
                continue
            if failed:
                logger.warning("Ending overdue calls works again, after %d failed sweeps", failed)
            failed = 0


_sweeps: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep]" = (
    weakref.WeakKeyDictionary()
)


def _sweep() -> _Sweep:
    loop = asyncio.get_running_loop()
    sweep = _sweeps.get(loop)
    if sweep is None:
        sweep = _sweeps[loop] = _Sweep()
    return sweep


def ensure_sweeping() -> None:
    """This socket is open: overdue calls are ended while any is (call from the event loop)."""
    _sweep().join()


def release_sweeping() -> None:
    _sweep().leave()
