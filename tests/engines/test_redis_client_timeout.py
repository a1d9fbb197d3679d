"""A Redis that stops answering without closing the connection (a partition, a
frozen host) makes a command fail after the clients' socket timeout, instead of
holding its caller until TCP gives up many minutes later. `CLIENT PAUSE WRITE`
plays the silent Redis for a write: the connection stays open and nothing comes
back (reads still answer, so the test's own client can lift the pause)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.engines.redis import client as client_module
from shared.engines.redis.client import async_client, sync_client
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest

PAUSE_MS = 8_000  # far longer than the test's timeout: an answer means no timeout
TIMEOUT_S = 0.5


@pytest.fixture
def settings_short_timeout(redis_server: RedisUnderTest,
                           monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(client_module, "SOCKET_TIMEOUT_S", TIMEOUT_S, raising=False)
    return Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40)


@pytest.fixture
def silent_redis(redis_client: redis.Redis) -> Iterator[None]:
    yield None
    redis_client.client_unpause()


def test_a_sync_command_to_a_silent_redis_fails_after_the_socket_timeout(
        settings_short_timeout: Settings, redis_client: redis.Redis,
        silent_redis: None) -> None:
    client = sync_client(settings_short_timeout, retries=False)
    try:
        client.ping()  # connected before Redis goes silent
        redis_client.client_pause(PAUSE_MS, all=False)  # writes wait
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            client.incr("silent:key")
        assert time.monotonic() - started < PAUSE_MS / 1000 / 2
    finally:
        client.close()


async def test_an_async_command_to_a_silent_redis_fails_after_the_socket_timeout(
        settings_short_timeout: Settings, redis_client: redis.Redis,
        silent_redis: None) -> None:
    client = async_client(settings_short_timeout, retries=False)
    try:
        await client.ping()
        redis_client.client_pause(PAUSE_MS, all=False)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            # the outer bound only keeps a regression from hanging the run
            await asyncio.wait_for(client.incr("silent:key"), PAUSE_MS / 1000 * 2)
        assert time.monotonic() - started < PAUSE_MS / 1000 / 2
    finally:
        await client.aclose()


def test_every_client_has_a_socket_timeout_above_the_longest_blocking_read(
        redis_server: RedisUnderTest) -> None:
    from shared.engines.job_runner import BLOCK_MS as WORKER_BLOCK_MS
    from shared.engines.redis.log_reader import BLOCK_MS as GATEWAY_BLOCK_MS

    settings = Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40)
    longest_block_s = max(WORKER_BLOCK_MS, GATEWAY_BLOCK_MS) / 1000
    sync = sync_client(settings)
    aio = async_client(settings, retries=False)
    try:
        for timeout in (sync.connection_pool.connection_kwargs["socket_timeout"],
                        aio.connection_pool.connection_kwargs["socket_timeout"]):
            assert timeout is not None and timeout > longest_block_s * 2
    finally:
        sync.close()
        asyncio.run(aio.aclose())
