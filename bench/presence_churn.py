"""Member presence benchmark: N members online, each with K contacts (a random graph), members
opening and closing their member socket at --rate per second; every change must reach the member
socket of every online contact, and nobody else's.

One command sets up a fresh database (members, a seeded random K-regular contact graph, a
logged-in session each), starts daphne (one or two processes), opens N member sockets
(`/ws/member/`, the socket every signed-in page keeps open) with the `websockets` client, then
churns: every 1/rate s one member closes their socket (a clean close) or an offline member opens
one. It measures, for every (change, online contact) pair, the time from the client-side open or
close to the contact's socket receiving that member's presence fragment, counts pairs that never
arrive, checks every online member's final view of each contact, counts presence fragments about
non-contacts (privacy failures), samples the servers' RSS and CPU, and prints a table.

    .venv/bin/python bench/presence_churn.py --quick
    .venv/bin/python bench/presence_churn.py -n 1000 -k 50 --layer memory --processes 1
    .venv/bin/python bench/presence_churn.py -n 1000 -k 50 --layer memory,pubsub \
        --processes 1,2 --runs 3 --json /tmp/parley-bench/presence.json

Everything is bounded: each step has a timeout, the churn a fixed schedule and a drain deadline,
and the servers this script starts are stopped by PID. All traffic goes to 127.0.0.1.
See bench/README.md ("presence_churn.py").
"""

# A load-test driver, not server code: it starts its own processes with fixed argument lists,
# blocks briefly between phases, and keeps its files under --workdir.
# ruff: noqa: ASYNC109, ASYNC221, S108, S311, S603

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

from chat_fanout import (
    PYTHON,
    machine_busy,
    pct,
    pg_admin,
    proc_cpu,
    proc_rss_kib,
    services_cpu,
    start_servers,
    stop,
    wait_idle,
)
from chat_fanout import log as _log
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# The presence fragment (templates/accounts/presence.html): kind and member id, in this order.
PRESENCE_RE = re.compile(r'class="presence presence--([a-z-]+) presence-of-(\d+)"')
TARGET_P99_MS = 250

log = _log


# --- one member socket --------------------------------------------------------------------------


class Conn:
    """One member socket: when it opened and closed, and every presence fragment it received."""

    __slots__ = (
        "by_member",
        "close_code",
        "ended_by_server",
        "fragments",
        "frames",
        "index",
        "opened",
        "port",
        "reader",
        "t_close",
        "t_closed",
        "t_open",
        "t_start",
        "ws",
    )

    def __init__(self, index: int, port: int):
        self.index = index
        self.port = port
        self.ws = None
        self.t_start = self.t_open = self.t_close = self.t_closed = None
        self.opened = asyncio.get_running_loop().create_future()
        self.frames = 0  # text frames of any kind
        self.fragments = 0  # presence fragments
        self.by_member: dict[int, list[tuple[int, str]]] = {}  # member index -> [(t_ns, kind)]
        self.ended_by_server = False
        self.close_code = None
        self.reader = None

    async def open(self, session: str, timeout: float) -> None:
        self.t_start = time.time_ns()
        try:
            self.ws = await connect(
                f"ws://127.0.0.1:{self.port}/ws/member/",
                origin=f"http://127.0.0.1:{self.port}",
                additional_headers={"Cookie": f"sessionid={session}"},
                open_timeout=timeout,
                close_timeout=10,
                ping_interval=None,  # the server pings; the client answers
                compression=None,
                max_size=1 << 22,
                max_queue=None,
            )
        except BaseException as exc:
            self.opened.set_exception(exc)
            self.opened.exception()  # mark retrieved
            raise
        self.t_open = time.time_ns()
        self.opened.set_result(True)
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        ids = ID_TO_INDEX
        try:
            async for msg in self.ws:
                now = time.time_ns()
                self.frames += 1
                if isinstance(msg, str) and "presence-of-" in msg:
                    for kind, member_id in PRESENCE_RE.findall(msg):
                        self.fragments += 1
                        who = ids.get(int(member_id), -1)
                        self.by_member.setdefault(who, []).append((now, kind))
        except ConnectionClosed:
            pass
        finally:
            if self.t_close is None:
                self.ended_by_server = True
            self.close_code = self.ws.close_code

    async def close(self) -> None:
        await self.opened
        self.t_close = time.time_ns()
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.t_closed = time.time_ns()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader


