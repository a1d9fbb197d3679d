"""The gateway's command batcher on a real Redis: calls of one event-loop turn share a
round trip, calls made while a round trip is out share the next one, and each caller
gets exactly its own replies or its own error."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio.connection as redis_connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomcast.cli.embedded_redis import free_port
from shared.engines.redis import batcher as batcher_module
from shared.engines.redis.batcher import CommandBatcher, batcher_client
from shared.engines.redis.client import ASYNC_POOL_WAIT_SECONDS, async_client
from shared.settings import Settings
from tests.support.delivery import eventually
from tests.support.redis_fixture import RedisUnderTest

SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def _settings(url: str) -> Settings:
    return Settings(REDIS_URL=url, JWT_SECRET="x" * 40)


@pytest.fixture
async def batcher(redis_server: RedisUnderTest) -> AsyncIterator[CommandBatcher]:
    client = batcher_client(_settings(redis_server.url))  # as the engine makes it
    made = CommandBatcher(client)
    yield made
    await made.aclose()
    await client.aclose()


async def test_calls_of_one_turn_share_one_round_trip(batcher: CommandBatcher,
                                                      redis_client: redis.Redis) -> None:
    redis_client.delete("batch:n")
    replies = await asyncio.gather(*(batcher.execute([("INCR", "batch:n"), ("GET", "batch:n")])
                                     for _ in range(50)))
    assert batcher.round_trips == 1
    # each caller got its own pair: the counts 1..50, each once, each with its GET after
    assert sorted(incr for incr, _ in replies) == list(range(1, 51))
    assert all(int(got) >= incr for incr, got in replies)


async def test_calls_made_while_a_round_trip_is_out_share_the_next_one(
        batcher: CommandBatcher, redis_client: redis.Redis) -> None:
    redis_client.delete("batch:first", *(f"batch:later:{i}" for i in range(5)))
    redis_client.client_pause(60_000, all=False)  # WRITE: INCRs wait, INFO does not
    try:
        first = asyncio.ensure_future(batcher.execute([("INCR", "batch:first")]))
        await eventually(lambda: redis_client.info("clients")["blocked_clients"] == 1,
                         what="the first round trip held by the pause")
        later = []
        for i in range(5):  # each call in turns of its own
            later.append(asyncio.ensure_future(batcher.execute([("INCR", f"batch:later:{i}")])))
            for _ in range(3):
                await asyncio.sleep(0)
        # none of them went out on a connection of its own
        assert redis_client.info("clients")["blocked_clients"] == 1
    finally:
        redis_client.client_unpause()
    assert await first == [1]
    assert await asyncio.gather(*later) == [[1]] * 5
    assert batcher.round_trips == 2


async def test_calls_still_queued_when_the_batcher_closes_fail_instead_of_waiting(
        redis_server: RedisUnderTest, redis_client: redis.Redis) -> None:
    client = async_client(_settings(redis_server.url))
    batcher = CommandBatcher(client)
    redis_client.client_pause(60_000, all=False)
    try:
        first = asyncio.ensure_future(batcher.execute([("INCR", "batch:closing")]))
        await eventually(lambda: redis_client.info("clients")["blocked_clients"] == 1,
                         what="the first round trip held by the pause")
        queued = asyncio.ensure_future(batcher.execute([("INCR", "batch:closing")]))
        await asyncio.sleep(0)
        await batcher.aclose()
        with pytest.raises(RedisConnectionError, match="closed"):
            await asyncio.wait_for(queued, 10)
        assert isinstance((await asyncio.gather(first, return_exceptions=True))[0],
                          BaseException)  # its round trip was cancelled by the close
    finally:
        redis_client.client_unpause()
        await client.aclose()


async def test_a_round_trip_redis_never_answers_fails_and_the_next_goes_on(
        batcher: CommandBatcher, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "ROUND_TRIP_TIMEOUT_S", 2.0)
    redis_client.delete("batch:silent")
    redis_client.client_pause(60_000, all=False)  # a Redis that takes writes, never answers
    try:
        silent = asyncio.ensure_future(batcher.execute([("INCR", "batch:silent")]))
        await eventually(lambda: redis_client.info("clients")["blocked_clients"] == 1,
                         what="the round trip held by the pause")
        behind = asyncio.ensure_future(batcher.execute([("GET", "batch:silent")]))
        with pytest.raises(RedisTimeoutError, match="no reply"):
            await asyncio.wait_for(silent, 10)
        # the read behind it was not held by the silent round trip
        assert await asyncio.wait_for(behind, 10) in ([None], [b"1"])
    finally:
        redis_client.client_unpause()
    assert await batcher.execute([("PING",)]) == [True]  # on a fresh connection


async def test_replies_are_read_without_a_timeout_each(
        batcher: CommandBatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # the round trip is bounded as a whole; redis-py's own timeout per reply (and
    # wait_for per send) cost more CPU than the replies
    entered: list[float | None] = []
    library_timeout = redis_connection.async_timeout

    def counting(delay: float | None) -> Any:
        entered.append(delay)
        return library_timeout(delay)

    await batcher.execute([("PING",)])  # connected: no connect timeout below
    monkeypatch.setattr(redis_connection, "async_timeout", counting)
    replies = await batcher.execute([("INCR", "batch:untimed")] * 300)
    assert replies == list(range(replies[0], replies[0] + 300))
    assert entered == [ASYNC_POOL_WAIT_SECONDS]  # the pool's checkout, not one per reply


async def test_a_round_trip_cancelled_before_it_began_fails_its_calls(
        batcher: CommandBatcher) -> None:
    call = asyncio.ensure_future(batcher.execute([("PING",)]))
    await asyncio.sleep(0)  # the call is queued, and the send scheduled behind this task
    await asyncio.sleep(0)  # the send made the round trip's task, scheduled behind this one
    assert batcher._tasks, "the round trip's task exists and has not run yet"
    await batcher.aclose()  # cancels it before its first step
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(call, 5)


async def test_a_call_after_the_close_fails_at_once(batcher: CommandBatcher) -> None:
    await batcher.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await asyncio.wait_for(batcher.execute([("PING",)]), 5)


async def test_an_error_reply_fails_only_its_own_call(batcher: CommandBatcher,
                                                      redis_client: redis.Redis) -> None:
    redis_client.set("batch:text", "not a number")
    good, bad, also_good = await asyncio.gather(
        batcher.execute([("SET", "batch:a", "1")]),
        batcher.execute([("INCR", "batch:text")]),
        batcher.execute([("GET", "batch:a")]), return_exceptions=True)
    assert good == [True]
    assert isinstance(bad, ResponseError)
    assert also_good == [b"1"]


async def test_a_script_redis_lost_is_loaded_and_run_once(batcher: CommandBatcher,
                                                          redis_client: redis.Redis) -> None:
    sha = hashlib.sha1(SCRIPT.encode()).hexdigest()
    batcher.script(sha, SCRIPT)
    redis_client.delete("batch:s")
    redis_client.script_flush()
    first, second = await asyncio.gather(
        batcher.execute([("EVALSHA", sha, 1, "batch:s", 5)]),
        batcher.execute([("EVALSHA", sha, 1, "batch:s", 7), ("GET", "batch:s")]))
    assert sorted([first[0], second[0]]) in ([5, 12], [7, 12])
    assert int(redis_client.get("batch:s")) == 12  # each ran once: 5 + 7


async def test_a_cancelled_caller_leaves_the_others_their_replies(
        batcher: CommandBatcher) -> None:
    leaving = asyncio.ensure_future(batcher.execute([("SET", "batch:c", "x")]))
    staying = asyncio.ensure_future(batcher.execute([("PING",)]))
    await asyncio.sleep(0)  # both queued
    leaving.cancel()
    assert await staying == [True]


async def test_an_unreachable_redis_fails_every_call_of_the_round_trip() -> None:
    client = async_client(_settings(f"redis://127.0.0.1:{free_port()}/0"), retries=False)
    batcher = CommandBatcher(client)
    results = await asyncio.gather(batcher.execute([("PING",)]),
                                   batcher.execute([("GET", "k")]), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await batcher.aclose()
    await client.aclose()


async def test_a_connection_redis_closed_is_replaced_and_each_command_runs_once(
        batcher: CommandBatcher, redis_client: redis.Redis) -> None:
    redis_client.delete("batch:k")
    assert await batcher.execute([("INCR", "batch:k")]) == [1]  # its connection is pooled
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    # the next round trip meets the closed connection, and goes again on a new one
    assert await asyncio.wait_for(batcher.execute([("INCR", "batch:k"), ("GET", "batch:k")]),
                                  10) == [2, b"2"]
    assert int(redis_client.get("batch:k")) == 2
