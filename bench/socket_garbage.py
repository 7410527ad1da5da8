"""What a member socket leaves for the garbage collector when it opens and closes.

    .venv/bin/python bench/socket_garbage.py [--members 40] [--churn 20] [--repo .]

Makes a fresh PostgreSQL database (--db-name) with members and sessions (presence_setup.py),
starts one daphne through this same file in "serve" mode, opens every member's socket, then asks
the server to collect (SIGUSR1: a baseline), closes and reopens --churn sockets, and asks it again
(SIGUSR2) with `gc.DEBUG_SAVEALL`: the server counts what that collection found, by type, per
socket churned, and writes one reference cycle through each kind of object that should have died
with its socket (a consumer, daphne's protocol, a task), with the attribute or key of each link.
A socket that refcounting frees at once leaves nothing here.

The report is printed, and kept in <workdir>/garbage.txt.
"""

# A diagnostic script: it starts its own server and database and waits on them simply.
# ruff: noqa: ASYNC110, ASYNC220, ASYNC230, ASYNC240, S108, S603, S607

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable


# --- the server side -----------------------------------------------------------------------------


def type_name(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def describe_link(src, dst) -> str:
    """How `src` refers to `dst`: an attribute name, a dict key, an index, or the type of dst."""
    if isinstance(src, dict):
        for k, v in src.items():
            if v is dst:
                return f"[{k!r}]"[:60]
    if isinstance(src, list | tuple):
        for i, v in enumerate(src):
            if v is dst:
                return f"[{i}]"
    if hasattr(src, "__dict__") and src.__dict__ is dst:
        return ".__dict__"
    for name in ("__self__", "__func__", "cr_frame", "f_locals", "__closure__", "cell_contents"):
        with contextlib.suppress(Exception):
            if getattr(src, name) is dst:
                return f".{name}"
    return f"-> {type_name(dst)}"


def cycle_through(start, members: dict[int, object]) -> list[str] | None:
    """The shortest path from `start` back to itself inside `members` (breadth first)."""
    parents: dict[int, int] = {}
    queue = [start]
    seen = {id(start)}
    while queue:
        nxt = []
        for obj in queue:
            for ref in gc.get_referents(obj):
                if ref is start:
                    path = [obj]
                    while id(path[-1]) in parents:
                        path.append(members[parents[id(path[-1])]])
                    path.reverse()  # start ... obj
                    lines = [type_name(start)]
                    chain = [*path, start]
                    for a, b in itertools.pairwise(chain):
                        lines.append(f"  {describe_link(a, b)}  ({type_name(b)})")
                    return lines
                if id(ref) in members and id(ref) not in seen:
                    seen.add(id(ref))
                    parents[id(ref)] = id(obj)
                    nxt.append(ref)
        queue = nxt
    return None


def serve() -> None:
    out = Path(os.environ["PARLEY_GARBAGE_REPORT"])
    sys.path.insert(0, os.getcwd())
    import parley.asgi  # noqa: F401  (loads the application, as daphne would)

    def baseline(*_):
        gc.collect()
        out.with_suffix(".baseline").write_text("ok\n")

    def report(*_):
        churned = int(Path(str(out) + ".churned").read_text())
        gc.set_debug(gc.DEBUG_SAVEALL)
        found = gc.collect()
        gc.set_debug(0)
        garbage = list(gc.garbage)
        gc.garbage.clear()
        members = {id(o): o for o in garbage}
        counts = Counter(type_name(o) for o in garbage)
        lines = [
            f"collected {found} objects after {churned} sockets closed and reopened "
            f"({found / max(churned, 1):.1f} per socket)",
            "",
            "by type (count, per socket):",
        ]
        lines += [
            f"  {n:6d} {n / max(churned, 1):6.1f}  {name}" for name, n in counts.most_common(40)
        ]
        wanted = (
            "Consumer",
            "WebSocketProtocol",
            "WebSocketServerProtocol",
            "Task",
            "Future",
            "HTTPChannel",
            "SocketSession",
            "User",
            "SessionStore",
            "Request",
        )
        shown: set[str] = set()
        for obj in garbage:
            name = type_name(obj)
            if name in shown or not any(w in name for w in wanted):
                continue
            shown.add(name)
            cycle = cycle_through(obj, members)
            lines += ["", f"a cycle through {name}:"]
            lines += cycle or ["  (on no cycle: only referred to from one)"]
        lines += ["", "what one socket leaves: the objects reachable from a WebSocketProtocol,"]
        lines += ["and every link between them (object: link -> object):"]
        start = next((o for o in garbage if type(o).__name__ == "WebSocketProtocol"), None)
        if start is not None:
            reach, todo = {id(start): start}, [start]
            while todo:
                for ref in gc.get_referents(todo.pop()):
                    if id(ref) in members and id(ref) not in reach:
                        reach[id(ref)] = ref
                        todo.append(ref)
            label = {i: f"{type_name(o)}#{n}" for n, (i, o) in enumerate(reach.items())}
            for i, o in reach.items():
                for ref in gc.get_referents(o):
                    if id(ref) in reach:
                        lines.append(f"  {label[i]}: {describe_link(o, ref)} -> {label[id(ref)]}")
            lines.append(f"  ({len(reach)} objects)")
        live = Counter(
            type_name(o) for o in gc.get_objects() if type(o).__name__.endswith("Consumer")
        )
        lines += ["", f"consumers alive now (after the collection): {dict(live)}"]
        del garbage, members
        out.write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, baseline)
    signal.signal(signal.SIGUSR2, report)
    import runpy

    sys.argv = ["daphne", *sys.argv[2:]]
    runpy.run_module("daphne", run_name="__main__")


