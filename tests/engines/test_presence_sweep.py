"""The presence sweep on a real Redis: a departure it found is returned again until
its user_left is announced, whatever was lost on the way (the script's reply, or
the sweeper itself), and always under the same token."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis

from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.engines.redis.presence import DEPARTURES_KEPT_MS
from shared.engines.redis.scripts import source
from shared.engines.roles import Departure, Presence, RoomMember
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest

_rooms = itertools.count(1)


@pytest.fixture
async def engine(redis_server: RedisUnderTest) -> AsyncIterator[RedisEngine]:
    made = RedisEngine(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40,
                                STREAM_SHARDS=4, WS_HEARTBEAT_INTERVAL=1))
    yield made
    await made.aclose()


async def crashed_member(engine: RedisEngine, r: redis.Redis, user_id: int) -> str:
    """A user present through one connection whose gateway died: its entries expired.
    Returns the room (a new one per test: the tests share a Redis)."""
    room = f"project:{next(_rooms)}"
    presence = engine.presence("gw-crashed")
    assert await presence.enter(room, user_id, f"u{user_id}", f"c{user_id}")
    r.zadd(keys.room_presence(room), {str(user_id): 1.5})
    r.zadd(keys.room_user_connections(room, user_id), {f"c{user_id}": 1.5})
    sweep_lock_free(r)  # an earlier test's sweep may hold this heartbeat's turn
    return room


async def sweep(presence: Presence, room: str) -> list[Departure]:
    """One sweep's departures from `room` (the other tests' rooms share the Redis)."""
    return [d for d in await presence.sweep() if d.room == room]


def sweep_lock_free(r: redis.Redis) -> None:
    r.delete(keys.presence_sweeper())  # one sweep per heartbeat: let the next one run


async def test_a_departure_whose_reply_was_lost_comes_back_from_the_next_sweep(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room = await crashed_member(engine, redis_client, 5)
    # the script runs and its reply is lost with the connection
    lost = redis_client.eval(source("presence_sweep"), 3, keys.room_presence(room),
                             keys.room_presence_names(room), keys.room_departures(room),
                             1e10, DEPARTURES_KEPT_MS)
    assert lost and redis_client.zscore(keys.room_presence(room), "5") is None
    sweeper = engine.presence("gw-sweeper")
    (first,) = await sweep(sweeper, room)
    assert (first.room, first.member) == (room, RoomMember(5, "u5"))
    assert first.token == "1.5"  # the entry's expiry names this departure


async def test_a_departure_is_returned_until_announced_then_forgotten(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room = await crashed_member(engine, redis_client, 6)
    sweeper = engine.presence("gw-sweeper")
    (first,) = await sweep(sweeper, room)
    sweep_lock_free(redis_client)
    assert await sweep(sweeper, room) == [first]  # the sweeper died before announcing
    await sweeper.announced(first)
    sweep_lock_free(redis_client)
    assert await sweep(sweeper, room) == []
    assert not redis_client.sismember(keys.presence_rooms(), room)


async def test_an_older_departure_announced_late_does_not_forget_a_newer_one(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room = await crashed_member(engine, redis_client, 8)
    sweeper = engine.presence("gw-sweeper")
    (old,) = await sweep(sweeper, room)
    newer = Departure(room, RoomMember(8, "u8"), "2.5")
    redis_client.hset(keys.room_departures(room), "8", "2.5|u8")
    await sweeper.announced(old)
    sweep_lock_free(redis_client)
    assert await sweep(sweeper, room) == [newer]


async def test_a_user_back_before_the_announcement_is_not_announced_gone(
        engine: RedisEngine, redis_client: redis.Redis) -> None:
    room = await crashed_member(engine, redis_client, 9)
    redis_client.eval(source("presence_sweep"), 3, keys.room_presence(room),
                      keys.room_presence_names(room), keys.room_departures(room),
                      1e10, DEPARTURES_KEPT_MS)  # removed; the reply lost
    assert await engine.presence("gw-new").enter(room, 9, "u9", "c9-again")
    assert await sweep(engine.presence("gw-sweeper"), room) == []
