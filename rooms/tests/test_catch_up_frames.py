"""A page far behind catches up however long the messages: the catch-up goes out in frames of
at most fragments.FRAME_BYTES, each moving the page's resume point on, paced to what the page
takes (rooms/consumers.py, `send_from_database`)."""

import re

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from rooms import fragments
from rooms.models import Message, Room

pytestmark = pytest.mark.django_db(transaction=True)

# 4,000 characters (the most a message may have) that escape to five bytes each: a message
# renders to some 20 KB, so 520 of them are about 10 MB.
BODY = "&" * 4000
BEHIND = 520
MIB = 1024 * 1024


def fill(room: Room, author, count: int) -> None:
    Message.objects.bulk_create(
        [Message(room=room, author=author, seq=n, body=BODY) for n in range(1, count + 1)]
    )
    Room.objects.filter(pk=room.pk).update(last_seq=count)


def seqs(frame: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-seq="(\d+)"', frame)]


def resume_point(frame: str) -> int:
    return int(re.search(r'id="room-seq" name="after" value="(\d+)"', frame).group(1))


@pytest.fixture(autouse=True)
def fresh_flood_counters():
    cache.clear()


@pytest.fixture
def open_room(site_socket):
    async def open_socket(room: Room, member, after: int):
        communicator = await site_socket(f"/ws/rooms/{room.pk}/", member)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"action": "resume", "after": after})
        return communicator

    return open_socket


async def message_frames_until(communicator, last: int, wait: float = 10) -> list[str]:
    """The frames carrying messages, until the one with seq `last` (presence etc. skipped)."""
    frames: list[str] = []
    while not frames or seqs(frames[-1])[-1] < last:
        frame = await communicator.receive_from(timeout=wait)
        if "data-seq" in frame:
            frames.append(frame)
    return frames


async def test_a_page_hundreds_of_long_messages_behind_gets_each_once_in_order_in_small_frames(
    duo, open_room
):
    await database_sync_to_async(fill)(duo.room, duo.ada, BEHIND)
    page = await open_room(duo.room, duo.bob, after=0)

    frames = await message_frames_until(page, BEHIND)

    shown = [seq for frame in frames for seq in seqs(frame)]
    assert shown == list(range(1, BEHIND + 1))
    assert len(frames) > 20  # some 10 MB in all
    for frame in frames:
        assert len(frame.encode()) <= fragments.FRAME_BYTES < MIB
        # Each frame moves the resume point to its own last message.
        assert resume_point(frame) == seqs(frame)[-1]
        assert frame.count("&amp;") == 4000 * len(seqs(frame))  # whole messages only
    assert await page.receive_nothing(timeout=0.3) or "data-seq" not in await page.receive_from()
    await page.disconnect()


async def test_a_page_that_drops_mid_catch_up_resumes_from_the_last_frame_it_showed(duo, open_room):
    await database_sync_to_async(fill)(duo.room, duo.ada, BEHIND)
    page = await open_room(duo.room, duo.bob, after=0)
    first = (await message_frames_until(page, 1))[0]
    await page.disconnect()  # the network drops after one frame

    shown = resume_point(first)
    assert 1 <= shown < BEHIND
    again = await open_room(duo.room, duo.bob, after=shown)
    rest = await message_frames_until(again, BEHIND)

    assert seqs(first) + [s for frame in rest for s in seqs(frame)] == list(range(1, BEHIND + 1))
    await again.disconnect()


def test_frames_are_cut_by_size_and_one_longest_message_always_fits(duo):
    fill(duo.room, duo.ada, 40)
    batch = list(duo.room.messages.select_related("author").order_by("seq"))

    frames = fragments.message_frames(batch, limit=64 * 1024)

    assert [seq for html, _ in frames for seq in seqs(html)] == list(range(1, 41))
    assert all(len(html.encode()) <= 64 * 1024 for html, _ in frames)
    assert [last for _, last in frames] == [seqs(html)[-1] for html, _ in frames]
    # A limit smaller than one message still sends it, alone in its frame.
    assert [seqs(html) for html, _ in fragments.message_frames(batch[:2], limit=1)] == [[1], [2]]
