"""Faults, with nothing lost: members chat while Redis restarts, a daphne process is killed
(SIGKILL) and PostgreSQL restarts, one after another; this prints what every page saw.

    .venv/bin/python bench/faults.py [--runs 3] [--members 6] [--rate 1.5]

Each run starts its own PostgreSQL and Redis (parley/tests/engines.py) and two daphne processes
on them, and one page per member: a WebSocket client that behaves as the room page does (see
Page). Member i's page opens on process i % 2; a connection that is refused goes to the other
process, as the proxy in front of them does. Every member posts `rate` messages a second.

For each fault it counts, per phase: messages acknowledged (the sender's composer emptied),
"not sent" shown to a sender (the composer kept the draft with an error; the member presses
Send again, with the same key), and per page the messages seen, lost (acknowledged, never
shown) and duplicated; it checks every page shows them in seq order and each sender's in the
order they were sent. Recovery is the time from the fault (the kill; for a restart, the moment
the server is back) until every page's socket is open, every member has had a send
acknowledged since, and every page shows every acknowledged message. Presence is back when
every page's room presence lists every member online again.

The fault test (parley/tests/test_faults.py) runs the same with fewer messages and asserts.
"""

# ruff: noqa: ASYNC110, S603

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parley.tests.engines import PrivatePostgres, PrivateRedis  # noqa: E402
from parley.tests.live_server import LiveServer  # noqa: E402

MESSAGE_RE = re.compile(r'data-seq="(\d+)">.*?class="message__body">(.*?)</div>', re.DOTALL)
KEY_RE = re.compile(r'id="composer-key" name="key" value="([^"]*)"')
BODY_RE = re.compile(r'id="composer-body"[^>]*?value="([^"]*)"', re.DOTALL)
ONLINE_RE = re.compile(r"<strong>(\d+) online</strong>")
# The page fetches a fresh socket element 1 s after its socket closes (room.html).
RECONNECT_DELAY = 1.0
# A member who sees "not sent" presses Send again after this long.
RESEND_DELAY = 0.3
# Presence settles this fast in these runs (the defaults are 45 / 15 / 5 s; see the README).
PRESENCE = {"PRESENCE_TTL": "6", "PRESENCE_REFRESH": "2", "PRESENCE_SWEEP": "1"}
FAULTS = ("redis", "daphne", "postgres")


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


@dataclass
class Upstreams:
    """The daphne processes behind the proxy: a page goes to its own, or the next that answers."""

    ports: list[int]

    async def connect(self, home: int, session: str):
        errors = []
        for step in range(len(self.ports)):
            port = self.ports[(home + step) % len(self.ports)]
            try:
                return await websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/rooms/{self.room_id}/",
                    origin=f"http://127.0.0.1:{port}",
                    additional_headers={"Cookie": f"sessionid={session}"},
                    open_timeout=5,
                    max_size=None,
                )
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
                errors.append(f"{port}: {error!r}")
        raise ConnectionError("; ".join(errors))

    room_id: int = 0


