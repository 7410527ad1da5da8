"""Contact requests and answers reach every open page of the members concerned, live."""

import pytest
from channels.db import database_sync_to_async

from accounts import services
from accounts.models import ContactRequest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def member_socket(site_socket):
    async def open_(member):
        socket = await site_socket("/ws/member/", member)
        assert (await socket.connect())[0]
        return socket

    return open_


async def next_frame_with(socket, text: str, wait: float = 4) -> str:
    while True:
        frame = await socket.receive_from(timeout=wait)
        if text in frame:
            return frame


async def call(function, **kwargs):
    return await database_sync_to_async(function)(**kwargs)


async def test_a_request_appears_in_every_open_tab_of_its_recipient(user_factory, member_socket):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    tabs = [await member_socket(bob), await member_socket(bob)]
    await call(services.contact_request_send, sender=ada, username="bob")
    for tab in tabs:
        frame = await next_frame_with(tab, 'id="request-notices"')
        assert "Ada</a> would like to be your contact." in frame
        assert "/accept/" in frame
        assert "/decline/" in frame
        assert 'id="contact-requests-badge"' in frame
        await tab.disconnect()


async def test_accepting_in_one_tab_updates_the_others_and_the_requesters_pages(
    user_factory, member_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    await call(services.contact_request_send, sender=ada, username="bob")
    request = await database_sync_to_async(ContactRequest.objects.get)()
    ada_tab, bob_other_tab = await member_socket(ada), await member_socket(bob)
    await call(services.contact_request_accept, member=bob, request_id=request.pk)

    bobs = await next_frame_with(bob_other_tab, 'id="request-notices"')
    assert "would like to be your contact" not in bobs
    assert 'id="contact-requests-badge"' not in bobs
    assert f"presence-of-{ada.pk}" in bobs

    adas = await next_frame_with(ada_tab, 'id="sidebar-contact-list"')
    assert "Bob</span>" in adas
    assert f"presence-of-{bob.pk}" in adas
    for tab in (ada_tab, bob_other_tab):
        await tab.disconnect()


async def test_a_request_to_someone_who_blocked_you_reaches_none_of_their_tabs(
    user_factory, member_socket
):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")
    await call(services.member_block, blocker=bob, username="ada")
    tab = await member_socket(bob)
    await call(services.contact_request_send, sender=ada, username="bob")
    assert await tab.receive_nothing(timeout=0.5)
    await tab.disconnect()


async def test_being_blocked_looks_like_being_removed(user_factory, member_socket):
    ada = await database_sync_to_async(user_factory)(username="ada", display_name="Ada")
    bob = await database_sync_to_async(user_factory)(username="bob", display_name="Bob")

    async def befriend():
        await call(services.contact_request_send, sender=ada, username="bob")
        await call(services.contact_request_send, sender=bob, username="ada")

    async def what_ada_sees(change) -> list[str]:
        tab = await member_socket(ada)
        while not await tab.receive_nothing(timeout=0.3):
            await tab.receive_from()  # unread badges of the conversation, as it opens
        await change()
        frames = []
        while not await tab.receive_nothing(timeout=0.5):
            frames.append(await tab.receive_from())
        await tab.disconnect()
        return frames

    await befriend()
    removed = await what_ada_sees(lambda: call(services.contact_remove, member=bob, username="ada"))
    await befriend()
    blocked = await what_ada_sees(lambda: call(services.member_block, blocker=bob, username="ada"))
    assert removed == blocked
    assert removed
    assert all("block" not in frame.lower() for frame in blocked)


async def test_names_full_of_html_are_text_in_pushed_fragments(user_factory, member_socket):
    hostile = "<script>alert(1)</script>"
    ada = await database_sync_to_async(user_factory)(username="ada", display_name=hostile)
    bob = await database_sync_to_async(user_factory)(username="bob")
    tab = await member_socket(bob)
    await call(services.contact_request_send, sender=ada, username="bob")
    frame = await next_frame_with(tab, 'id="request-notices"')
    assert hostile not in frame
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in frame
    await tab.disconnect()
