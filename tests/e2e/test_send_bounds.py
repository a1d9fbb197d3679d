"""WS_SEND_BUFFER_MAX_BYTES crossed on its own: large events to a client that stops
reading close it with 1013 long before WS_SEND_QUEUE_MAX frames are queued, the
gateway's memory stays near the bound, and the client resumes without loss."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import psutil
import pytest
import redis

from shared import keys
from shared.rooms import shard_of
from tests.support.delivery import (
    connect,
    eventually,
    id_key,
    message_event,
    stack_on,
)
from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import SHARDS, Stack
from tests.support.stalled import StalledClient
from tests.support.tokens import make_token

EVENT_SIZE = 60_000
EVENTS = 300  # 18 MB: far past the 4 MiB bound, far under WS_SEND_QUEUE_MAX (1000) frames
BOUND = 4 * 2**20
CLOSES = "roomcast_slow_consumer_closes_total"


@pytest.fixture(scope="module")
def stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    return engine_stacks_of_module.start(gateways=1, worker=False, ACCESS_MODE="open",
                                         WS_HEARTBEAT_INTERVAL="10")


async def test_the_byte_bound_closes_a_stalled_client_which_then_resumes(
        stack: EngineStack, unique_id: Callable[[], int]) -> None:
    gw = stack.gateways[0]
    assert gw.process is not None
    room, user = f"project:{unique_id()}", unique_id()
    writer = stack.writer()
    slow = await StalledClient.open(gw.url, make_token(user, "slow"))
    await slow.read_until(lambda f: f["type"] == "connected")
    await slow.send_json({"type": "join_room", "room": room, "ref": 1})
    await slow.read_until(lambda f: f.get("ref") == 1)
    rss_before = psutil.Process(gw.process.pid).memory_info().rss
    closes_before = gw.metric(CLOSES)
    flooding = asyncio.ensure_future(asyncio.to_thread(lambda: [writer.append_event(
        room, message_event(room, n, EVENT_SIZE), uuid.uuid4().hex) for n in range(EVENTS)]))
    # read once the close is decided, not after the whole flood: the gateway gives
    # a client that never reads ABORT_AFTER_SECONDS to take its close frame
    await eventually(lambda: gw.metric(CLOSES) > closes_before, timeout=30,
                     what="the byte bound's close")
    code = await slow.drain_to_close(timeout=30)
    await flooding
    assert code == 1013
    seen = [f["id"] for f in slow.texts() if f.get("type") == "message"]
    # closed by bytes: what it got is about the bound, nowhere near 1000 frames
    assert 0 < len(seen) * EVENT_SIZE < 3 * BOUND and len(seen) < EVENTS
    growth = psutil.Process(gw.process.pid).memory_info().rss - rss_before
    # ENGINE=memory keeps the room's history (every event) in the gateway itself
    held = stack.bytes_held_by_gateway(EVENTS * EVENT_SIZE)
    assert growth < 4 * BOUND + held, f"gateway grew {growth / 2**20:.0f} MB"
    slow.close()

    again = await connect(gw.url, user)
    reply = await again.join(room, since=seen[-1])
    assert reply["data"]["recovered"] is True
    missed = [i for i in stack.history_ids(room) if id_key(i) > id_key(seen[-1])
              and id_key(i) <= id_key(reply["data"]["last_id"])]
    got = await again.wait_events(room, len(missed), timeout=60)
    assert [f["id"] for f in got][:len(missed)] == missed
    await again.close()


@pytest.fixture(scope="module")
def small_events(redis_server: RedisUnderTest) -> Iterator[Stack]:
    """EVENT_MAX_BYTES below what a WS_MAX_CONTENT_LENGTH message encodes to."""
    with stack_on(redis_server.url, gateways=1, ACCESS_MODE="open",
                  EVENT_MAX_BYTES="1024", WS_MAX_CONTENT_LENGTH="4000") as s:
        yield s


async def test_a_message_over_event_max_bytes_is_refused_not_acked_then_dropped(
        small_events: Stack, unique_id: Callable[[], int]) -> None:
    # Before: acked, then dead-lettered by the worker; the sender believed it sent.
    room, user = f"project:{unique_id()}", unique_id()
    client = await connect(small_events.gateways[0].url, user)
    try:
        await client.join(room)
        refused = await client.request("send_message", room, {"content": "é" * 1500})
        assert refused["type"] == "error" and refused["data"]["code"] == 4400, refused
        assert "EVENT_MAX_BYTES" in refused["data"]["error"]
        ack = await client.request("send_message", room, {"content": "small"})
        assert ack["type"] == "ack"
        [event] = await client.wait_events(room, 1, type_="message")
        assert event["data"]["content"] == "small"  # the one after it, and only that one
        db = redis.Redis.from_url(small_events.redis_url)
        try:
            assert db.xlen(keys.dead_letters(shard_of(room, SHARDS))) == 0
        finally:
            db.close()
    finally:
        await client.close()
