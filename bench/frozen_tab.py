"""Frozen-tab benchmark: one member's socket stops reading while 1,000 messages are posted.

N members are in one room on one daphne process; N - 1 of them read every message (the load
generators of chat_fanout.py, bench/client.py), and in the runs with a frozen tab the last one
opens the room's socket with a 4 KiB receive buffer, asks for the room's messages, and never
reads again. The same 1,000 messages are posted in each run. Three kinds of run, --runs each,
in turn:

  none     no frozen tab: the baseline for the others' delivery
  frozen   a frozen tab, with the server's bound on unsent bytes (SOCKET_UNSENT_LIMIT, default)
  unbound  a frozen tab, with the bound off (SOCKET_UNSENT_LIMIT=0): what the bound saves

For each it reports the others' p50/p99 delivery, lost messages, the server's peak RSS growth
over its idle RSS with everybody connected (sampled every 50 ms), and whether the server
closed the frozen socket. Messages are padded (--pad characters, `'`, which HTML escapes to six
bytes) so that what the frozen tab is sent outgrows the kernel's buffers: on loopback the
server's send buffer alone grows to tcp_wmem's maximum (4 MiB), which holds what a short run of
small messages sends.

    .venv/bin/python bench/frozen_tab.py --quick
    .venv/bin/python bench/frozen_tab.py --members 100 --runs 3 --json /tmp/parley-bench/frozen.json

Everything is bounded and stopped by PID, and all traffic goes to 127.0.0.1 (see chat_fanout.py).
"""

# A load-test driver, not server code (see chat_fanout.py).
# ruff: noqa: ASYNC221, S108, S603

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_fanout import (
    BENCH,
    PYTHON,
    REPO,
    Worker,
    log,
    pg_admin,
    proc_rss_kib,
    run_phase,
    start_servers,
    stop,
    stop_worker,
    wait_idle,
    wait_quiet,
)

KINDS = ("none", "frozen", "unbound")


