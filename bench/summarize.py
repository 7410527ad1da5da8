"""Print a Markdown table from chat_fanout.py --json files: per phase, the median over the runs
in which nothing outside the benchmark (its server, clients, PostgreSQL and Redis) used more
than --max-other-cpu % of a core during that phase.

    .venv/bin/python bench/summarize.py /tmp/parley-bench/matrix/*.json
    .venv/bin/python bench/summarize.py --max-other-cpu 1000 ...   # every run
"""

import argparse
import json
import statistics
from pathlib import Path

SETUP = [
    ("conn s", lambda r: r["connect_s"], "{:.1f}"),
    ("KiB/conn", lambda r: r["kib_per_conn"], "{:.1f}"),
]
STEADY = [
    ("p50", lambda p: p["p50_ms"], "{:.0f}"),
    ("p99", lambda p: p["p99_ms"], "{:.0f}"),
    ("max", lambda p: p["max_ms"], "{:.0f}"),
    ("lost", lambda p: p["lost"], "{:.0f}"),
    ("ack p99", lambda p: p["ack_p99_ms"], "{:.0f}"),
    ("srv cpu%", lambda p: sum(p["server_cpu_pct"]), "{:.0f}"),
]
BURST = [
    ("deliv/s", lambda p: p["deliveries_per_s"], "{:,.0f}"),
    ("p50", lambda p: p["p50_ms"], "{:.0f}"),
    ("p99", lambda p: p["p99_ms"], "{:.0f}"),
    ("lost", lambda p: p["lost"], "{:.0f}"),
    ("srv cpu%", lambda p: sum(p["server_cpu_pct"]), "{:.0f}"),
    ("cli cpu%", lambda p: sum(p["client_cpu_pct"]), "{:.0f}"),
]


def median(items, get, fmt) -> str:
    values = []
    for item in items:
        try:
            v = get(item)
        except (KeyError, TypeError):
            continue
        if v is not None and v == v:
            values.append(v)
    return fmt.format(statistics.median(values)) if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--max-other-cpu", type=float, default=30.0)
    args = parser.parse_args()
    head = ["layer", "proc", "N", "conn s", "KiB/conn", "steady runs"]
    head += [f"steady {c}" for c, _, _ in STEADY] + ["burst runs"]
    head += [f"burst {c}" for c, _, _ in BURST]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" for _ in head) + "|")
    for path in args.paths:
        for runs in json.loads(Path(path).read_text()).values():
            done = [r for r in runs if "burst" in r]
            first = runs[0]
            row = [first["layer"], str(first["processes"]), str(first["members"])]
            row += [median(done, get, fmt) for _, get, fmt in SETUP]
            for name, figures in (("steady", STEADY), ("burst", BURST)):
                clean = [
                    r[name] for r in done if r[name].get("other_cpu_pct", 0) <= args.max_other_cpu
                ]
                row.append(f"{len(clean)}/{len(runs)}")
                row += [median(clean, get, fmt) for _, get, fmt in figures]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
