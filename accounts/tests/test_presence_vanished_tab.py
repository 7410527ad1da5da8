"""A tab that goes away without closing its socket (a laptop lid, a dropped network) drops out of
presence by daphne's keepalive: no pong within the ping timeout, and the socket is closed."""

import asyncio
import re
import time

import pytest
import websockets
from channels.db import database_sync_to_async

from accounts.models import Contact
from parley.tests.live_server import LiveServer

# A real daphne process needs a database it can open too: PostgreSQL's, in that configuration.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PING_INTERVAL, PING_TIMEOUT = 1, 2
# daphne looks at its sockets' timers every 2 s (twisted's LoopingCall in daphne.server).
BOUND = PING_INTERVAL + PING_TIMEOUT + 2


class FreezableLink:
    """A TCP link to the server that can go silent: still open at both ends, carrying nothing,
    as a sleeping laptop's connection looks to a server."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _carry(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self.writers += [writer, upstream_writer]

        async def pipe(source, sink):
            while data := await source.read(65536):
                await self.flowing.wait()  # frozen: hold the bytes, send nothing, close nothing
                sink.write(data)
                await sink.drain()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    def freeze(self) -> None:
        self.flowing.clear()

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.server.close()


async def member_socket(port: int, cookie: bytes):
    # The page's origin is where the browser reached the site: through the link, for Bob.
    return await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/member/",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": cookie.decode()},
        ping_interval=None,  # the server pings; this client must not keep the link busy
    )


async def until_status(socket, member, status: str, wait: float) -> None:
    """Read frames until one says `member` has `status` (a socket opens with every contact's
    status as it is then, so earlier ones may come first)."""
    async with asyncio.timeout(wait):
        while True:
            frame = await socket.recv()
            found = re.search(
                rf'presence-of-{member.pk}".*?<span class="presence__text">(.*?)</span>', frame
            )
            if found and found.group(1) == status:
                return


async def test_a_tab_that_vanished_without_closing_goes_offline_within_the_ping_timeout(
    user_factory, session_cookie_factory
):
    ada = await database_sync_to_async(user_factory)(username="ada")
    bob = await database_sync_to_async(user_factory)(username="bob")
    await database_sync_to_async(Contact.objects.create)(member=ada, other=bob)
    await database_sync_to_async(Contact.objects.create)(member=bob, other=ada)
    server = await asyncio.to_thread(
        LiveServer.for_tests,
        daphne_args=("--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT)),
        REDIS_URL="",  # one process: its in-memory layer is the whole truth
    )
    link = FreezableLink(server.port)
    try:
        link_port = await link.start()
        ada_socket = await member_socket(
            server.port, await database_sync_to_async(session_cookie_factory)(ada)
        )
        bob_socket = await member_socket(
            link_port, await database_sync_to_async(session_cookie_factory)(bob)
        )
        await until_status(ada_socket, bob, "Online", wait=5)

        # Bob's laptop sleeps: his socket stays open at both ends, and nothing more gets through.
        link.freeze()
        frozen_at = time.monotonic()
        # Ada stays connected throughout: her own pongs keep her socket alive.
        await until_status(ada_socket, bob, "Last seen just now", wait=BOUND + 3)
        assert time.monotonic() - frozen_at <= BOUND + 1
        await ada_socket.close()
        bob_socket.transport.abort()
    finally:
        await link.close()
        await asyncio.to_thread(server.stop)