@dataclass
class Page:
    """One member's room page, as far as delivery goes.

    Like room.html: on every (re)open it sends a resume frame with the seq of its newest message
    and the composer's key and draft; after its socket closes it reconnects 1 s later. It sends
    only while its socket is open; a draft waits in the composer otherwise, and the resume
    frame carries it. One message at a time is in the composer, as on the page.
    """

    name: str
    session: str
    home: int
    upstreams: Upstreams
    shown: list[tuple[int, str]] = field(default_factory=list)  # (seq, body), as appended
    seqs: set = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)
    out_of_order: list[tuple[int, int]] = field(default_factory=list)
    key: str = ""
    draft: str | None = None
    acked: list[tuple[float, str]] = field(default_factory=list)
    not_sent: list[tuple[float, str]] = field(default_factory=list)
    online: int | None = None
    opens: int = 0
    socket: object = None
    sending: bool = False
    prefix: str = ""
    counter: int = 0
    sends: set = field(default_factory=set)

    @property
    def after(self) -> int:
        return self.shown[-1][0] if self.shown else 0

    @property
    def is_open(self) -> bool:
        return self.socket is not None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                socket = await self.upstreams.connect(self.home, self.session)
            except ConnectionError:
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            self.opens += 1
            try:
                await socket.send(
                    json.dumps(
                        {
                            "action": "resume",
                            "after": self.after,
                            "key": self.key,
                            "body": self.draft or "",
                        }
                    )
                )
                self.socket = socket
                async for frame in socket:
                    self.on_frame(frame)
            except websockets.exceptions.ConnectionClosed:
                pass
            finally:
                self.socket = None
            if not stop.is_set():
                await asyncio.sleep(RECONNECT_DELAY)

    def on_frame(self, frame: str) -> None:
        for seq, body in MESSAGE_RE.findall(frame):
            seq = int(seq)
            if seq in self.seqs:
                self.duplicates.append(body)
                continue
            if seq != self.after + 1:
                self.out_of_order.append((self.after, seq))
            self.seqs.add(seq)
            self.shown.append((seq, body))
        if 'id="composer"' in frame:
            self.on_composer(frame)
        online = ONLINE_RE.search(frame)
        if online:
            self.online = int(online.group(1))

    def on_composer(self, frame: str) -> None:
        key = KEY_RE.search(frame)
        body = BODY_RE.search(frame)
        self.key = key.group(1) if key else self.key
        if self.draft is None:
            return
        if 'id="composer-error"' in frame:
            self.not_sent.append((time.monotonic(), self.draft))
            asyncio.get_running_loop().call_later(RESEND_DELAY, self.send_draft)
        elif body is None or body.group(1) == "":
            self.acked.append((time.monotonic(), self.draft))
            self.draft = None

    def send_draft(self) -> None:
        if self.draft is not None and self.socket is not None:
            frame = json.dumps({"action": "send", "body": self.draft, "key": self.key})
            self.sends.add(task := asyncio.ensure_future(self._send(frame)))
            task.add_done_callback(self.sends.discard)

    async def _send(self, frame: str) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await self.socket.send(frame)

    async def type_and_send(self, stop: asyncio.Event, interval: float) -> None:
        """Writes a message whenever the composer is empty, and presses Send if it is open."""
        while not stop.is_set():
            if self.sending and self.draft is None:
                self.counter += 1
                self.draft = f"{self.prefix} {self.name} {self.counter}"
                self.send_draft()
            await asyncio.sleep(interval)


class Site:
    """PostgreSQL, Redis and two daphne processes of their own, and one page per member."""

    def __init__(self, members: int, workdir: Path):
        self.workdir = workdir
        self.members = members
        self.redis = PrivateRedis()
        self.postgres = PrivatePostgres()
        self.servers: list[LiveServer] = []
        self.pages: list[Page] = []

    def __enter__(self):
        self.redis.start()
        self.postgres.start()
        env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        self.env = {
            **env,
            **PRESENCE,
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "parley.settings",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "REDIS_PREFIX": f"faults{os.getpid()}",
        }
        out = self.workdir / "members.json"
        setup = [sys.executable, str(ROOT / "bench" / "setup_db.py")]
        setup += ["--members", str(self.members), "--out", str(out)]
        subprocess.run(setup, cwd=ROOT, env=self.env, check=True, capture_output=True, timeout=300)
        data = json.loads(out.read_text())
        self.servers = [LiveServer(self.env) for _ in range(2)]
        self.upstreams = Upstreams([s.port for s in self.servers], data["room_id"])
        self.pages = [
            Page(f"m{i}", m["session"], i % 2, self.upstreams)
            for i, m in enumerate(data["members"])
        ]
        return self

    def __exit__(self, *exc):
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        self.redis.stop()
        self.postgres.__exit__()

    def replace_server(self, index: int) -> None:
        """Start a process where a killed one was (what systemd's Restart= does)."""
        port = self.servers[index].port
        self.servers[index] = LiveServer(self.env, port=port)

    def logs(self) -> str:
        return "\n".join(f"--- daphne {s.port}\n{s.tail(400)}" for s in self.servers)


