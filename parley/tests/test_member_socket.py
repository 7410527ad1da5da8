"""The member socket, through the whole ASGI stack the server runs (parley.asgi.application)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from parley.asgi import application
from parley.consumers import MemberConsumer
from parley.live.members import member_push

pytestmark = pytest.mark.django_db(transaction=True)

OWN_ORIGIN = b"http://127.0.0.1:8000"


def socket(*, cookie: bytes | None = None, origin: bytes | None = OWN_ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, "/ws/member/", headers=headers)


@pytest.fixture
def consumer_connects(monkeypatch):
    """Records every time MemberConsumer.connect runs, and lets it run."""
    calls = []
    real_connect = MemberConsumer.connect

    async def recording_connect(self):
        calls.append(self.scope["user"].pk)
        await real_connect(self)

    monkeypatch.setattr(MemberConsumer, "connect", recording_connect)
    return calls


async def test_signed_in_member_from_the_site_is_accepted(user, session_cookie_factory):
    cookie = await database_sync_to_async(session_cookie_factory)(user)
    communicator = socket(cookie=cookie)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


async def test_anonymous_socket_is_refused_before_any_consumer_code_runs(consumer_connects):
    communicator = socket(cookie=None)
    connected, _ = await communicator.connect()
    assert not connected
    assert consumer_connects == []


async def test_socket_with_a_stale_session_cookie_is_refused(consumer_connects):
    communicator = socket(cookie=b"sessionid=not-a-session-anyone-has")
    connected, _ = await communicator.connect()
    assert not connected
    assert consumer_connects == []


async def test_signed_in_socket_from_a_foreign_origin_is_refused(
    user, session_cookie_factory, consumer_connects
):
    cookie = await database_sync_to_async(session_cookie_factory)(user)
    communicator = socket(cookie=cookie, origin=b"https://evil.example")
    connected, _ = await communicator.connect()
    assert not connected
    assert consumer_connects == []


async def test_signed_in_socket_without_an_origin_is_refused(
    user, session_cookie_factory, consumer_connects
):
    cookie = await database_sync_to_async(session_cookie_factory)(user)
    communicator = socket(cookie=cookie, origin=None)
    connected, _ = await communicator.connect()
    assert not connected
    assert consumer_connects == []


async def test_fragment_pushed_to_a_member_reaches_each_of_their_tabs_and_nobody_else(
    user_factory, session_cookie_factory
):
    ada, bob = (
        await database_sync_to_async(user_factory)(),
        await database_sync_to_async(user_factory)(),
    )
    tabs = [
        socket(cookie=await database_sync_to_async(session_cookie_factory)(ada)) for _ in range(2)
    ]
    other = socket(cookie=await database_sync_to_async(session_cookie_factory)(bob))
    for communicator in (*tabs, other):
        connected, _ = await communicator.connect()
        assert connected

    html = '<div id="sidebar-room-list" hx-swap-oob="true">fresh</div>'
    await database_sync_to_async(member_push)(member_id=ada.pk, html=html)

    for tab in tabs:
        assert await tab.receive_from(timeout=2) == html
    assert await other.receive_nothing(timeout=0.3)
    for communicator in (*tabs, other):
        await communicator.disconnect()


async def test_a_frame_sent_up_the_member_socket_gets_an_error_and_the_socket_stays_open(
    user, session_cookie_factory
):
    communicator = socket(cookie=await database_sync_to_async(session_cookie_factory)(user))
    connected, _ = await communicator.connect()
    assert connected

    await communicator.send_to(text_data="not what this socket expects")
    reply = await communicator.receive_from(timeout=2)
    assert 'id="notices"' in reply
    assert "could not be understood" in reply

    html = '<p id="probe" hx-swap-oob="true">still here</p>'
    await database_sync_to_async(member_push)(member_id=user.pk, html=html)
    assert await communicator.receive_from(timeout=2) == html
    await communicator.disconnect()
