"""The Redis engine's reader of the shard streams, on a real Redis: what it does with
entries that are not ours, with entries left in its pending list by a previous run,
and with a gap in a shard's sequence numbers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import redis

from shared import keys
from shared.codec import encode_event
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings
from tests.engines.test_roles_contract import Collector
from tests.support.delivery import eventually
from tests.support.redis_fixture import RedisUnderTest

SHARDS = 4
_ids = itertools.count(1)


@pytest.fixture
async def engine(redis_server: RedisUnderTest) -> AsyncIterator[RedisEngine]:
    made = RedisEngine(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40,
                                STREAM_SHARDS=SHARDS))
    yield made
    await made.aclose()


def a_room() -> str:
    return f"task:{500_000 + next(_ids)}"


def event(room: str, n: int) -> PendingEvent:
    return PendingEvent(f"r{next(_ids)}", room, encode_event(
        "task.deleted", room, {"task_id": n, "project_id": 1}, "t"))


async def run_reader(engine: RedisEngine, name: str, sink: Collector) -> asyncio.Task[None]:
    reader = engine.event_log.reader(name, sink)
    await reader.start()
    return asyncio.create_task(reader.run())


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel a reader and wait for it: a reader that outlives its cancel fails here."""
    task.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(task, return_exceptions=True)


async def test_entries_that_are_not_ours_are_skipped_and_acknowledged(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room, name, sink = a_room(), f"gw-{next(_ids)}", Collector()
    stream = keys.shard_stream(shard_of(room, SHARDS))
    task = await run_reader(engine, name, sink)
    try:
        redis_client.xadd(stream, {"unexpected": "entry"})  # no sequence number
        redis_client.xadd(stream, {"r": room, "e": b"not json", "q": b"x"})
        (good,) = await engine.event_log.append([event(room, 1)])
        await sink.until(lambda: any(e.id == good.id for _, e in sink.entries))
        assert [e.id for _, e in sink.entries if e.room == room] == [good.id]
        group = keys.gateway_group(name)
        # the ack follows the fan-out of its read
        await eventually(lambda: redis_client.xpending(stream, group)["pending"] == 0,
                         what="the skipped entries acknowledged")
    finally:
        await cancel(task)


async def test_a_restart_delivers_what_the_last_run_read_and_never_acked(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room, name = a_room(), f"gw-{next(_ids)}"
    stream = keys.shard_stream(shard_of(room, SHARDS))
    group = keys.gateway_group(name)
    await cancel(await run_reader(engine, name, Collector()))  # the previous run, gone
    appended = await engine.event_log.append([event(room, n) for n in range(3)])
    taken = redis_client.xreadgroup(group, name, {stream: ">"})  # read in its name, lost
    assert len([i for i, f in taken[0][1] if f.get(b"r") == room.encode()]) == 3
    sink = Collector()
    task = await run_reader(engine, name, sink)
    try:
        await sink.until(lambda: sum(1 for _, e in sink.entries if e.room == room) >= 3)
        assert [e.id for _, e in sink.entries if e.room == room] == [a.id for a in appended]
    finally:
        await cancel(task)


async def test_a_gap_in_the_shard_sequence_is_reported(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room, name, sink = a_room(), f"gw-{next(_ids)}", Collector()
    shard = shard_of(room, SHARDS)
    task = await run_reader(engine, name, sink)
    try:
        (one,) = await engine.event_log.append([event(room, 1)])
        await sink.until(lambda: any(e.id == one.id for _, e in sink.entries))
        redis_client.incrby(keys.shard_seq(shard), 5)  # as if 5 entries were trimmed unread
        (two,) = await engine.event_log.append([event(room, 2)])
        await sink.until(lambda: any(e.id == two.id for _, e in sink.entries))
        assert shard in sink.gaps
    finally:
        await cancel(task)


async def test_a_cancel_that_arrives_while_it_acknowledges_still_stops_the_reader(
        engine: RedisEngine) -> None:
    # redis-py sends through asyncio.wait_for, which on Python 3.11 drops a cancel
    # that arrives as the send completes: the reader must stop all the same.
    for _ in range(5):
        room, sink = a_room(), Collector()
        task = await run_reader(engine, f"gw-{next(_ids)}", sink)
        await engine.event_log.append([event(room, n) for n in range(3)])
        await sink.until(lambda s=sink: len(s.entries) >= 3)  # it is acknowledging now
        await cancel(task)
        assert task.cancelled()


@pytest.mark.parametrize("query", ["", "?protocol=2"])
async def test_entries_are_read_over_either_protocol_in_any_field_order(
        redis_server: RedisUnderTest, redis_client: redis.Redis, query: str) -> None:
    """The reader parses XREADGROUP's raw reply itself: a RESP3 map (redis-py's default
    on the wire) or a RESP2 list, our scripts' field order (the fast path) or another
    writer's."""
    made = RedisEngine(Settings(REDIS_URL=f"{redis_server.url}{query}",
                                JWT_SECRET="x" * 40, STREAM_SHARDS=SHARDS))
    room, name, sink = a_room(), f"gw-{next(_ids)}", Collector()
    shard = shard_of(room, SHARDS)
    task = await run_reader(made, name, sink)
    try:
        (one,) = await made.event_log.append([event(room, 1)])
        seq = redis_client.incr(keys.shard_seq(shard))
        reordered = redis_client.xadd(keys.shard_stream(shard), {
            "q": seq, "r": room, "e": event(room, 2).encoded}).decode()
        (three,) = await made.event_log.append([event(room, 3)])
        await sink.until(lambda: sum(1 for _, e in sink.entries if e.room == room) >= 3)
        got = [e for _, e in sink.entries if e.room == room]
        assert [e.id for e in got] == [one.id, reordered, three.id]
        assert [e.key for e in got] == [tuple(map(int, e.id.split("-"))) for e in got]
        assert shard not in sink.gaps
    finally:
        await cancel(task)
        await made.aclose()
