"""Summarise a log written by bench/server_diagnostics.py.

    .venv/bin/python bench/diagnostics_summary.py /tmp/parley-bench/diag-<pid>.log
    (options: --from HH:MM:SS, --to HH:MM:SS: only what was logged in between)

Prints the garbage collections that took 5 ms or more, how many objects were tracked, the event
loop's longest lags, and for the benchmark's messages the median, 90th percentile and maximum of
the time each stage was reached (ms after the client sent the message).
"""

import argparse
import statistics
import time
from collections import defaultdict

STAGES = ("received", "committed", "hub", "handed")


def clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f"{seconds % 1:.3f}"[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--from", dest="start", help="HH:MM:SS, local time")
    parser.add_argument("--to", dest="end", help="HH:MM:SS, local time")
    args = parser.parse_args()

    def wanted(seconds: float) -> bool:
        moment = time.strftime("%H:%M:%S", time.localtime(seconds))
        return (not args.start or moment >= args.start) and (not args.end or moment <= args.end)

    collections, objects, lags = [], [], []
    stages: dict[str, dict[str, float]] = defaultdict(dict)
    with open(args.log) as fh:
        for line in fh:
            at, kind, *fields = line.split()
            at = float(at)
            if not wanted(at):
                continue
            if kind == "gc":
                collections.append((at, int(fields[0]), float(fields[1]), int(fields[2])))
            elif kind == "objects":
                objects.append((at, int(fields[0]), int(fields[1])))
            elif kind == "lag":
                lags.append((float(fields[0]), at))
            elif kind == "stage" and int(fields[0]) < 1_000_000:  # steady messages only
                stages[fields[0]][fields[1]] = float(fields[2])
            elif kind == "settings":
                print("settings:", " ".join(fields))

    print(f"\ncollections of 5 ms or more: {len(collections)}")
    for at, generation, ms, collected in collections:
        print(f"  {clock(at)}  generation {generation}  {ms:7.1f} ms  collected {collected}")
    if objects:
        tracked = [n for _, n, _ in objects]
        frozen = objects[-1][2]
        print(f"\ntracked objects: {min(tracked):,} to {max(tracked):,} (frozen {frozen:,})")
    print(f"\nevent loop lags over 20 ms: {len(lags)}; longest:")
    for ms, at in sorted(lags, reverse=True)[:5]:
        print(f"  {clock(at)}  {ms:.1f} ms")
    if stages:
        print(f"\nsteady messages: {len(stages)}; ms after the client sent it")
        for name in STAGES:
            values = sorted(s[name] for s in stages.values() if name in s)
            if values:
                p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
                print(
                    f"  {name:<10} median {statistics.median(values):6.1f}  p90 {p90:6.1f}"
                    f"  max {values[-1]:6.1f}"
                )


if __name__ == "__main__":
    main()