ID_TO_INDEX: dict[int, int] = {}  # database id -> member index, for the readers


# --- the churn schedule -------------------------------------------------------------------------


def churn_schedule(
    online: int, pool: int, rate: float, seconds: float, dwell: float, seed: int
) -> list[tuple[float, int, str]]:
    """[(offset s, member index, "online"|"offline")], alternating close and open.

    Members 0..online-1 start online, the `pool` others offline. A close picks, at random, an
    online member whose last change is at least `dwell` s old; an open takes the member that has
    been offline longest (if that is at least `dwell` s). So no member changes twice within
    `dwell` s, the number online stays at `online` (±1), and who is online at the end is known.
    """
    rng = random.Random(seed)
    last: dict[int, float] = {}
    up = set(range(online))
    down = list(range(online, online + pool))  # FIFO
    events = []
    for k in range(round(rate * seconds)):
        t = k / rate
        if k % 2 == 0:
            choices = sorted(m for m in up if t - last.get(m, -1e9) >= dwell)
            if not choices:
                continue
            m = rng.choice(choices)
            up.discard(m)
            down.append(m)
            events.append((t, m, "offline"))
        else:
            if not down or t - last.get(down[0], -1e9) < dwell:
                continue
            m = down.pop(0)
            up.add(m)
            events.append((t, m, "online"))
        last[m] = t
    return events


# --- analysis -----------------------------------------------------------------------------------


def conn_at(conns: list[Conn], t: int) -> Conn | None:
    """The member's socket that was open at time t (ns), if any."""
    for c in reversed(conns):
        if c.t_open is not None and c.t_open <= t:
            return c if c.t_close is None or c.t_close > t else None
    return None


def first_frame(c: Conn, member: int, kind: str, after: int) -> int | None:
    for t, k in c.by_member.get(member, ()):
        if t >= after and k == kind:
            return t
    return None


