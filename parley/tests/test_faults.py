"""Faults, with nothing lost, process by process: two daphne processes on a PostgreSQL and a Redis
of the test's own, and one room page per member (bench/faults.py's WebSocket pages, which resume,
reconnect and keep their draft as room.html does), while Redis restarts, a daphne process is
killed with SIGKILL, and PostgreSQL restarts. e2e/test_faults.py does the same in Chromium
through Caddy; bench/faults.py prints the figures of docs/reliability.md.
"""

import asyncio
import time

import pytest
import websockets

from bench.faults import FAULTS, Site, pages_running, run_faults

# Runs once, in the configuration with PostgreSQL and Redis (its own servers, not those).
pytestmark = pytest.mark.redis

# Seconds; measured well under 10 on a loaded 2-core machine (docs/reliability.md).
RECOVERY = 20


async def test_every_acknowledged_message_reaches_every_page_once_in_order_through_each_fault(
    tmp_path,
):
    results = await run_faults(members=3, rate=1.5, before=1.5, after=1.5, workdir=tmp_path)

    assert [r["fault"] for r in results] == list(FAULTS)
    for r in results:
        fault = r["fault"]
        assert r["acknowledged"] > 5, fault
        assert set(r["seen"].values()) == {r["acknowledged"]}, (fault, r["seen"])
        assert r["lost"] == 0, fault
        assert r["duplicated"] == 0, fault
        assert r["out_of_order"] == 0, fault
        assert r["unanswered"] == 0, f"{fault}: a send got neither an answer nor 'not sent'"
        assert r["recovery"] is not None, f"{fault}: not recovered\n{r['logs']}"
        assert r["recovery"] < RECOVERY, fault
        assert r["presence"] is not None, f"{fault}: presence did not come back"
    # The killed process's pages came back on the other one.
    daphne = next(r for r in results if r["fault"] == "daphne")
    assert daphne["reconnects"] > next(r for r in results if r["fault"] == "redis")["reconnects"]


async def wait_until(condition, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_message_sent_while_postgresql_is_down_is_shown_not_sent_and_goes_once_later(
    tmp_path,
):
    with Site(2, tmp_path) as site:
        async with pages_running(site):
            sender, reader = site.pages
            assert await wait_until(lambda: sender.is_open and reader.is_open, 30)
            await asyncio.to_thread(site.postgres.stop)

            sender.draft = "sent while the database is away"
            sender.send_draft()
            assert await wait_until(lambda: sender.not_sent, 15), "no 'not sent' came"
            assert sender.draft == "sent while the database is away"  # the draft is kept
            assert sender.is_open  # and the socket stays open

            # The page presses Send again after each "not sent"; once the server is back it goes.
            await asyncio.to_thread(site.postgres.start)
            assert await wait_until(lambda: sender.draft is None, 20), "never acknowledged"
            assert [b for _, b in sender.acked] == ["sent while the database is away"]
            assert await wait_until(
                lambda: any(b == "sent while the database is away" for _, b in reader.shown), 10
            )
            await asyncio.sleep(1)  # a second copy would come meanwhile
            for page in site.pages:
                assert [b for _, b in page.shown] == ["sent while the database is away"]
                assert page.duplicates == []


async def test_a_send_queued_behind_sockets_waiting_for_postgresql_is_told_not_sent_soon(tmp_path):
    # Every socket of a process reads and writes through its one database thread. While
    # PostgreSQL is away, sockets opening meanwhile (their session and member are read from it)
    # wait there ahead of the send; each used to hold the thread for the pool's 5 s timeout, so
    # the sender heard nothing for 20 s and more (e2e/test_faults.py, about one run in five).
    # Now the first failed connection makes the rest fail at once (parley/postgresql/base.py).
    with Site(2, tmp_path) as site:
        async with pages_running(site) as tasks:
            sender = site.pages[0]
            assert await wait_until(lambda: sender.is_open, 30)
            await asyncio.to_thread(site.postgres.stop)
            port = site.upstreams.ports[sender.home]
            openings = [
                asyncio.create_task(open_socket(port, site.upstreams.room_id, sender.session))
                for _ in range(4)
            ]
            tasks += openings  # cancelled at the end, if still waiting
            await asyncio.sleep(0.5)  # their handshakes are waiting for the database thread

            sender.draft = "sent behind four sockets opening"
            sender.send_draft()
            assert await wait_until(lambda: sender.not_sent, 10), "no 'not sent' within 10 s"
            assert sender.draft == "sent behind four sockets opening"
            assert sender.is_open
            opened = [t.result() for t in openings if t.done()]
            assert "open" not in opened, opened  # nobody got in without the database

            # Back, it answers again: the page's next press of Send goes, once.
            await asyncio.to_thread(site.postgres.start)
            assert await wait_until(lambda: sender.draft is None, 20), "never acknowledged"
            assert [b for _, b in sender.acked] == ["sent behind four sockets opening"]


async def open_socket(port: int, room_id: int, session: str) -> str:
    """Open a room socket as a member's page does; "open" or why not."""
    try:
        socket = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/rooms/{room_id}/",
            origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": f"sessionid={session}"},
            open_timeout=60,
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
        return repr(error)
    await socket.close()
    return "open"


async def test_a_message_posted_into_the_gap_of_a_redis_restart_still_reaches_every_page(tmp_path):
    # Right after Redis restarts, the process that posts reconnects at once, while the other
    # processes' subscriptions come back a moment later: a message published in between is lost
    # on the layer. Nothing comes after it to reveal the gap; the hub's probe must.
    with Site(2, tmp_path) as site:
        async with pages_running(site):
            sender, reader = site.pages
            assert await wait_until(lambda: sender.is_open and reader.is_open, 30)
            await asyncio.sleep(1.5)  # both processes have subscribed and probed
            await asyncio.to_thread(site.redis.restart)
            sender.draft = "into the gap"
            sender.send_draft()
            assert await wait_until(lambda: sender.draft is None, 10), "never acknowledged"
            for page in site.pages:
                assert await wait_until(
                    lambda page=page: [b for _, b in page.shown] == ["into the gap"], 10
                ), f"{page.name} never showed it"