# --- the client side -----------------------------------------------------------------------------


async def drive(args, env, workdir: Path) -> str:
    from websockets.asyncio.client import connect

    members = json.loads((workdir / "members.json").read_text())["members"]
    report = workdir / "garbage.txt"
    env = {**env, "PARLEY_GARBAGE_REPORT": str(report)}
    log = open(workdir / "daphne.log", "wb")  # noqa: SIM115 - closed at exit
    server = subprocess.Popen(
        [
            PYTHON,
            __file__,
            "serve",
            "-b",
            "127.0.0.1",
            "-p",
            str(args.port),
            "parley.asgi:application",
        ],
        cwd=args.repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", args.port)
                w.close()
                break
            await asyncio.sleep(0.1)

        async def open_socket(m):
            return await connect(
                f"ws://127.0.0.1:{args.port}/ws/member/",
                origin=f"http://127.0.0.1:{args.port}",
                additional_headers={"Cookie": f"sessionid={m['session']}"},
                ping_interval=None,
                compression=None,
            )

        async def drain(ws):
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

        sockets = [await open_socket(m) for m in members]
        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        await asyncio.sleep(1)
        os.kill(server.pid, signal.SIGUSR1)
        while not report.with_suffix(".baseline").exists():
            await asyncio.sleep(0.1)
        for i in range(args.churn):
            await sockets[i].close()
            await readers[i]
            await asyncio.sleep(0.05)
            if args.close_only:
                continue
            if args.quick_close:  # closed as soon as it is open: still connecting on the server
                await (await open_socket(members[i])).close()
            sockets[i] = await open_socket(members[i])
            readers[i] = asyncio.create_task(drain(sockets[i]))
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # the server finishes its leaves
        Path(str(report) + ".churned").write_text(str(args.churn))
        os.kill(server.pid, signal.SIGUSR2)
        for _ in range(300):
            if report.exists():
                break
            await asyncio.sleep(0.1)
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        return report.read_text()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--churn", type=int, default=20)
    parser.add_argument(
        "--close-only", action="store_true", help="close --churn sockets, open none"
    )
    parser.add_argument(
        "--quick-close", action="store_true", help="also open a socket and close it at once"
    )
    parser.add_argument("--layer", default="memory", help="memory|pubsub|core (Redis)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6383/0")
    parser.add_argument("--repo", default=os.getcwd())
    parser.add_argument("--db-name", default="wt_gc")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--workdir", default="/tmp/parley-bench/garbage")
    args = parser.parse_args()
    workdir = Path(args.workdir) / time.strftime("%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(DEBUG="1", PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="parley.settings")
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.db_name}"
    if args.layer != "memory":
        env.update(REDIS_URL=args.redis_url, REDIS_CHANNEL_LAYER=args.layer)
    for sql in (
        f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)',
        f'CREATE DATABASE "{args.db_name}"',
    ):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    subprocess.run(
        [
            PYTHON,
            str(BENCH / "presence_setup.py"),
            "--members",
            str(args.members),
            "--contacts",
            "4",
            "--out",
            str(workdir / "members.json"),
        ],
        cwd=args.repo,
        env=env,
        check=True,
    )
    print(asyncio.run(drive(args, env, workdir)))


if __name__ == "__main__":
    main()