async def fresh_presence(site: Site) -> int | None:
    """How many members online a page opened now is told (a second tab of the first member):
    the presence store's view, not what the open pages were last told."""
    page = site.pages[0]
    try:
        socket = await site.upstreams.connect(1, page.session)
    except ConnectionError:
        return None
    try:
        await socket.send(json.dumps({"action": "resume", "after": page.after}))
        async with asyncio.timeout(3):
            async for frame in socket:
                online = ONLINE_RE.search(frame)
                if online:
                    return int(online.group(1))
    except (TimeoutError, websockets.exceptions.ConnectionClosed):
        return None
    finally:
        await socket.close()
    return None


def inject(site: Site, fault: str) -> float:
    """Cause `fault`; returns when the failed part is back (for a kill: at once)."""
    if fault == "redis":
        site.redis.restart()
    elif fault == "postgres":
        site.postgres.restart()
    elif fault == "daphne":
        victim = site.servers[0].process
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    else:
        raise ValueError(fault)
    return time.monotonic()


def acked_bodies(pages: list[Page], prefix: str) -> set[str]:
    return {body for page in pages for _, body in page.acked if body.startswith(prefix)}


def recovered(pages: list[Page], back: float, prefix: str) -> bool:
    if not all(page.is_open for page in pages):
        return False
    if not all(any(t >= back for t, _ in page.acked) for page in pages):
        return False
    want = acked_bodies(pages, prefix)
    return all(want <= {b for _, b in page.shown} for page in pages)


async def phase(site: Site, fault: str, rate: float, before: float, after: float, limit: float):
    """Chat for `before` s, cause the fault, chat until recovered and `after` s more, drain."""
    pages = site.pages
    prefix = f"{fault}-{time.monotonic_ns()}"
    marks = {page.name: (len(page.duplicates), len(page.out_of_order), len(page.not_sent))
             for page in pages}  # fmt: skip
    for page in pages:
        page.prefix, page.counter, page.sending = prefix, 0, True
    await asyncio.sleep(before)
    started = time.monotonic()
    back = await asyncio.to_thread(inject, site, fault)
    recovered_at = presence_at = None
    deadline = back + limit
    while time.monotonic() < deadline and (recovered_at is None or presence_at is None):
        now = time.monotonic()
        if recovered_at is None and recovered(pages, back, prefix):
            recovered_at = now
        if recovered_at is not None and presence_at is None:
            if await fresh_presence(site) == len(pages):
                presence_at = time.monotonic()
            else:
                await asyncio.sleep(0.25)
        await asyncio.sleep(0.05)
    await asyncio.sleep(after)
    for page in pages:
        page.sending = False
    # Drain: what is in the composers now gets its answer; the rest is counted as it stands.
    drain = time.monotonic() + 15
    while time.monotonic() < drain and any(page.draft for page in pages):
        await asyncio.sleep(0.05)
    want = acked_bodies(pages, prefix)
    while time.monotonic() < drain and not all(
        want <= {b for _, b in page.shown} for page in pages
    ):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # late duplicates would show here
    want = acked_bodies(pages, prefix)
    seen = {}
    lost = duplicated = disorder = 0
    for page in pages:
        mine = [b for _, b in page.shown if b.startswith(prefix)]
        seen[page.name] = len(mine)
        lost += len(want - set(mine))
        duplicated += sum(b.startswith(prefix) for b in page.duplicates[marks[page.name][0] :])
        disorder += len(page.out_of_order) - marks[page.name][1]
        for sender in pages:
            sent = [b for _, b in sender.acked if b.startswith(prefix)]
            if [b for b in mine if b in set(sent)] != sent:
                disorder += 1
    return {
        "fault": fault,
        "acknowledged": len(want),
        "seen": seen,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": disorder,
        "not_sent": sum(len(p.not_sent) - marks[p.name][2] for p in pages),
        "unanswered": sum(1 for p in pages if p.draft),
        "outage": back - started,
        "recovery": None if recovered_at is None else recovered_at - back,
        "presence": None if presence_at is None else presence_at - back,
        "reconnects": sum(p.opens for p in pages),
    }


