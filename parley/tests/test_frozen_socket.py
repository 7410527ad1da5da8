"""A socket whose browser stopped reading is closed before it grows the server, and the other
members of its room keep receiving (parley/live/transport.py); the caps on open sockets count
the address a proxy forwards. Against a real daphne process: the buffer that grows is Twisted's.
"""

import asyncio
import base64
import json
import os
import socket
import struct

import pytest
import websockets
from channels.db import database_sync_to_async
from django.core.cache import cache

from parley.live.sockets import CROWDED
from parley.tests.live_server import LiveServer
from rooms.models import Message, Room

# A real daphne process needs a database it can open too: PostgreSQL's, in that configuration.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

LIMIT = 256 * 1024
BODY = "frozen tab " + "x" * 1500  # a catch-up frame of 500 stays under 1 MiB (daphne's cap)


def kernel_can_hold() -> int:
    """Bytes the kernel may buffer for one unread connection before Twisted's buffer grows:
    on loopback the server's send buffer grows to tcp_wmem's maximum (4 MiB by default)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as fh:
        return int(fh.read().split()[2])


# Messages in the room before anyone opens it: what the frozen tab is sent on resuming is
# more than the kernel and the limit together can hold.
HELD = (2 * kernel_can_hold() + 4 * LIMIT) // len(BODY)


@pytest.fixture
def server():
    cache.clear()
    server = LiveServer.for_tests(
        daphne_args=("--proxy-headers",),
        SOCKET_UNSENT_LIMIT=str(LIMIT),
        SOCKETS_PER_ADDRESS="2",
    )
    yield server
    server.stop()


def fill(room: Room, author, count: int) -> None:
    Message.objects.bulk_create(
        [Message(room=room, author=author, seq=n, body=BODY) for n in range(1, count + 1)]
    )
    Room.objects.filter(pk=room.pk).update(last_seq=count)


class FrozenTab:
    """A raw WebSocket client with a tiny receive buffer that, once it has asked for the room's
    messages, never reads again: a tab the browser froze."""

    def __init__(self, port: int, path: str, cookie: str, address: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Cookie: {cookie}\r\nX-Forwarded-For: {address}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # byte by byte: nothing past the handshake is read
        assert b" 101 " in head.split(b"\r\n", 1)[0], head

    def send_text(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert len(data) < 126
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(data)) + mask + masked)

    def read_until_closed(self, limit: int) -> tuple[int, bool]:
        """Wakes up and reads: (bytes read, whether the server had closed the connection)."""
        total = 0
        try:
            while total < limit:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return total, True
                total += len(chunk)
        except ConnectionResetError:
            return total, True
        except TimeoutError:
            return total, False
        return total, False


async def room_socket(server, room, cookie: str, address: str, after: int | None = 0):
    sock = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/rooms/{room.pk}/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie, "X-Forwarded-For": address},
        max_size=None,
    )
    if after is not None:
        await sock.send(json.dumps({"action": "resume", "after": after}))
    return sock


async def until(sock, text: str, wait: float = 30) -> None:
    async with asyncio.timeout(wait):
        while text not in await sock.recv():
            pass


async def test_a_tab_that_stops_reading_is_closed_and_the_others_keep_receiving(
    server, duo, session_cookie_factory
):
    await database_sync_to_async(fill)(duo.room, duo.ada, HELD)
    cookie_of = database_sync_to_async(session_cookie_factory)
    # Bob's page has everything already (a catch-up is the frozen tab's burst, not his).
    bob_cookie = (await cookie_of(duo.bob)).decode()
    bob = await room_socket(server, duo.room, bob_cookie, "192.0.2.20", after=HELD)
    await until(bob, 'id="room-presence"')
    frozen = FrozenTab(
        server.port,
        f"/ws/rooms/{duo.room.pk}/",
        (await cookie_of(duo.ada)).decode(),
        "192.0.2.10",
    )
    frozen.send_text(json.dumps({"action": "resume", "after": 0}))

    # Live messages go on reaching Bob, while the frozen tab's frames find its buffer full.
    for n in range(3):
        await bob.send(json.dumps({"action": "send", "body": f"still here {n}", "key": f"b{n}"}))
        await until(bob, f"still here {n}")

    # The tab stays frozen until the server says it closed it (or a minute has passed).
    async with asyncio.timeout(60):
        while "Closing a socket that stopped reading" not in server.tail(200):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    read, closed = await asyncio.to_thread(frozen.read_until_closed, 10 * HELD * len(BODY))
    assert closed, "the server kept the frozen socket open"
    assert read < HELD * len(BODY)  # it never got all it was sent: the rest was dropped
    # Bob is still connected and still receives.
    await bob.send(json.dumps({"action": "send", "body": "after the close", "key": "b9"}))
    await until(bob, "after the close")
    await bob.close()


async def test_the_address_cap_counts_the_address_the_proxy_forwards(
    server, duo, session_cookie_factory
):
    cookie_of = database_sync_to_async(session_cookie_factory)
    ada, bob = (await cookie_of(duo.ada)).decode(), (await cookie_of(duo.bob)).decode()
    held = [
        await room_socket(server, duo.room, ada, "198.51.100.1"),
        await room_socket(server, duo.room, bob, "198.51.100.1"),
    ]
    third = await room_socket(server, duo.room, bob, "198.51.100.1", after=None)
    told = await third.recv()
    assert "Too many live connections from your network address" in told
    await third.wait_closed()
    assert third.close_code == CROWDED, server.tail()
    other = await room_socket(server, duo.room, bob, "198.51.100.2")
    await until(other, 'id="room-presence"', wait=10)
    for sock in (*held, other):
        await sock.close()
