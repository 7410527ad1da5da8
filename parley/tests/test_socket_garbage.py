"""A closed socket leaves nothing for the garbage collector: refcounting frees it at once, our
consumers in the test process and daphne's connection objects in a real server (see
parley/websockets.py FreedOnClose, and docs/performance.md, "Presence", finding 3)."""

import asyncio
import gc
import os
import signal
import weakref
from collections import Counter
from contextlib import contextmanager

import pytest
import websockets
from channels.db import database_sync_to_async

from parley.consumers import MemberConsumer
from parley.tests import live_server
from rooms.consumers import RoomConsumer

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def no_collections():
    """Nothing collects cyclic garbage meanwhile, so only refcounting can free an object."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def settled() -> None:
    """Let the channel layer's own tasks for a closed socket (a Redis receive) finish."""
    for _ in range(10):
        await asyncio.sleep(0.01)


def instances(cls) -> list:
    # type(), not isinstance(): isinstance asks an object its __class__, which makes a lazy
    # object left by an earlier test (a context processor's SimpleLazyObject) evaluate itself.
    return [o for o in gc.get_objects() if type(o) is cls]


def ids_of(cls) -> set[int]:
    return {id(o) for o in instances(cls)}


def the_new(cls, before: set[int]) -> weakref.ref:
    found = [o for o in instances(cls) if id(o) not in before]
    assert len(found) == 1
    return weakref.ref(found[0])


@pytest.fixture
async def busy_process(duo, site_socket):
    """Bob's socket stays open and Ada has opened and closed one before: what a process sets
    up once (the hub's subscriptions, the channel layer's and presence's Redis connections)
    is there, as it is in a server with members online."""
    bob = [
        await site_socket("/ws/member/", duo.bob),
        await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.bob),
    ]
    for socket in bob:
        assert (await socket.connect())[0]
    first = await site_socket("/ws/member/", duo.ada)
    assert (await first.connect())[0]
    await first.disconnect()
    await settled()
    yield duo
    for socket in bob:
        await socket.disconnect()


async def test_a_closed_member_socket_is_freed_at_once_without_a_collection(
    busy_process, site_socket
):
    with no_collections():
        before = ids_of(MemberConsumer)
        socket = await site_socket("/ws/member/", busy_process.ada)
        assert (await socket.connect())[0]
        consumer = the_new(MemberConsumer, before)
        await socket.disconnect()
        del socket
        await settled()

        assert consumer() is None


async def test_a_closed_room_socket_that_sent_and_received_is_freed_at_once(
    busy_process, site_socket
):
    duo = busy_process
    with no_collections():
        before = ids_of(RoomConsumer)
        socket = await site_socket(f"/ws/rooms/{duo.room.pk}/", duo.ada)
        assert (await socket.connect())[0]
        consumer = the_new(RoomConsumer, before)
        await socket.send_json_to({"action": "resume", "after": 0})
        await socket.send_json_to({"action": "send", "body": "hello", "key": "k1"})
        frames = []
        while not any("hello" in frame for frame in frames):
            frames.append(await socket.receive_from(timeout=3))
        await socket.disconnect()
        del socket
        await settled()

        assert consumer() is None


@pytest.fixture
def garbage_server(tmp_path):
    """A real daphne that reports, on request, what a full collection finds.

    It keeps its channel layer in memory even in the Redis configuration: with Redis 7.0,
    redis-py leaves a cycle of its own for every connection it opens (CLIENT SETINFO and
    CLIENT MAINT_NOTIFICATIONS are refused, and it keeps the exceptions' frames), and the
    channel layer opens one for each socket here (docs/performance.md, "Presence", finding 3).
    """
    report = tmp_path / "garbage"
    server = live_server.LiveServer.for_tests(
        module="parley.tests.daphne_garbage", GARBAGE_REPORT=str(report), REDIS_URL=""
    )

    async def garbage() -> list[str]:
        report.unlink(missing_ok=True)
        os.kill(server.process.pid, signal.SIGUSR1)
        async with asyncio.timeout(10):
            while not report.exists():  # noqa: ASYNC110 - another process writes it
                await asyncio.sleep(0.05)
        return report.read_text().split()

    server.garbage = garbage
    yield server
    server.stop()


async def refused_socket(server) -> None:
    with pytest.raises(websockets.InvalidStatus):  # no session: refused before accept
        await websockets.connect(
            f"ws://127.0.0.1:{server.port}/ws/member/", origin=f"http://127.0.0.1:{server.port}"
        )


async def member_socket(server, cookie: str):
    return await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/member/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie},
    )


async def test_refused_sockets_leave_no_garbage_in_a_real_server(garbage_server):
    server = garbage_server
    await refused_socket(server)  # a first socket sets up what the process keeps
    await server.garbage()

    for _ in range(3):
        await refused_socket(server)
    await asyncio.sleep(2.5)  # daphne lets go of a closed connection within 1-2 s

    assert Counter(await server.garbage()) == Counter(), server.tail()


async def test_member_sockets_closed_on_a_real_server_leave_no_garbage_there(
    duo, session_cookie_factory, garbage_server
):
    if "memory" in live_server.test_database_url():
        pytest.skip("a server process cannot open this run's in-memory SQLite database")
    server = garbage_server
    cookie_of = database_sync_to_async(session_cookie_factory)
    cookie = (await cookie_of(duo.ada)).decode()
    # Bob stays, as most members do: the process keeps its subscriptions.
    bob = await member_socket(server, (await cookie_of(duo.bob)).decode())
    await (await member_socket(server, cookie)).close()  # sets up what the process keeps
    await asyncio.sleep(2.5)
    await server.garbage()

    for _ in range(3):
        await (await member_socket(server, cookie)).close()
    await asyncio.sleep(2.5)

    assert Counter(await server.garbage()) == Counter(), server.tail()
    await bob.close()
