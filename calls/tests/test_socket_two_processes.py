"""Two daphne processes sharing Redis: the caller's page on one, the callee's on the other."""

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache

from accounts import services as account_services
from calls import services
from parley.tests.live_server import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

# The servers import the whole site, the call socket with calls/ice.py (the turn line's).
pytest.importorskip("calls.ice")

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=x:<b>bold</b>\r\n"


@pytest.fixture
def two_servers():
    assert settings.REDIS_URL, "two processes only share a call through Redis"
    cache.clear()
    servers = [LiveServer.for_tests(REDIS_URL=settings.REDIS_URL) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def answered(user_factory):
    ada = user_factory(username="ada", display_name="Ada", password=None)
    bob = user_factory(username="bob", display_name="Bob", password=None)
    account_services.contact_request_send(sender=ada, username="bob")
    account_services.contact_request_send(sender=bob, username="ada")
    call = services.call_start(caller=ada, callee=bob, video=True)
    return services.call_accept(call_id=call.pk, member=bob), ada, bob


async def open_call(server: LiveServer, call, cookie: bytes):
    socket = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/calls/{call.pk}/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": cookie.decode()},
    )
    welcome = await next_frame(socket)
    assert welcome["type"] == "welcome"
    return socket, welcome


async def next_frame(socket, wait: float = 10) -> dict:
    async with asyncio.timeout(wait):
        return json.loads(await socket.recv())


async def test_caller_and_callee_on_two_processes_signal_through_redis(
    two_servers, answered, session_cookie_factory
):
    call, ada, bob = answered
    first, second = two_servers
    ada_socket, ada_welcome = await open_call(
        first, call, await database_sync_to_async(session_cookie_factory)(ada)
    )
    bob_socket, bob_welcome = await open_call(
        second, call, await database_sync_to_async(session_cookie_factory)(bob)
    )
    assert await next_frame(ada_socket) == {"type": "ready", "peer": bob_welcome["seat"]}
    assert await next_frame(bob_socket) == {"type": "ready", "peer": ada_welcome["seat"]}

    offer = {"type": "description", "description": {"type": "offer", "sdp": SDP}}
    await ada_socket.send(json.dumps(offer))
    text = await asyncio.wait_for(bob_socket.recv(), 10)
    assert "<b>" not in text
    assert json.loads(text) == {**offer, "from": ada_welcome["seat"]}

    answer = {"type": "description", "description": {"type": "answer", "sdp": SDP}}
    await bob_socket.send(json.dumps(answer))
    assert await next_frame(ada_socket) == {**answer, "from": bob_welcome["seat"]}

    # The callee's page goes away on its process; the caller's, on the other, is told.
    await bob_socket.close()
    assert await next_frame(ada_socket) == {"type": "peer-away"}

    # Hanging up (on whichever process) closes the caller's page for good.
    await database_sync_to_async(services.call_hangup)(call_id=call.pk, member=ada)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await next_frame(ada_socket)
    assert closed.value.rcvd.code == 4005
