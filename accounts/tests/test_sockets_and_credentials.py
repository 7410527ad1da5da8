"""A member's open sockets close when the credentials their session rests on change, as they do
when that session logs out; the session that made the change keeps its own."""

import re

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from conftest import PASSWORD
from parley.asgi import application
from parley.live.members import LOGGED_OUT, member_push

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "another-long-and-unguessable-passphrase"


class Browser:
    """One browser of the member: its own session, with a member socket and a room socket."""

    def __init__(self, member, room):
        self.member, self.room = member, room
        self.client = Client()

    async def open(self) -> "Browser":
        await database_sync_to_async(self.client.login)(
            username=self.member.username, password=PASSWORD
        )
        self.member_socket = await self._connect("/ws/member/")
        self.room_socket = await self._connect(f"/ws/rooms/{self.room.pk}/")
        await self.room_socket.send_json_to({"action": "resume", "after": 0})
        return self

    async def _connect(self, path: str) -> WebsocketCommunicator:
        cookie = self.client.cookies[settings.SESSION_COOKIE_NAME].value
        socket = WebsocketCommunicator(
            application,
            path,
            headers=[
                (b"host", b"127.0.0.1:8000"),
                (b"origin", b"http://127.0.0.1:8000"),
                (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
            ],
        )
        connected, _ = await socket.connect()
        assert connected
        return socket

    async def close(self) -> None:
        for socket in (self.member_socket, self.room_socket):
            await socket.disconnect()


async def closes_for_good(socket: WebsocketCommunicator, wait: float = 3) -> bool:
    """Whether the socket closes with LOGGED_OUT (frames before the close are skipped)."""
    while True:
        output = await socket.receive_output(timeout=wait)
        if output["type"] == "websocket.close":
            return output.get("code") == LOGGED_OUT


async def still_works(browser: Browser) -> bool:
    """Its member socket still gets pushes and its room socket still posts."""
    html = '<p id="probe" hx-swap-oob="true">still here</p>'
    await database_sync_to_async(member_push)(member_id=browser.member.pk, html=html)
    while (frame := await browser.member_socket.receive_from(timeout=3)) != html:
        assert "websocket.close" not in frame
    await browser.room_socket.send_json_to({"action": "send", "body": "still in", "key": "k9"})
    while "data-seq" not in (frame := await browser.room_socket.receive_from(timeout=3)):
        pass
    return "still in" in frame


@pytest.fixture
def ada_in_a_room(user, room_factory):
    return user, room_factory(owner=user)


async def test_changing_the_password_closes_the_other_sessions_sockets_and_keeps_its_own(
    ada_in_a_room,
):
    ada, room = ada_in_a_room
    here, elsewhere = [await Browser(ada, room).open() for _ in range(2)]

    response = await database_sync_to_async(here.client.post)(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302

    assert await closes_for_good(elsewhere.member_socket)
    assert await closes_for_good(elsewhere.room_socket)
    assert await still_works(here)
    await here.close()


async def test_after_a_password_change_logging_out_still_closes_that_browsers_sockets(
    ada_in_a_room,
):
    ada, room = ada_in_a_room
    here = await Browser(ada, room).open()
    await database_sync_to_async(here.client.post)(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert await still_works(here)

    await database_sync_to_async(here.client.post)(reverse("account_logout"))

    assert await closes_for_good(here.member_socket)
    assert await closes_for_good(here.room_socket)


async def test_a_second_password_change_elsewhere_closes_the_sockets_the_first_one_kept(
    ada_in_a_room,
):
    ada, room = ada_in_a_room
    here, elsewhere = [await Browser(ada, room).open() for _ in range(2)]
    await database_sync_to_async(here.client.post)(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert await closes_for_good(elsewhere.member_socket)
    assert await still_works(here)

    # Someone who knows the new password signs in anew and changes it again.
    other = Client()
    await database_sync_to_async(other.login)(username=ada.username, password=NEW_PASSWORD)
    await database_sync_to_async(other.post)(
        reverse("account_change_password"),
        {"oldpassword": NEW_PASSWORD, "password1": PASSWORD, "password2": PASSWORD},
    )

    assert await closes_for_good(here.member_socket)
    assert await closes_for_good(here.room_socket)


async def test_deactivating_a_member_closes_all_their_sockets(ada_in_a_room):
    ada, room = ada_in_a_room
    browsers = [await Browser(ada, room).open() for _ in range(2)]

    ada.is_active = False
    await database_sync_to_async(ada.save)()  # as the admin's change form does

    for browser in browsers:
        assert await closes_for_good(browser.member_socket)
        assert await closes_for_good(browser.room_socket)


async def test_saving_an_active_member_leaves_their_sockets_open(ada_in_a_room):
    ada, room = ada_in_a_room
    browser = await Browser(ada, room).open()

    ada.display_name = "Countess"
    await database_sync_to_async(ada.save)()

    assert await still_works(browser)
    await browser.close()


async def test_a_password_reset_closes_all_the_members_sockets(ada_in_a_room):
    ada, room = ada_in_a_room
    browsers = [await Browser(ada, room).open() for _ in range(2)]
    stranger = Client()

    await database_sync_to_async(stranger.post)(
        reverse("account_reset_password"), {"email": ada.email}
    )
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[-1].body)
    form_page = await database_sync_to_async(stranger.get)(link.group(1), follow=True)
    response = await database_sync_to_async(stranger.post)(
        form_page.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302

    for browser in browsers:
        assert await closes_for_good(browser.member_socket)
        assert await closes_for_good(browser.room_socket)


async def test_a_room_socket_that_closes_for_a_changed_password_says_why(ada_in_a_room):
    ada, room = ada_in_a_room
    here, elsewhere = [await Browser(ada, room).open() for _ in range(2)]

    await database_sync_to_async(here.client.post)(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    while "notices" not in (frame := await elsewhere.room_socket.receive_from(timeout=3)):
        pass
    assert "no longer logged in here" in frame
    await here.close()
