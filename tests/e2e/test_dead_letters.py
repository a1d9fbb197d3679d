"""Jobs that can never be applied (SPEC §4, producer order): each is set aside in its
shard's dead-letter stream, counted in /metrics, and the same producer's later
events go out after a bounded hold instead of waiting forever.

The jobs are queued straight through the engine's job queue, as a producer that
skipped the call-site checks (another language, an older backend) would."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from shared import keys
from shared.codec import encode_event
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import EventJob, PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.delivery import SHARDS, connect, eventually, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Stack


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=1, ACCESS_MODE="open",
                  EVENT_MAX_BYTES="2048") as s:
        yield s


@pytest.fixture
def engine(stack: Stack) -> Iterator[RedisEngine]:
    yield RedisEngine(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                               STREAM_SHARDS=SHARDS, EVENT_MAX_BYTES=1_000_000))


@pytest.fixture
def db(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def same_shard_rooms(unique_id: Callable[[], int]) -> tuple[str, str]:
    first = f"task:{unique_id()}"
    second = next(r for r in (f"task:{unique_id()}" for _ in itertools.count())
                  if shard_of(r, SHARDS) == shard_of(first, SHARDS))
    return first, second


def job(room: str, n: int, pad: int = 0) -> EventJob:
    encoded = encode_event("task.updated", room, {"task_id": n, "project_id": 1,
                                                  "changes": {"pad": "x" * pad}}, "backend")
    return EventJob((PendingEvent(uuid.uuid4().hex, room, encoded),))


def dead(db: redis.Redis, room: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in db.xrange(keys.dead_letters(shard_of(room, SHARDS)))
            if any(room.encode() in value for value in fields.values())]


async def test_an_oversized_event_is_set_aside_and_the_producer_goes_on(
        stack: Stack, engine: RedisEngine, db: redis.Redis,
        unique_id: Callable[[], int]) -> None:
    bad_room, good_room = same_shard_rooms(unique_id)
    client = await connect(stack.gateways[0].url, unique_id())
    try:
        await client.join(good_room)
        before = stack.gateways[0].metric("roomcast_dead_letters")
        # one producer: the oversized event first, then two that must still go out
        engine.sync_jobs.enqueue([job(bad_room, 1, pad=4000), job(good_room, 2),
                                  job(good_room, 3)])
        got = await client.wait_events(good_room, 2, type_="task.updated", timeout=20)
        assert [e["data"]["task_id"] for e in got] == [2, 3]
        [entry] = dead(db, bad_room)
        assert b"EVENT_MAX_BYTES" in b"".join(entry.values())
        assert db.xlen(keys.room_history(bad_room, SHARDS)) == 0
        await eventually(lambda: stack.gateways[0].metric("roomcast_dead_letters") >= before + 1,
                         timeout=20, what="/metrics counting the dead letter")
    finally:
        await client.close()


async def test_a_job_that_always_fails_holds_its_successors_for_a_bounded_time(
        stack: Stack, engine: RedisEngine, db: redis.Redis,
        unique_id: Callable[[], int]) -> None:
    bad_room, good_room = same_shard_rooms(unique_id)
    db.set(keys.room_history(bad_room, SHARDS), "not a stream")  # every append fails
    client = await connect(stack.gateways[0].url, unique_id())
    try:
        await client.join(good_room)
        engine.sync_jobs.enqueue([job(good_room, 1), job(bad_room, 2), job(good_room, 3)])
        got = await client.wait_events(good_room, 2, type_="task.updated", timeout=30)
        assert [e["data"]["task_id"] for e in got] == [1, 3]  # order kept around the gap
        [entry] = dead(db, bad_room)
        assert b"failed 4 times" in b"".join(entry.values()), entry
        assert "set aside" in (stack.workdir / "worker.log").read_text()
    finally:
        await client.close()
        db.delete(keys.room_history(bad_room, SHARDS))