def analyse(
    events, conns_of, contacts, guard_ns, window_ns, online_end, n, connect_events=()
) -> dict:
    """Latency of every (change, eligible contact) pair, missed pairs and final views.

    A contact is eligible for a change if its socket was open from `guard` before the change
    until `window` after it (one that closes soon after may not get the frame in time: left
    out, and counted as skipped). A contact whose socket was still opening (its page already
    rendered: the client started the handshake before the change, and it had not been open
    for `guard` yet) must get the change too; those pairs are counted apart ("opening")."""
    lat, lat_done, lat_opening = [], [], []
    missed, missed_opening = [], []
    eligible = skipped = late = opening = 0
    per_change = []  # (last ms, first ms, at s, kind, member)
    for ev in events:
        if ev.get("t0") is None:
            continue
        m, kind, t0 = ev["member"], ev["kind"], ev["t0"]
        first_ms = last_ms = None
        for cidx in contacts[m]:
            conns = conns_of.get(cidx, [])
            c = conn_at(conns, t0 - guard_ns)
            if c is None:
                c = next(
                    (
                        x
                        for x in conns
                        if x.t_open is not None and x.t_start <= t0 < x.t_open + guard_ns
                    ),
                    None,
                )
                if c is None or (c.t_close is not None and c.t_close < t0 + window_ns):
                    continue
                opening += 1
                t = first_frame(c, m, kind, t0)
                if t is None:
                    missed_opening.append((m, kind, cidx, ev["at"], round((c.t_open - t0) / 1e6)))
                else:
                    lat_opening.append(t - t0)
                continue
            if c.t_close is not None and c.t_close < t0 + window_ns:
                skipped += 1
                continue
            eligible += 1
            t = first_frame(c, m, kind, t0)
            if t is None:
                seen = [[round((x - t0) / 1e6), k] for x, k in c.by_member.get(m, ())]
                missed.append((m, kind, cidx, ev["at"], round((c.t_open - t0) / 1e6), seen))
                continue
            lat.append(t - t0)
            ms = (t - t0) / 1e6
            first_ms = ms if first_ms is None else min(first_ms, ms)
            last_ms = ms if last_ms is None else max(last_ms, ms)
            if ev.get("t_done"):
                lat_done.append(t - ev["t_done"])
            if t - t0 > TARGET_P99_MS * 1_000_000:
                late += 1
        if last_ms is not None:
            per_change.append((round(last_ms), round(first_ms), ev["at"], kind, m))
    per_change.sort(reverse=True)
    lat.sort()
    lat_done.sort()
    lat_opening.sort()

    # Final views: every member online at the end, each of their contacts. The page's own
    # render is taken to be the truth when the client started the socket's handshake; every
    # change after that must have come as a fragment.
    history: dict[int, list[tuple[int, str]]] = {}
    for ev in [*connect_events, *events]:
        if ev.get("t0") is not None:
            history.setdefault(ev["member"], []).append((ev["t0"], ev["kind"]))

    def state_at(m: int, t: int) -> str:
        state = "offline"  # before the connect phase; its opens are in the history
        for t0, kind in history.get(m, ()):
            if t0 >= t:
                break
            state = kind
        return state

    checked = wrong = unchecked = from_page = 0
    wrong_examples = []
    for cidx in sorted(online_end):
        c = conns_of[cidx][-1]
        for m in contacts[cidx]:
            truth = "online" if m in online_end else "offline"
            seen = c.by_member.get(m)
            changes = [t0 for t0, _ in history.get(m, ()) if t0 >= c.t_start - guard_ns]
            if seen:
                view = "online" if seen[-1][1] == "in-call" else seen[-1][1]
            elif not changes:
                from_page += 1  # unchanged since the page was rendered
                continue
            elif min(changes) < c.t_start:
                unchecked += 1  # changed just as the page was rendered: either is right
                continue
            else:
                view = state_at(m, c.t_start)  # the page's render, never updated
            checked += 1
            if view != truth:
                wrong += 1
                if len(wrong_examples) < 10:
                    wrong_examples.append([cidx, m, view, truth, bool(seen)])

    # The connect phase (everybody opening at once, like every tab after a restart): the pairs
    # whose contact was open, or already opening, when the member's socket began to open.
    connect_pairs = connect_missed = 0
    connect_missed_examples = []
    for ev in connect_events:
        m, t0 = ev["member"], ev["t0"]
        for cidx in contacts[m]:
            c = next(
                (x for x in conns_of.get(cidx, ()) if x.t_open is not None and x.t_start <= t0),
                None,
            )
            if c is None or (c.t_close is not None and c.t_close < t0 + window_ns):
                continue
            connect_pairs += 1
            if first_frame(c, m, "online", t0) is None:
                connect_missed += 1
                if len(connect_missed_examples) < 10:
                    connect_missed_examples.append((m, cidx, round((c.t_open - t0) / 1e6)))

    # Privacy and repeats: every fragment on every socket.
    privacy = selfs = repeats = fragments = unknown = 0
    privacy_examples = []
    for cidx, conns in conns_of.items():
        mine = set(contacts[cidx])
        for c in conns:
            fragments += c.fragments
            for m, seen in c.by_member.items():
                if m == cidx:
                    selfs += len(seen)
                elif m == -1:
                    unknown += len(seen)
                elif m not in mine:
                    privacy += len(seen)
                    if len(privacy_examples) < 10:
                        privacy_examples.append([cidx, m, seen[0][1]])
                prev = None
                for _, kind in seen:
                    repeats += kind == prev
                    prev = kind
    return {
        "pairs": eligible,
        "skipped_pairs": skipped,
        "delivered": len(lat),
        "missed": len(missed),
        # (member, kind, contact, at s, contact's socket opened ms after t0, [[ms, kind] seen])
        "missed_examples": missed[:10],
        "opening_pairs": opening,
        "opening_missed": len(missed_opening),
        "opening_missed_examples": missed_opening[:10],
        "opening_p99_ms": pct(lat_opening, 0.99),
        "late": late,
        # the five changes whose last delivery was latest: [last ms, first ms, at s, kind, who];
        # a change whose first delivery was already late waited before its fan-out began
        "slowest_changes": per_change[:5],
        "p50_ms": pct(lat, 0.50),
        "p90_ms": pct(lat, 0.90),
        "p99_ms": pct(lat, 0.99),
        "max_ms": pct(lat, 1.0),
        "p99_after_handshake_ms": pct(lat_done, 0.99),
        "final_checked": checked,
        "final_wrong": wrong,
        "final_wrong_examples": wrong_examples,
        "final_unchecked": unchecked,
        "final_from_page": from_page,
        "connect_pairs": connect_pairs,
        "connect_missed": connect_missed,
        # (member, contact, contact's socket opened ms after the member's began)
        "connect_missed_examples": connect_missed_examples,
        "fragments": fragments,
        "repeats": repeats,
        "self_fragments": selfs,
        "privacy": privacy,
        "privacy_examples": privacy_examples,
        "unknown_member_fragments": unknown,
    }


