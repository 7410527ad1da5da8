"""A `--server-script` for chat_fanout.py (and presence_churn.py): daphne as usual, plus a log
of what happens inside.

    .venv/bin/python bench/chat_fanout.py --server-script bench/server_diagnostics.py ...
    .venv/bin/python bench/diagnostics_summary.py /tmp/parley-bench/diag-<pid>.log

Each server process appends to `$PARLEY_DIAG_DIR/diag-<pid>.log` (default /tmp/parley-bench):

* `gc <generation> <ms> <collected>`: every full collection, and any other of 5 ms or more;
* `objects <tracked> <frozen>`: how many objects the collector tracks, every 5 s;
* `lag <ms>`: the event loop ran a 10 ms sleep this much late (over 20 ms);
* `stage <message> <stage> <ms>`: for each steady or burst message of the benchmark, when it
  reached each stage, in ms after the client sent it: `received` (by the room socket), `committed`
  (the post's transaction), `hub` (the hub has its announcement), `handed` (every room socket of
  the process has been handed it).

With PARLEY_DIAG_GC=python the garbage collector's settings go back to Python's own once the
application has loaded (parley/asgi.py tunes them), to measure what the tuning changes.

Each line starts with the wall-clock time. Diagnostics cost a little: figures from runs that
use this script are for finding causes, not for the tables.
"""

import asyncio
import gc
import os
import re
import runpy
import sys
import threading
import time

PYTHON_GC_THRESHOLD = gc.get_threshold()  # before parley.asgi changes it
BENCH_MESSAGE = re.compile(r"bench (\d+) (\d+)")

log_dir = os.environ.get("PARLEY_DIAG_DIR", "/tmp/parley-bench")  # noqa: S108 (as chat_fanout)
os.makedirs(log_dir, exist_ok=True)
log = open(os.path.join(log_dir, f"diag-{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115


def write(*fields) -> None:
    log.write(" ".join([f"{time.time():.3f}", *map(str, fields)]) + "\n")


# --- Garbage collection ------------------------------------------------------------------------

gc_started: dict[int, float] = {}


def on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        gc_started[threading.get_ident()] = time.perf_counter()
        return
    ms = (time.perf_counter() - gc_started.pop(threading.get_ident(), time.perf_counter())) * 1e3
    if info["generation"] == 2 or ms >= 5:
        write("gc", info["generation"], f"{ms:.1f}", info["collected"])


gc.callbacks.append(on_gc)


async def watch_process() -> None:
    next_count = 0.0
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        late = (time.perf_counter() - started - 0.01) * 1e3
        if late > 20:
            write("lag", f"{late:.1f}")
        if started >= next_count:
            next_count = started + 5
            write("objects", len(gc.get_objects()), gc.get_freeze_count())


# --- Stages of a benchmark message ---------------------------------------------------------------


def stage(name: str, text: object) -> None:
    found = BENCH_MESSAGE.search(text) if isinstance(text, str) else None
    if found:
        ms = (time.time_ns() - int(found.group(2))) / 1e6
        write("stage", found.group(1), name, f"{ms:.1f}")


def instrument() -> None:
    from rooms import consumers, hub, services

    receive = consumers.RoomConsumer.receive

    async def timed_receive(self, text_data=None, bytes_data=None):
        stage("received", text_data)
        return await receive(self, text_data, bytes_data)

    announce = services.message_announce

    def timed_announce(message, **kwargs):
        stage("committed", message.body)
        return announce(message, **kwargs)

    sequence = hub.RoomHub._sequence

    async def timed_sequence(self, room, event):
        stage("hub", event.get("html"))
        await sequence(self, room, event)
        stage("handed", event.get("html"))

    consumers.RoomConsumer.receive = timed_receive
    services.message_announce = timed_announce
    hub.RoomHub._sequence = timed_sequence
    watch_from(hub.RoomHub)
    try:  # the shared hub, where there is one: presence_churn.py opens no room socket
        from parley.live import hub as live_hub
    except ImportError:
        return
    watch_from(live_hub.Hub)


watching: list[asyncio.Future] = []


def watch_from(cls) -> None:
    """Start watch_process when the first instance of `cls` (a hub) is made on the loop."""
    start = cls.__init__

    def start_watching(self):
        start(self)
        if not watching:
            watching.append(asyncio.ensure_future(watch_process()))

    cls.__init__ = start_watching


# --- daphne --------------------------------------------------------------------------------------

sys.path.insert(0, os.getcwd())
import parley.asgi  # noqa: E402, F401  (loads the application, as daphne would)

if os.environ.get("PARLEY_DIAG_GC") == "python":
    gc.unfreeze()
    gc.set_threshold(*PYTHON_GC_THRESHOLD)
write("settings", "threshold", gc.get_threshold(), "frozen", gc.get_freeze_count())
instrument()
sys.argv[0] = "daphne"
runpy.run_module("daphne", run_name="__main__")