@contextlib.asynccontextmanager
async def pages_running(site: Site, rate: float | None = None):
    """Every page of `site` open (reconnecting as room.html does) while the block runs, and, at
    `rate` messages a second, writing and sending. Yields the list of tasks: a task added to it
    is cancelled with them at the end."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(page.run(stop)) for page in site.pages]
    if rate:
        tasks += [asyncio.create_task(page.type_and_send(stop, 1 / rate)) for page in site.pages]
    try:
        yield tasks
    finally:
        stop.set()
        for page in site.pages:
            if page.socket is not None:
                await page.socket.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_faults(
    members: int = 3,
    rate: float = 1.5,
    before: float = 2.0,
    after: float = 2.0,
    limit: float = 30.0,
    faults: tuple[str, ...] = FAULTS,
    workdir: Path | None = None,
) -> list[dict]:
    """One site, each fault in turn; the figures of each phase."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="parley-faults-"))
    with Site(members, workdir) as site:
        results = []
        async with pages_running(site, rate=rate):
            async with asyncio.timeout(60):
                while not all(page.is_open and page.online == members for page in site.pages):
                    await asyncio.sleep(0.05)
            for fault in faults:
                result = await phase(site, fault, rate, before, after, limit)
                result["logs"] = site.logs()
                results.append(result)
                log(fault, {k: v for k, v in result.items() if k != "logs"})
                if fault == "daphne":
                    await asyncio.to_thread(site.replace_server, 0)
    return results


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table(runs: list[list[dict]]) -> str:
    lines = [
        "| Fault | Acknowledged | Seen per member | Lost | Duplicated | Out of order | "
        '"Not sent" shown | Outage (s) | Recovered (s, median) | Presence back (s, median) |',
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fault in FAULTS:
        rows = [r for run in runs for r in run if r["fault"] == fault]
        if not rows:
            continue

        def med(key, rows=rows):
            values = [r[key] for r in rows if r[key] is not None]
            return fmt(statistics.median(values)) if len(values) == len(rows) else "not recovered"

        seen = "; ".join("/".join(str(n) for n in r["seen"].values()) for r in rows)
        lines.append(
            f"| {fault} | {' / '.join(str(r['acknowledged']) for r in rows)} | {seen} | "
            f"{sum(r['lost'] for r in rows)} | {sum(r['duplicated'] for r in rows)} | "
            f"{sum(r['out_of_order'] for r in rows)} | {sum(r['not_sent'] for r in rows)} | "
            f"{med('outage')} | {med('recovery')} "
            f"({', '.join(fmt(r['recovery']) for r in rows)}) | {med('presence')} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--rate", type=float, default=1.5, help="messages a second per member")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--json", help="write every phase's figures here")
    args = parser.parse_args()
    faults = tuple(args.faults.split(","))
    runs = []
    for run in range(args.runs):
        log(f"run {run + 1} of {args.runs}")
        runs.append(asyncio.run(run_faults(members=args.members, rate=args.rate, faults=faults)))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    print(f"{args.runs} runs, {args.members} members, {args.rate} messages/s each; {machine()}")
    print(table(runs))
    for run in runs:
        for result in run:
            if result["recovery"] is None:
                print(result["logs"], file=sys.stderr)


if __name__ == "__main__":
    main()