def frozen_socket(port: int, room_id: int, session: str) -> socket.socket:
    """A room socket whose page asked for the room's messages and then froze."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/rooms/{room_id}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: sessionid={session}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # nothing past the handshake is read, ever
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"frozen socket refused: {head[:80]!r}")
    data, mask = json.dumps({"action": "resume", "after": 0}).encode(), os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)
    return sock


def sends_for(members: int, messages: int, rate: float) -> list[list]:
    """[offset s, message id, sender index]: `messages` at `rate` a second, spread over enough
    senders that none passes the flood limit (10 in 5 s)."""
    senders = min(members, max(1, round(rate)))
    return [[k / rate, 1 + k, (k % senders) * members // senders] for k in range(messages)]


async def sample_rss(pid: int, peak: list[int], every: float = 0.05) -> None:
    while True:
        with contextlib.suppress(OSError, RuntimeError):
            peak[0] = max(peak[0], proc_rss_kib(pid))
        await asyncio.sleep(every)


async def run_once(kind: str, run: int, args) -> dict:
    n = args.members
    tag = f"{kind}-n{n}-r{run}"
    workdir = Path(args.workdir) / f"{time.strftime('%H%M%S')}-{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(DEBUG="1", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="parley.settings")
    if kind == "unbound":
        env["SOCKET_UNSENT_LIMIT"] = "0"
    db_name = None
    if args.db == "postgres":
        db_name = f"parley_frozen_{os.getpid()}_{run}_{kind}"
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{db_name}"')
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    servers: list[subprocess.Popen] = []
    workers: list[Worker] = []
    frozen = None
    result: dict = {"kind": kind, "members": n}
    out = workdir / "members.json"
    try:
        setup = subprocess.run(
            [PYTHON, str(BENCH / "setup_db.py"), "--members", str(n), "--out", str(out)],
            cwd=args.repo,
            env=env,
            timeout=600,
            capture_output=True,
            text=True,
        )
        if setup.returncode:
            raise RuntimeError(f"setup failed:\n{setup.stderr[-3000:]}")
        data = json.loads((workdir / "members.json").read_text())
        (port,) = start_servers(args, env, 1, workdir, servers)
        pid = servers[0].pid
        readers = data["members"][:-1]
        w_count = max(1, min(args.clients, len(readers)))
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
                {"index": i, "id": m["id"], "session": m["session"], "port": port}
                for i, m in enumerate(readers)
                if i % w_count == w
            ]
            config = {
                "room_id": data["room_id"],
                "ports": [port],
                "members": mine,
                "out_dir": str(workdir),
                "name": worker.name,
                "pad": " " + "'" * args.pad,
            }
            proc.stdin.write((json.dumps(config) + "\n").encode())
            await proc.stdin.drain()
            await asyncio.wait_for(proc.stdout.readline(), 30)
        await workers[0].ask({"cmd": "warmup"}, timeout=60)
        replies = await asyncio.gather(*(w.ask({"cmd": "connect"}, 300) for w in workers))
        connected = sum(r["connected"] for r in replies)
        if connected < len(readers):
            raise RuntimeError(f"only {connected}/{len(readers)} sockets connected")
        if kind != "none":
            frozen = await asyncio.to_thread(
                frozen_socket, port, data["room_id"], data["members"][-1]["session"]
            )
        await wait_idle([pid], 30)
        rss_idle = proc_rss_kib(pid)
        peak = [rss_idle]
        sampler = asyncio.create_task(sample_rss(pid, peak))
        sends = sends_for(len(readers), args.messages, args.rate)
        phase = await run_phase(workers, servers, "phase", sends, args.drain, None, workdir)
        await asyncio.sleep(1)  # the server frees what a closed socket held
        sampler.cancel()
        rss_after = proc_rss_kib(pid)
        log_text = (workdir / f"daphne-{port}.log").read_text(errors="replace")
        closed = [line for line in log_text.splitlines() if "stopped reading" in line]
        result.update(
            rss_idle_kib=rss_idle,
            rss_peak_growth_kib=peak[0] - rss_idle,
            rss_after_growth_kib=rss_after - rss_idle,
            frozen_closed=bool(closed),
            frozen_close_line=closed[0].split(": ", 1)[-1][:120] if closed else "",
            **{k: phase[k] for k in ("messages", "delivered", "lost", "refused", "sockets")},
            p50_ms=phase["p50_ms"],
            p99_ms=phase["p99_ms"],
            max_ms=phase["max_ms"],
            server_cpu_pct=phase["server_cpu_pct"][0],
            other_cpu_pct=phase["other_cpu_pct"],
        )
        log(tag, {k: result[k] for k in list(result)[2:]})
        for w in workers:
            await w.ask({"cmd": "close"}, 30)
    finally:
        if frozen is not None:
            frozen.close()
        for w in workers:
            await stop_worker(w.proc)
        for s in servers:
            stop(s)
        if db_name:
            with contextlib.suppress(Exception):
                pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        for f in workdir.glob("*.lat*"):
            f.unlink()
    return result


def summary(results: dict[str, list[dict]]) -> str:
    columns = [
        ("p50 ms", "p50_ms", "{:.1f}"),
        ("p99 ms", "p99_ms", "{:.1f}"),
        ("max ms", "max_ms", "{:.0f}"),
        ("lost", "lost", "{:.0f}"),
        ("RSS peak +MiB", "rss_peak_growth_kib", "{:.1f}"),
        ("RSS after +MiB", "rss_after_growth_kib", "{:.1f}"),
        ("srv cpu%", "server_cpu_pct", "{:.0f}"),
        ("other cpu%", "other_cpu_pct", "{:.0f}"),
    ]
    lines = ["kind    | runs | frozen closed | " + " | ".join(c for c, _, _ in columns)]
    for kind, runs in results.items():
        ok = [r for r in runs if "p99_ms" in r]
        cells = []
        for _, key, fmt in columns:
            values = [r[key] for r in ok if r.get(key) is not None]
            if key.startswith("rss"):
                values = [v / 1024 for v in values]
            cells.append(fmt.format(statistics.median(values)) if values else "-")
        closed = f"{sum(r['frozen_closed'] for r in ok)}/{len(ok)}"
        lines.append(f"{kind:7} | {len(ok)}/{len(runs)} | {closed:13} | " + " | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", "-n", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=40.0, help="messages per second")
    parser.add_argument("--pad", type=int, default=1000, help="characters added to each body")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--db",
        choices=["postgres", "sqlite"],
        default="sqlite",
        help="sqlite (one process, a file in the workdir) keeps the figures clear of what else "
        "the machine's PostgreSQL is doing",
    )
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--drain", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--wait-quiet", type=float, default=120.0)
    parser.add_argument("--port", type=int, default=8865)
    parser.add_argument("--server-script", help="as chat_fanout.py's")
    parser.add_argument("--repo", default=str(REPO))
    parser.add_argument("--workdir", default="/tmp/parley-bench")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--quick", action="store_true", help="N=20, 200 messages, one run")
    args = parser.parse_args()
    if args.quick:
        args.members, args.messages, args.runs = 20, 200, 1
    kinds = args.kinds.split(",")
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    # Interleaved (none, frozen, unbound, none, ...) so that a busier spell of the machine
    # falls on every kind alike.
    for run in range(args.runs):
        for kind in kinds:
            if args.wait_quiet:
                wait_quiet(args.wait_quiet, pause=5)
            try:
                r = asyncio.run(asyncio.wait_for(run_once(kind, run, args), 900))
            except Exception as exc:
                log(kind, f"run {run} failed: {exc!r}")
                r = {"kind": kind, "error": repr(exc)}
            results[kind].append(r)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    print(
        f"{args.members} members ({args.members - 1} reading), {args.messages} messages at "
        f"{args.rate:g}/s, bodies padded by {args.pad}; median of {args.runs} run(s)."
    )
    print(summary(results))
    sys.exit(1 if any("error" in r for runs in results.values() for r in runs) else 0)


if __name__ == "__main__":
    main()
