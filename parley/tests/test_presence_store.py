"""The presence store on Redis: writes in the order the sockets changed, deployments kept apart."""

import asyncio

import pytest
from django.utils.module_loading import import_string

from parley.live.members import MEMBERS_GROUP
from parley.live.presence import Presence
from parley.tests.test_settings import load_settings

pytestmark = pytest.mark.redis


@pytest.fixture
def store():
    """A presence store of its own, recording what it reports, emptied before and after."""
    reported = {"gone": [], "back": []}

    async def gone(key, member_ids):
        reported["gone"].append((key, member_ids))

    async def back(key, member_ids):
        reported["back"].append((key, member_ids))

    presence = Presence("store-test", on_gone=gone, on_back=back)
    presence.reported = reported

    def empty():
        client = presence._sync_redis()
        for key in client.scan_iter(f"{presence.index}*"):
            client.delete(key)

    empty()
    yield presence
    empty()


@pytest.fixture
def held_pipelines(monkeypatch):
    """Holds the next pipeline the store sends until `release` is set: a refresh in flight."""

    def hold(presence: Presence) -> asyncio.Event:
        backend = presence._backend()
        real_pipeline = backend.redis.pipeline
        release, held = asyncio.Event(), []

        def pipeline(*args, **kwargs):
            pipe = real_pipeline(*args, **kwargs)
            if not held:
                held.append(pipe)
                real_execute = pipe.execute

                async def execute(*a, **kw):
                    await release.wait()
                    return await real_execute(*a, **kw)

                pipe.execute = execute
            return pipe

        monkeypatch.setattr(backend.redis, "pipeline", pipeline)
        return release

    return hold


async def test_a_member_who_leaves_while_a_refresh_is_in_flight_stays_gone(store, held_pipelines):
    assert await store.arrive("7", 7)
    release = held_pipelines(store)
    refresh = asyncio.create_task(store._backend().refresh())
    await asyncio.sleep(0.05)  # the refresh has read this process's entries and is writing

    depart = asyncio.create_task(store.depart("7", 7))
    await asyncio.sleep(0.2)
    release.set()
    await asyncio.wait_for(refresh, 5)

    assert await asyncio.wait_for(depart, 5)
    assert await store.members("7") == set()
    assert store.reported["back"] == []
    await store.sweep()
    assert store.reported["gone"] == []


async def test_a_member_who_leaves_and_comes_back_during_a_refresh_stays_present(
    store, held_pipelines
):
    assert await store.arrive("7", 7)
    release = held_pipelines(store)
    refresh = asyncio.create_task(store._backend().refresh())
    await asyncio.sleep(0.05)

    leaves_and_returns = asyncio.gather(store.depart("7", 7), store.arrive("7", 7))
    await asyncio.sleep(0.2)
    release.set()
    await asyncio.wait_for(refresh, 5)
    await asyncio.wait_for(leaves_and_returns, 5)

    assert await store.members("7") == {7}
    await store.depart("7", 7)


async def test_an_entry_swept_while_this_process_stalled_is_written_back_and_reported(store):
    assert await store.arrive("7", 7)
    client = store._sync_redis()
    client.zadd(store.zset("7"), {store._backend()._entry(7): 1})  # expired long ago
    await store.sweep()
    assert store.reported["gone"] == [("7", {7})]

    await store._backend().refresh()

    assert await store.members("7") == {7}
    assert store.reported["back"] == [("7", {7})]
    await store.depart("7", 7)


async def test_hundreds_of_sockets_leaving_at_once_all_leave(store):
    members = range(1, 401)
    assert all(await asyncio.gather(*(store.arrive(str(m), m) for m in members)))

    left = await asyncio.gather(*(store.depart(str(m), m) for m in members))

    assert all(left)
    assert not any(await asyncio.gather(*(store.members(str(m)) for m in members)))


async def test_stores_of_deployments_with_different_prefixes_do_not_see_each_other(store, settings):
    settings.REDIS_PREFIX = "parley-one"
    assert await store.arrive("7", 7)

    settings.REDIS_PREFIX = "parley-two"
    assert await store.members("7") == set()
    assert store.present_now([("7", 7)]) == set()

    settings.REDIS_PREFIX = "parley-one"
    assert await store.members("7") == {7}
    assert await store.depart("7", 7)


@pytest.mark.parametrize("kind", ["pubsub", "core"])
async def test_channel_layers_of_deployments_with_different_prefixes_do_not_hear_each_other(
    kind, settings
):
    def layer_of(prefix: str):
        deployment = load_settings(
            DEBUG="1", REDIS_URL=settings.REDIS_URL, REDIS_CHANNEL_LAYER=kind, REDIS_PREFIX=prefix
        )
        config = deployment.CHANNEL_LAYERS["default"]
        return import_string(config["BACKEND"])(**config["CONFIG"])

    ours, theirs = layer_of("parley-ours"), layer_of("parley-theirs")
    channel = await ours.new_channel()
    await ours.group_add(MEMBERS_GROUP, channel)
    try:
        await theirs.group_send(MEMBERS_GROUP, {"type": "members.fragment", "html": "theirs"})
        await ours.group_send(MEMBERS_GROUP, {"type": "members.fragment", "html": "ours"})

        assert (await asyncio.wait_for(ours.receive(channel), 5))["html"] == "ours"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ours.receive(channel), 0.5)
    finally:
        await ours.group_discard(MEMBERS_GROUP, channel)
        for layer in (ours, theirs):
            await layer.flush()
