"""Live chat delivery benchmark: N members in one room, over real WebSockets and real sessions.

One command sets up a fresh database, starts daphne (one or two processes), connects N members
from load-generator worker processes (bench/client.py), runs a steady phase and a burst phase,
stops everything and prints a table (the median of --runs runs for every figure).

    .venv/bin/python bench/chat_fanout.py --quick
    .venv/bin/python bench/chat_fanout.py --members 1000 --layer memory --processes 1
    .venv/bin/python bench/chat_fanout.py --members 100,1000 --layer memory,core,pubsub \
        --processes 1,2 --runs 3 --json /tmp/parley-bench/all.json

Everything is bounded: each step has a timeout, each phase a fixed number of messages and a
drain deadline, and the server processes and workers this script starts are stopped by PID.
All traffic goes to 127.0.0.1. See bench/README.md.
"""

# A load-test driver, not server code: it starts its own processes with fixed argument lists,
# blocks briefly between phases, and keeps its files under --workdir.
# ruff: noqa: ASYNC109, ASYNC220, ASYNC221, S108, S603

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "p99_1proc_ms": 100,
    "p99_2proc_ms": 200,
    "burst_deliveries_per_s": 10_000,
    "kib_per_conn": 48,
}


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds spent by every process on the machine (from /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def wait_quiet(limit: float, pause: float = 3) -> None:
    """Start a run only when the machine is idle (less than a quarter of a core busy), or after
    `limit` seconds of waiting: other work's CPU use shows up in the figures."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_busy()
        time.sleep(2)
        load = (machine_busy() - before) / 2
        if load < 0.25 or time.monotonic() > deadline:
            if load >= 0.25:
                log(f"machine still busy ({100 * load:.0f}% of a core); starting anyway")
            return
        log(f"waiting for a quiet machine: {100 * load:.0f}% of a core busy elsewhere")
        time.sleep(pause)


def services_cpu() -> float:
    """CPU seconds of every PostgreSQL and Redis server process (the benchmark's own load)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as fh:
                comm = fh.read().strip()
            if comm in {"postgres", "redis-server"}:
                total += proc_cpu(int(entry.name))
        except OSError:
            continue
    return total


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"daphne did not listen on {port} within {timeout}s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_servers(args, env, processes: int, workdir: Path, servers: list) -> list[int]:
    """Start `processes` daphne processes on free ports from --port up, each logging to the
    workdir, and wait until each listens. Each is appended to `servers` as soon as it starts,
    so a caller's cleanup stops it even if a later one fails. Returns the ports."""
    ports, port = [], args.port
    while len(ports) < processes:
        if port_free(port):
            ports.append(port)
        port += 1
    for p in ports:
        logfile = open(workdir / f"daphne-{p}.log", "wb")  # noqa: SIM115 - closed by exit
        servers.append(
            subprocess.Popen(
                [
                    PYTHON,
                    *([args.server_script] if args.server_script else ["-m", "daphne"]),
                    "-e",
                    f"tcp:port={p}:interface=127.0.0.1:backlog=2048",
                    "parley.asgi:application",
                ],
                cwd=args.repo,
                env=env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
            )
        )
    for proc, p in zip(servers, ports, strict=True):
        wait_port(p, proc)
    return ports


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop one process this script started, by its PID: SIGTERM, then SIGKILL after `grace`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


async def stop_worker(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """A worker exits when its stdin closes; kill it by its PID if it does not."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(Exception):  # already closed
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


# --- database and redis -------------------------------------------------------------------------


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(sql)


def redis_clean(url: str) -> None:
    """Remove what earlier runs left in the benchmark's own Redis database (and nothing else)."""
    import redis

    r = redis.Redis.from_url(url)
    for pattern in ("asgi*", "*parley:*"):
        keys = list(r.scan_iter(match=pattern, count=1000))
        if keys:
            r.delete(*keys)
    r.close()


# --- statistics -------------------------------------------------------------------------------


def read_ns(paths: list[str]) -> list[int]:
    values = array.array("q")
    for path in paths:
        with open(path, "rb") as fh:
            values.frombytes(fh.read())
    return sorted(values)


def slowest_messages(paths: list[str], count: int = 3) -> list[list]:
    """[message id, first ms, last ms] of the messages whose last delivery was latest.

    A message whose *first* delivery was already late waited before its fan-out began (a pause
    of the whole process, such as a full garbage collection); one that was early but ended late
    sat behind other work during the fan-out."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for path in paths:
        lat, ids = array.array("q"), array.array("q")
        with open(path, "rb") as fh:
            lat.frombytes(fh.read())
        with open(path + ".ids", "rb") as fh:
            ids.frombytes(fh.read())
        for msg_id, ns in zip(ids, lat, strict=True):
            first[msg_id] = min(first.get(msg_id, ns), ns)
            last[msg_id] = max(last.get(msg_id, ns), ns)
    worst = sorted(last, key=last.__getitem__, reverse=True)[:count]
    return [[m, round(first[m] / 1e6), round(last[m] / 1e6)] for m in worst]


def pct(sorted_values: list[int], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k] / 1e6  # ns -> ms


# --- one run ------------------------------------------------------------------------------------


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, name: str):
        self.proc = proc
        self.name = name

    async def ask(self, msg: dict, timeout: float) -> dict:
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"worker {self.name} exited")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.name}: {reply['error']}")
        return reply


async def wait_idle(pids: list[int], limit: float = 60.0) -> float:
    """Wait until the servers use under 4% CPU for a second (presence frames done)."""
    started = time.monotonic()
    quiet = 0
    last = sum(proc_cpu(p) for p in pids)
    while time.monotonic() - started < limit:
        await asyncio.sleep(0.5)
        now = sum(proc_cpu(p) for p in pids)
        quiet = quiet + 1 if now - last < 0.02 * len(pids) else 0
        last = now
        if quiet >= 2:
            break
    return time.monotonic() - started


async def run_phase(workers, servers, name, sends, drain, profile, workdir) -> dict:
    expected = sorted({s[1] for s in sends})
    start_ns = time.time_ns() + 1_000_000_000
    spies = []
    if profile == name:
        duration = int(max(s[0] for s in sends) + 3)
        for proc in servers:
            out = workdir / f"profile-{name}-{proc.pid}.txt"
            spies.append(
                subprocess.Popen(
                    [
                        shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy"),
                        "record",
                        "-p",
                        str(proc.pid),
                        "-d",
                        str(duration),
                        "-r",
                        "100",
                        "--threads",
                        "--idle",
                        "--format",
                        "raw",
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    cpu0 = [proc_cpu(p.pid) for p in servers]
    busy0 = machine_busy()
    services0 = services_cpu()
    wall0 = time.monotonic()
    span = max((s[0] for s in sends), default=0)
    replies = await asyncio.gather(
        *(
            w.ask(
                {
                    "cmd": "phase",
                    "name": name,
                    "start_ns": start_ns,
                    "sends": sends,
                    "expected": expected,
                    "drain_timeout": drain,
                },
                timeout=span + drain + 60,
            )
            for w in workers
        )
    )
    wall = time.monotonic() - wall0
    cpu = [proc_cpu(p.pid) - c for p, c in zip(servers, cpu0, strict=True)]
    busy = machine_busy() - busy0
    services = services_cpu() - services0
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(spy)
    lat = read_ns([r["latency_file"] for r in replies])
    ack = read_ns([r["ack_file"] for r in replies])
    refused = sorted({m for r in replies for m in r["refused"]})
    sockets = sum(r["sockets"] for r in replies)
    missing = sum(r["missing"] for r in replies)
    lost = missing - len(refused) * sockets
    first = min(r["first_send_ns"] for r in replies if r["first_send_ns"])
    last = max(r["last_recv_ns"] for r in replies)
    got = sum(r["got"] for r in replies)
    span_s = (last - first) / 1e9 if last > first else float("nan")
    return {
        "messages": len(expected),
        "refused": len(refused),
        "sockets": sockets,
        "delivered": got,
        "lost": lost,
        "duplicates": sum(r["duplicates"] for r in replies),
        "closed": sum(r["closed_now"] for r in replies),
        "close_codes": sorted({c for r in replies for c in r["close_codes"]}, key=str),
        "missing_by_msg": [r["missing_by_msg"] for r in replies if r["missing_by_msg"]][:2],
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "max_ms": pct(lat, 1.0),
        "slowest": slowest_messages([r["latency_file"] for r in replies]),
        "ack_p50_ms": pct(ack, 0.50),
        "ack_p99_ms": pct(ack, 0.99),
        "span_s": span_s,
        "deliveries_per_s": got / span_s if span_s == span_s and span_s > 0 else None,
        "server_cpu_pct": [round(100 * c / wall, 1) for c in cpu],
        "client_cpu_pct": [round(100 * r["cpu"] / r["wall"], 1) for r in replies],
        # everything else on the machine (Redis, PostgreSQL, this script, other people's work)
        "db_redis_cpu_pct": round(100 * services / wall, 1),
        "other_cpu_pct": round(
            100 * (busy - sum(cpu) - sum(r["cpu"] for r in replies) - services) / wall, 1
        ),
        "wall_s": wall,
    }


def steady_sends(n: int, rate: float, seconds: float, first_id: int) -> list[list]:
    count = round(rate * seconds)
    senders = max(1, min(n, 25))
    picks = [round(i * n / senders) % n for i in range(senders)]
    return [[k / rate, first_id + k, picks[k % senders]] for k in range(count)]


def burst_sends(n: int, messages: int, first_id: int) -> list[list]:
    per_sender = max(1, math.ceil(messages / n))
    if per_sender > 8:
        raise SystemExit(f"a burst of {messages} from {n} members breaks the flood limit (10/5 s)")
    senders = math.ceil(messages / per_sender)
    picks = [round(i * n / senders) % n for i in range(senders)]
    return [[0.0, first_id + k, picks[k % senders]] for k in range(messages)]


async def run_once(cfg: dict, run: int, args) -> dict:
    layer, processes, n = cfg["layer"], cfg["processes"], cfg["members"]
    tag = f"{layer}-p{processes}-n{n}-r{run}"
    workdir = Path(args.workdir) / f"{time.strftime('%H%M%S')}-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(DEBUG="1", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="parley.settings")
    db_name = None
    if args.db == "postgres":
        db_name = f"parley_bench_{os.getpid()}_{run}"
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{db_name}"')
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    if layer != "memory":
        env["REDIS_URL"] = args.redis_url
        env["REDIS_CHANNEL_LAYER"] = layer
        redis_clean(args.redis_url)

    servers: list[subprocess.Popen] = []
    workers: list[Worker] = []
    result: dict = {"config": tag, "layer": layer, "processes": processes, "members": n}
    try:
        # 1. database, members, sessions
        t0 = time.monotonic()
        setup = subprocess.run(
            [
                PYTHON,
                str(BENCH / "setup_db.py"),
                "--members",
                str(n),
                "--room-id-floor",
                str(700_000 + (os.getpid() % 1000) * 100 + run),
                "--out",
                str(workdir / "members.json"),
            ],
            cwd=args.repo,
            env=env,
            timeout=600,
            capture_output=True,
            text=True,
        )
        if setup.returncode:
            raise RuntimeError(f"setup failed:\n{setup.stderr[-3000:]}")
        data = json.loads((workdir / "members.json").read_text())
        log(tag, setup.stderr.strip().splitlines()[-1], f"({time.monotonic() - t0:.1f}s)")

        # 2. servers
        ports = start_servers(args, env, processes, workdir, servers)
        pids = [s.pid for s in servers]
        log(tag, "daphne", dict(zip(ports, pids, strict=True)))

        # 3. workers: member i -> worker i % W, server (i // W) % P
        w_count = max(1, min(args.clients, n))
        for w in range(w_count):
            proc = await asyncio.create_subprocess_exec(
                PYTHON,
                str(BENCH / "client.py"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,
            )
            worker = Worker(proc, f"w{w}")
            workers.append(worker)
            mine = [
                {
                    "index": i,
                    "id": m["id"],
                    "session": m["session"],
                    "port": ports[(i // w_count) % processes],
                }
                for i, m in enumerate(data["members"])
                if i % w_count == w
            ]
            config = {
                "room_id": data["room_id"],
                "ports": ports,
                "members": mine,
                "out_dir": str(workdir),
                "name": worker.name,
            }
            proc.stdin.write((json.dumps(config) + "\n").encode())
            await proc.stdin.drain()
            ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            assert ready.get("ready") == worker.name, ready

        # 4. memory baseline after one socket per server has come and gone
        await workers[0].ask({"cmd": "warmup"}, timeout=60)
        await wait_idle(pids, 20)
        rss0 = [proc_rss_kib(p) for p in pids]

        # 5. connect everybody
        t0 = time.monotonic()
        cpu0 = [proc_cpu(p) for p in pids]
        replies = await asyncio.gather(
            *(
                w.ask({"cmd": "connect", "concurrency": args.connect_concurrency}, 300)
                for w in workers
            )
        )
        connected = sum(r["connected"] for r in replies)
        result["connect_s"] = time.monotonic() - t0
        result["connect_server_cpu_s"] = sum(proc_cpu(p) for p in pids) - sum(cpu0)
        result["connected"] = connected
        result["connect_failures"] = [f for r in replies for f in r["failures"]][:5]
        if connected < n:
            raise RuntimeError(
                f"only {connected}/{n} sockets connected: {result['connect_failures']}"
            )
        settle = await wait_idle(pids, 60)
        rss1 = [proc_rss_kib(p) for p in pids]
        result["rss_before_kib"] = rss0
        result["rss_idle_kib"] = rss1
        result["kib_per_conn"] = (sum(rss1) - sum(rss0)) / n
        log(
            tag,
            f"{connected} connected in {result['connect_s']:.1f}s, settled {settle:.1f}s, "
            f"{result['kib_per_conn']:.1f} KiB/conn",
        )

        # 6. steady
        sends = steady_sends(n, args.rate, args.steady_seconds, 1)
        steady = await run_phase(
            workers, servers, "steady", sends, args.drain, args.profile, workdir
        )
        result["steady"] = steady
        log(
            tag,
            "steady",
            {
                k: steady[k]
                for k in (
                    "messages",
                    "delivered",
                    "lost",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "slowest",
                    "server_cpu_pct",
                    "client_cpu_pct",
                    "closed",
                )
            },
        )

        # 7. burst. Each steady sender posts once per 5 s and each burst sender at most 5 times,
        # so no member passes the flood limit (10 per 5 s) without waiting for the window.
        await asyncio.sleep(args.pause)
        messages = args.burst_messages or min(5 * n, max(100, 50_000 // n))
        sends = burst_sends(n, messages, 1_000_000)
        burst_drain = max(30.0, messages * n / 2000)
        burst = await run_phase(
            workers, servers, "burst", sends, burst_drain, args.profile, workdir
        )
        result["burst"] = burst
        log(
            tag,
            "burst",
            {
                k: burst[k]
                for k in (
                    "messages",
                    "delivered",
                    "lost",
                    "deliveries_per_s",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "server_cpu_pct",
                    "client_cpu_pct",
                    "closed",
                )
            },
        )
        for w in workers:
            await w.ask({"cmd": "close"}, 30)
    finally:
        for w in workers:
            await stop_worker(w.proc)
        for s in servers:
            stop(s)
        if db_name:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            except Exception as exc:
                log("could not drop", db_name, exc)
        if not args.keep:
            for f in workdir.glob("*.lat*"):
                f.unlink()
    return result


# --- summary ------------------------------------------------------------------------------------


FIGURES = [
    # (column, getter, format)
    ("conn s", lambda r: r["connect_s"], "{:.1f}"),
    ("KiB/conn", lambda r: r["kib_per_conn"], "{:.1f}"),
    ("steady p50", lambda r: r["steady"]["p50_ms"], "{:.1f}"),
    ("p99", lambda r: r["steady"]["p99_ms"], "{:.1f}"),
    ("max", lambda r: r["steady"]["max_ms"], "{:.0f}"),
    ("lost", lambda r: r["steady"]["lost"], "{:.0f}"),
    ("ack p99", lambda r: r["steady"]["ack_p99_ms"], "{:.0f}"),
    ("srv cpu%", lambda r: sum(r["steady"]["server_cpu_pct"]), "{:.0f}"),
    ("burst msgs", lambda r: r["burst"]["messages"], "{:.0f}"),
    ("deliv/s", lambda r: r["burst"]["deliveries_per_s"], "{:,.0f}"),
    ("b p50", lambda r: r["burst"]["p50_ms"], "{:.0f}"),
    ("b p99", lambda r: r["burst"]["p99_ms"], "{:.0f}"),
    ("b max", lambda r: r["burst"]["max_ms"], "{:.0f}"),
    ("b lost", lambda r: r["burst"]["lost"], "{:.0f}"),
    ("srv cpu%", lambda r: sum(r["burst"]["server_cpu_pct"]), "{:.0f}"),
    ("cli cpu%", lambda r: sum(r["burst"]["client_cpu_pct"]), "{:.0f}"),
    ("db+redis%", lambda r: r["burst"]["db_redis_cpu_pct"], "{:.0f}"),
    ("oth cpu%", lambda r: r["burst"]["other_cpu_pct"], "{:.0f}"),
]


def median_row(runs: list[dict]) -> list[str]:
    cells = []
    for _, get, fmt in FIGURES:
        values = []
        for r in runs:
            try:
                v = get(r)
            except (KeyError, TypeError):
                v = None
            if v is not None and v == v:
                values.append(v)
        cells.append(fmt.format(statistics.median(values)) if values else "-")
    return cells


def table(results: dict[str, list[dict]]) -> str:
    head = ["layer", "proc", "N", "runs", *[c for c, _, _ in FIGURES]]
    rows = []
    for runs in results.values():
        ok = [r for r in runs if "burst" in r and "contended" not in r]
        first = runs[0]
        rows.append(
            [
                first["layer"],
                str(first["processes"]),
                str(first["members"]),
                f"{len(ok)}/{len(runs)}",
                *median_row(ok or runs),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [" | ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", "-n", default="1000", help="N, or a comma list (100,1000)")
    parser.add_argument("--layer", default="memory", help="memory|core|pubsub, or a comma list")
    parser.add_argument("--processes", default="1", help="daphne processes: 1|2, or a comma list")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=5.0, help="steady messages per second")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument(
        "--burst-messages", type=int, default=0, help="default: min(5N, max(100, 50000/N))"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=15.0,
        help="seconds after the last steady send before a pair counts as lost",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=2.0,
        help="idle seconds between the steady phase and the burst (>= 5 s shows the core "
        "layer's idle-timeout loss, see docs/performance.md)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=180.0,
        help="before each run wait up to this long for the machine's other CPU use to drop "
        "under 25%% of a core (0: do not wait)",
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=30.0,
        help="repeat a run if processes other than the benchmark's, PostgreSQL and Redis used "
        "more than this %% of a core during a phase (0: never)",
    )
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=50,
        help="handshakes in flight per client process",
    )
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--profile",
        choices=["steady", "burst"],
        help="py-spy record the server(s) during this phase",
    )
    parser.add_argument(
        "--server-script",
        help="run this Python file instead of `-m daphne` (same arguments), "
        "e.g. a wrapper that adds diagnostics",
    )
    parser.add_argument(
        "--repo",
        default=str(REPO),
        help="the Parley checkout to serve (default: this one); e.g. a `git archive` snapshot",
    )
    parser.add_argument("--workdir", default="/tmp/parley-bench")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--keep", action="store_true", help="keep the raw latency files")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: N=20, one run, 3 s steady, small burst"
    )
    args = parser.parse_args()
    if args.quick:
        args.members, args.runs, args.steady_seconds, args.drain = "20", 1, 3.0, 5.0

    configs = []
    for layer in args.layer.split(","):
        if layer not in {"memory", "core", "pubsub"}:
            parser.error(f"unknown layer {layer}")
        for processes in (int(p) for p in args.processes.split(",")):
            if processes not in (1, 2):
                parser.error("processes must be 1 or 2")
            if processes > 1 and layer == "memory":
                log("skipping memory layer with 2 processes: the in-memory layer is per process")
                continue
            for n in (int(x) for x in args.members.split(",")):
                configs.append({"layer": layer, "processes": processes, "members": n})
    if args.profile and not (shutil.which("py-spy") or (Path(PYTHON).parent / "py-spy").exists()):
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")

    results: dict[str, list[dict]] = {}

    for cfg in configs:
        key = f"{cfg['layer']}-p{cfg['processes']}-n{cfg['members']}"
        results[key] = []
        run = attempts = 0
        # A run during which something else used the machine is kept (marked "contended") but
        # does not count towards --runs; at most --runs extra attempts are made per config.
        while run < args.runs and attempts < 2 * args.runs:
            attempts += 1
            bound = 900 + cfg["members"] * 0.5
            if args.wait_quiet:
                wait_quiet(args.wait_quiet, pause=8)
            try:
                r = asyncio.run(asyncio.wait_for(run_once(cfg, attempts - 1, args), bound))
            except Exception as exc:
                log(key, f"run {attempts - 1} failed: {exc!r}")
                r = {**cfg, "config": key, "error": repr(exc)}
            foreign = max(
                (r.get(phase, {}).get("other_cpu_pct") or 0) for phase in ("steady", "burst")
            )
            if args.max_other_cpu and foreign > args.max_other_cpu and attempts < 2 * args.runs:
                r["contended"] = foreign
                log(key, f"other processes used {foreign:.0f}% of a core: run repeated")
            else:
                run += 1
            results[key].append(r)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    print(
        f"Median of {args.runs} run(s); latencies in ms; 'deliv/s' is the burst's "
        "(message, member) deliveries per second from first send to last delivery."
    )
    print(table(results))
    errors = [(k, r["error"]) for k, runs in results.items() for r in runs if "error" in r]
    for k, e in errors:
        print(f"FAILED {k}: {e}")
    lost = sum(
        (r.get("steady", {}).get("lost") or 0) + (r.get("burst", {}).get("lost") or 0)
        for runs in results.values()
        for r in runs
    )
    print(f"lost (message, member) pairs over all runs: {lost}")
    sys.exit(1 if errors or lost else 0)


if __name__ == "__main__":
    main()