# --- one run ------------------------------------------------------------------------------------


def redis_flush(url: str) -> None:
    """Empty the benchmark's own Redis database (--redis-url: a private server, see README)."""
    import redis

    r = redis.Redis.from_url(url)
    r.flushdb()
    r.close()


def own_services(db_name: str, redis_url: str | None) -> list[int]:
    """PIDs of the PostgreSQL backends serving the benchmark's database and of its Redis."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        pids = [
            row[0]
            for row in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [db_name]
            ).fetchall()
        ]
    if redis_url:
        import redis

        r = redis.Redis.from_url(redis_url)
        pids.append(int(r.info("server")["process_id"]))
        r.close()
    return pids


def cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = proc_cpu(pid)
    return out


def rss_all(pids: list[int]) -> list[int]:
    return [proc_rss_kib(p) for p in pids]


async def run_once(cfg: dict, run: int, args) -> dict:
    layer, processes, n, k = cfg["layer"], cfg["processes"], cfg["members"], cfg["contacts"]
    pool = args.pool or max(100, n // 10)
    total = n + pool
    tag = f"{layer}-p{processes}-n{n}-k{k}-r{run}"
    workdir = Path(args.workdir) / f"{time.strftime('%H%M%S')}-presence-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k_: v for k_, v in os.environ.items() if k_ not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(DEBUG="1", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="parley.settings")
    pg_admin(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{args.db_name}"')
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.db_name}"
    if layer != "memory":
        env["REDIS_URL"] = args.redis_url
        env["REDIS_CHANNEL_LAYER"] = layer
        redis_flush(args.redis_url)

    result: dict = {
        "config": tag,
        "layer": layer,
        "processes": processes,
        "members": n,
        "contacts": k,
        "pool": pool,
        "rate": args.rate,
        "seconds": args.seconds,
        "seed": args.seed,
    }
    servers: list[subprocess.Popen] = []
    all_conns: list[Conn] = []
    try:
        # 1. database: members, contacts, sessions
        t0 = time.monotonic()
        setup = subprocess.run(
            [
                PYTHON,
                str(BENCH / "presence_setup.py"),
                "--members",
                str(total),
                "--contacts",
                str(k),
                "--seed",
                str(args.seed),
                "--out",
                str(workdir / "members.json"),
            ],
            cwd=args.repo,
            env=env,
            timeout=900,
            capture_output=True,
            text=True,
        )
        if setup.returncode:
            raise RuntimeError(f"setup failed:\n{setup.stderr[-3000:]}")
        data = json.loads((workdir / "members.json").read_text())
        sessions = [m["session"] for m in data["members"]]
        contacts = [set(c) for c in data["contacts"]]
        ID_TO_INDEX.clear()
        ID_TO_INDEX.update({m["id"]: i for i, m in enumerate(data["members"])})
        log(tag, setup.stderr.strip().splitlines()[-1], f"({time.monotonic() - t0:.1f}s)")

        # 2. servers; member i is served by process i % P
        ports = start_servers(args, env, processes, workdir, servers)
        pids = [s.pid for s in servers]
        log(tag, "daphne", dict(zip(ports, pids, strict=True)))
        conns_of: dict[int, list[Conn]] = {}

        async def open_member(i: int) -> Conn:
            c = Conn(i, ports[i % processes])
            conns_of.setdefault(i, []).append(c)
            all_conns.append(c)
            await c.open(sessions[i], args.open_timeout)
            return c

        # 3. warm-up and memory baseline: one socket per server opens and closes (a pool
        # member: nobody online knows yet); then the servers go idle.
        for s in range(processes):
            i = n + s  # pool members n, n+1 are served by processes 0, 1
            c = await open_member(i)
            await asyncio.sleep(1.0)
            await c.close()
        conns_of.clear()
        await wait_idle(pids, 20)
        rss0 = rss_all(pids)

        # 4. N members online
        t0 = time.monotonic()
        cpu0 = sum(proc_cpu(p) for p in pids)
        limit = asyncio.Semaphore(args.connect_concurrency)
        failures: list[str] = []

        retries: list[str] = []

        async def first_open(i: int) -> None:
            # Setup, not measurement: a handshake the loaded server dropped is tried again.
            for attempt in range(3):
                async with limit:
                    try:
                        await open_member(i)
                        return
                    except Exception as exc:
                        conns_of[i].pop()
                        (retries if attempt < 2 else failures).append(f"{i}: {exc!r}")
                await asyncio.sleep(1.0)

        await asyncio.gather(*(first_open(i) for i in range(n)))
        connected = [
            {"member": i, "kind": "online", "t0": cs[0].t_start, "phase": "connect"}
            for i, cs in sorted(conns_of.items())
            if cs and cs[0].t_open is not None
        ]
        result["connect_s"] = time.monotonic() - t0
        result["connect_server_cpu_s"] = sum(proc_cpu(p) for p in pids) - cpu0
        result["connect_retries"] = len(retries)
        result["connect_retry_examples"] = retries[:3]
        if failures:
            raise RuntimeError(f"{len(failures)}/{n} sockets failed to open: {failures[:5]}")
        settle = await wait_idle(pids, 60)
        rss1 = rss_all(pids)
        result["rss_before_kib"] = rss0
        result["rss_connected_kib"] = rss1
        result["kib_per_conn"] = (sum(rss1) - sum(rss0)) / n
        log(
            tag,
            f"{n} online in {result['connect_s']:.1f}s ({len(retries)} retried), "
            f"settled {settle:.1f}s, "
            f"{result['kib_per_conn']:.1f} KiB/conn",
        )

        # 5. idle baseline: server CPU (and presence fragments) with nothing changing
        frag0 = sum(c.fragments for c in all_conns)
        cpu_a = sum(proc_cpu(p) for p in pids)
        await asyncio.sleep(args.idle_seconds)
        idle_cpu_rate = (sum(proc_cpu(p) for p in pids) - cpu_a) / args.idle_seconds
        result["idle_server_cpu_pct"] = round(100 * idle_cpu_rate, 1)
        result["idle_fragments"] = sum(c.fragments for c in all_conns) - frag0

        # 6. churn
        plan = churn_schedule(n, pool, args.rate, args.seconds, args.dwell, args.seed + 1)
        events = [{"at": at, "member": m, "kind": kind} for at, m, kind in plan]
        loop = asyncio.get_running_loop()
        anchor = loop.time() + 0.5
        tasks: list[asyncio.Task] = []
        errors: list[str] = []
        rss_samples: list[tuple[float, list[int]]] = []

        async def do(ev: dict) -> None:
            ev["lag_ms"] = (loop.time() - anchor - ev["at"]) * 1000
            m = ev["member"]
            try:
                if ev["kind"] == "online":
                    c = Conn(m, ports[m % processes])
                    conns_of.setdefault(m, []).append(c)
                    all_conns.append(c)
                    try:
                        await c.open(sessions[m], args.open_timeout)
                    except BaseException:
                        conns_of[m].remove(c)  # never open: the member stays offline
                        raise
                    ev["t0"], ev["t_done"] = c.t_start, c.t_open
                else:
                    c = conns_of[m][-1] if conns_of.get(m) else None
                    if c is None or c.t_close is not None:
                        raise RuntimeError("not open (its open failed)")
                    await c.close()
                    ev["t0"], ev["t_done"] = c.t_close, c.t_closed
            except Exception as exc:
                errors.append(f"{ev['kind']} {m} at {ev['at']:.2f}s: {exc!r}")

        scheduled = asyncio.Event()

        def fire(ev: dict) -> None:
            tasks.append(asyncio.create_task(do(ev)))
            if len(tasks) == len(events):
                scheduled.set()

        for ev in events:
            loop.call_at(anchor + ev["at"], fire, ev)
        if not events:
            scheduled.set()

        async def sample_rss() -> None:
            while True:
                rss_samples.append((round(loop.time() - anchor, 1), rss_all(pids)))
                await asyncio.sleep(args.rss_every)

        sampler = asyncio.create_task(sample_rss())
        cpu_churn0 = [proc_cpu(p) for p in pids]
        service_pids = own_services(args.db_name, env.get("REDIS_URL"))
        own_services0 = cpu_of(service_pids)
        services0, busy0, wall0 = services_cpu(), machine_busy(), time.monotonic()
        own0 = time.process_time()
        frag_churn0 = sum(c.fragments for c in all_conns)
        span = plan[-1][0] if plan else 0.0
        await asyncio.wait_for(scheduled.wait(), span + 60)
        await asyncio.wait(tasks, timeout=args.open_timeout + 15)
        log(tag, f"churn done: {len(events)} changes, {len(errors)} errors", errors[:3])

        # 7. drain: until every eligible pair has arrived, or --drain s
        guard_ns, window_ns = int(args.guard * 1e9), int(args.window * 1e9)
        online_end = {
            i
            for i, cs in conns_of.items()
            if cs and cs[-1].t_open is not None and cs[-1].t_close is None
        }
        drain_end = loop.time() + args.drain
        while loop.time() < drain_end:
            partial = analyse(
                events, conns_of, contacts, guard_ns, window_ns, online_end, n, connected
            )
            if partial["missed"] == 0 and partial["opening_missed"] == 0:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(0.5)  # repeats that follow the last delivery
        wall = time.monotonic() - wall0
        cpu_churn = [proc_cpu(p) - c for p, c in zip(pids, cpu_churn0, strict=True)]
        services = services_cpu() - services0  # every PostgreSQL and Redis on the machine
        own_services1 = cpu_of(service_pids)
        mine = sum(own_services1[p] - c for p, c in own_services0.items() if p in own_services1)
        busy = machine_busy() - busy0
        own = time.process_time() - own0
        frag_churn = sum(c.fragments for c in all_conns) - frag_churn0
        sampler.cancel()
        rss_samples.append((round(loop.time() - anchor, 1), rss_all(pids)))

        stats = analyse(events, conns_of, contacts, guard_ns, window_ns, online_end, n, connected)
        done = [e for e in events if e.get("t0") is not None]
        changes = len(done)
        server_cpu = sum(cpu_churn)
        net_cpu = server_cpu - idle_cpu_rate * wall
        lags = sorted(e["lag_ms"] for e in events if "lag_ms" in e)
        mid = rss_samples[len(rss_samples) // 2][1]
        result.update(
            {
                "changes": changes,
                "opens": sum(1 for e in done if e["kind"] == "online"),
                "closes": sum(1 for e in done if e["kind"] == "offline"),
                "errors": errors[:10],
                "error_count": len(errors),
                "dropped_by_server": sum(
                    1 for c in all_conns if c.ended_by_server and c.t_open is not None
                ),
                "close_codes": sorted(
                    {c.close_code for c in all_conns if c.ended_by_server}, key=str
                ),
                **stats,
                "wall_s": wall,
                "server_cpu_pct": [round(100 * c / wall, 1) for c in cpu_churn],
                "server_cpu_ms_per_change": 1000 * server_cpu / changes if changes else None,
                "net_server_cpu_ms_per_change": 1000 * net_cpu / changes if changes else None,
                # the benchmark database's PostgreSQL backends and its Redis server
                "db_redis_cpu_ms_per_change": 1000 * mine / changes if changes else None,
                "db_redis_cpu_pct": round(100 * mine / wall, 1),
                "service_pids": len(service_pids),
                "client_cpu_pct": round(100 * own / wall, 1),
                "other_cpu_pct": round(100 * (busy - server_cpu - mine - own) / wall, 1),
                "all_db_redis_cpu_pct": round(100 * services / wall, 1),
                "churn_fragments": frag_churn,
                "fragments_per_change": frag_churn / changes if changes else None,
                "schedule_lag_p99_ms": pct([int(x * 1e6) for x in lags], 0.99),
                "rss_samples": rss_samples,
                "rss_start_mib": sum(rss_samples[0][1]) / 1024,
                "rss_mid_mib": sum(mid) / 1024,
                "rss_end_mib": sum(rss_samples[-1][1]) / 1024,
                "online_end": len(online_end),
            }
        )
        log(
            tag,
            {
                key: result[key]
                for key in (
                    "changes",
                    "pairs",
                    "missed",
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "final_checked",
                    "final_wrong",
                    "opening_pairs",
                    "opening_missed",
                    "connect_pairs",
                    "connect_missed",
                    "privacy",
                    "repeats",
                    "late",
                    "slowest_changes",
                    "net_server_cpu_ms_per_change",
                    "rss_start_mib",
                    "rss_mid_mib",
                    "rss_end_mib",
                )
            },
        )
        # Raw record for a post-mortem: every change, every socket and what it received.
        raw = {
            "ids": [m["id"] for m in data["members"]],
            "events": [{k: v for k, v in e.items()} for e in [*connected, *events]],
            "conns": [
                {
                    "member": c.index,
                    "port": c.port,
                    "t_start": c.t_start,
                    "t_open": c.t_open,
                    "t_close": c.t_close,
                    "ended_by_server": c.ended_by_server,
                    "frames": {str(m): seen for m, seen in c.by_member.items()},
                }
                for c in all_conns
            ],
        }
        (workdir / "raw.json").write_text(json.dumps(raw))
        result["raw"] = str(workdir / "raw.json")
        if stats["missed_examples"]:
            log(tag, "missed (member, kind, contact, at s, ...):", stats["missed_examples"][:5])
        if stats["opening_missed_examples"]:
            log(tag, "missed while opening:", stats["opening_missed_examples"][:5])
    finally:
        # close what is still open, politely, then the servers by PID
        still = [c for c in all_conns if c.t_open is not None and c.t_close is None]
        sem = asyncio.Semaphore(100)

        async def shut(c: Conn) -> None:
            async with sem:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(c.close(), 15)

        await asyncio.gather(*(shut(c) for c in still))
        for s in servers:
            stop(s)
        try:
            pg_admin(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        except Exception as exc:
            log("could not drop", args.db_name, exc)
    return result


# --- summary ------------------------------------------------------------------------------------


FIGURES = [
    ("changes", lambda r: r["changes"], "{:.0f}"),
    ("pairs", lambda r: r["pairs"], "{:.0f}"),
    ("p50", lambda r: r["p50_ms"], "{:.1f}"),
    ("p99", lambda r: r["p99_ms"], "{:.1f}"),
    ("max", lambda r: r["max_ms"], "{:.0f}"),
    ("missed", lambda r: r["missed"], "{:.0f}"),
    ("wrong", lambda r: r["final_wrong"], "{:.0f}"),
    ("opening pairs", lambda r: r["opening_pairs"], "{:.0f}"),
    ("opening missed", lambda r: r["opening_missed"], "{:.0f}"),
    ("connect missed", lambda r: r["connect_missed"], "{:.0f}"),
    ("privacy", lambda r: r["privacy"], "{:.0f}"),
    ("repeats", lambda r: r["repeats"], "{:.0f}"),
    ("frag/chg", lambda r: r["fragments_per_change"], "{:.1f}"),
    ("srv ms/chg", lambda r: r["net_server_cpu_ms_per_change"], "{:.2f}"),
    ("db+redis ms/chg", lambda r: r["db_redis_cpu_ms_per_change"], "{:.2f}"),
    ("srv cpu%", lambda r: sum(r["server_cpu_pct"]), "{:.0f}"),
    ("RSS start", lambda r: r["rss_start_mib"], "{:.1f}"),
    ("mid", lambda r: r["rss_mid_mib"], "{:.1f}"),
    ("end MiB", lambda r: r["rss_end_mib"], "{:.1f}"),
    ("cli cpu%", lambda r: r["client_cpu_pct"], "{:.0f}"),
    ("oth cpu%", lambda r: r["other_cpu_pct"], "{:.0f}"),
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
    head = ["layer", "proc", "N", "K", "runs", *[c for c, _, _ in FIGURES]]
    rows = []
    for runs in results.values():
        ok = [r for r in runs if "changes" in r]
        first = runs[0]
        rows.append(
            [
                first["layer"],
                str(first["processes"]),
                str(first["members"]),
                str(first["contacts"]),
                f"{len(ok)}/{len(runs)}",
                *median_row(ok or runs),
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", "-n", default="1000", help="online members N, or a list")
    parser.add_argument("--contacts", "-k", default="50", help="contacts per member K, or a list")
    parser.add_argument(
        "--pool", type=int, default=0, help="members offline at the start (default max(100, N/10))"
    )
    parser.add_argument("--layer", default="memory", help="memory|pubsub|core, or a comma list")
    parser.add_argument("--processes", default="1", help="daphne processes: 1|2, or a comma list")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="presence changes per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the churn")
    parser.add_argument(
        "--dwell", type=float, default=5.0, help="no member changes twice within this many s"
    )
    parser.add_argument(
        "--guard",
        type=float,
        default=1.0,
        help="a contact counts for a change if its socket opened at least this long before",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=1.0,
        help="... and stays open at least this long after (else the pair is skipped)",
    )
    parser.add_argument(
        "--drain", type=float, default=15.0, help="s after the churn before a pair is missed"
    )
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7, help="the contact graph and the churn")
    parser.add_argument(
        "--connect-concurrency", type=int, default=20, help="handshakes in flight at the start"
    )
    parser.add_argument("--open-timeout", type=float, default=30.0)
    parser.add_argument("--db-name", default="wt_bench", help="PostgreSQL database (recreated)")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6383/0",
        help="a Redis of the benchmark's own: its database is emptied before each run",
    )
    parser.add_argument("--port", type=int, default=8865)
    parser.add_argument("--repo", default=str(REPO), help="the Parley checkout to serve")
    parser.add_argument(
        "--server-script",
        help="run this Python file instead of `-m daphne` (same arguments), "
        "e.g. bench/server_diagnostics.py",
    )
    parser.add_argument("--workdir", default="/tmp/parley-bench")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: N=50, K=10, 10 s churn, one run"
    )
    args = parser.parse_args()
    if args.quick:
        args.members, args.contacts, args.runs, args.seconds = "50", "10", 1, 10.0
        args.pool = args.pool or 50
        args.drain = 5.0

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
                for k in (int(x) for x in args.contacts.split(",")):
                    configs.append(
                        {"layer": layer, "processes": processes, "members": n, "contacts": k}
                    )

    results: dict[str, list[dict]] = {}
    for cfg in configs:
        key = f"{cfg['layer']}-p{cfg['processes']}-n{cfg['members']}-k{cfg['contacts']}"
        results[key] = []
        for run in range(args.runs):
            bound = 600 + cfg["members"] * 0.3 + args.seconds
            try:
                r = asyncio.run(asyncio.wait_for(run_once(cfg, run, args), bound))
            except Exception as exc:
                log(key, f"run {run} failed: {exc!r}")
                traceback.print_exc()
                r = {**cfg, "config": key, "error": repr(exc)}
            results[key].append(r)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    print(
        f"Median of {args.runs} run(s). Latency (ms) over every (change, online contact) pair, "
        "from the client's open/close; srv ms/chg = server CPU per change, idle CPU subtracted."
    )
    print(table(results))
    errors = [(k, r["error"]) for k, runs in results.items() for r in runs if "error" in r]
    for k, e in errors:
        print(f"FAILED {k}: {e}")
    bad = sum(
        (r.get("missed") or 0) + (r.get("final_wrong") or 0) + (r.get("privacy") or 0)
        for runs in results.values()
        for r in runs
    )
    print(f"missed pairs + wrong final views + privacy failures over all runs: {bad}")
    sys.exit(1 if errors or bad else 0)


if __name__ == "__main__":
    main()
