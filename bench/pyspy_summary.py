"""Summarise a `py-spy record --threads --idle --format raw` profile of a daphne process.

    .venv/bin/python bench/pyspy_summary.py /tmp/parley-bench/<run>/profile-steady-<pid>.txt

For each thread: how many samples were busy (not waiting for work), the project functions
(rooms/, parley/, accounts/) where the busy samples were spent, and the top frames overall.
"""

import sys
from collections import Counter, defaultdict

# A sample whose innermost frame is one of these is a thread waiting for work, not working.
IDLE_LEAVES = (
    "select (selectors.py",  # the event loop waiting in epoll
    "_worker (concurrent/futures/thread.py",  # the sync thread waiting for work
    "Scheduler.run (psycopg_pool",
    "ConnectionPool.worker (psycopg_pool",
)
PROJECT = ("rooms/", "parley/", "accounts/", "calls/")


def frame_name(frame: str) -> str:
    return frame.strip()


def main(path: str, top: int = 18) -> None:
    stacks: dict[str, Counter] = defaultdict(Counter)
    with open(path) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        stacks[frames[0]][tuple(frames[1:])] += int(count)
    for thread, counter in sorted(stacks.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(counter.values())
        busy = Counter()
        for frames, count in counter.items():
            leaf = frames[-1] if frames else ""
            if any(idle in leaf for idle in IDLE_LEAVES) or (
                "psycopg_pool" in "".join(frames[-4:]) and "asgiref" not in "".join(frames)
            ):
                continue
            busy[frames] += count
        busy_total = sum(busy.values())
        if total < 20:
            continue
        print(
            f"\n== {thread}: {total} samples, busy {busy_total} ({100 * busy_total / total:.0f}%)"
        )
        if not busy_total:
            continue
        project = Counter()
        inclusive = Counter()
        for frames, count in busy.items():
            first = next((f for f in frames if any(p in f for p in PROJECT)), "(no project frame)")
            project[first.split(" (")[0] + " (" + first.split(" (")[-1]] += count
            for f in set(frames):
                inclusive[f] += count
        print("  busy samples by outermost project function:")
        for name, count in project.most_common(top):
            print(f"    {100 * count / busy_total:5.1f}%  {name}")
        print("  top frames, inclusive (of busy):")
        shown = 0
        for name, count in inclusive.most_common():
            if count > 0.97 * busy_total:
                continue  # the thread's own scaffolding
            print(f"    {100 * count / busy_total:5.1f}%  {name}")
            shown += 1
            if shown >= top:
                break


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
