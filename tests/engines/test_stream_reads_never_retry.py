"""`XREADGROUP >` hands a batch over once: re-issued after a lost reply, it hands the
next batch while the first waits unseen in the pending list. The clients that make
those reads (the gateways' stream reader, the worker's inbox reader) must
therefore fail when their connection dies, not reconnect and read again; the
readers' own recovery then replays the pending list. Here the connection of a
blocked read is killed from a second client, on a real Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.engines.redis.engine import RedisEngine
from shared.settings import Settings
from tests.support.delivery import eventually, wait_sync
from tests.support.redis_fixture import RedisUnderTest

BLOCK_MS = 10_000  # far longer than the test waits: a reply means the read was re-issued
STREAM, GROUP = "retry-probe:stream", "retry-probe"


@pytest.fixture
def engine(redis_server: RedisUnderTest) -> RedisEngine:
    """Closed by each test: its asyncio clients belong to the test's event loop."""
    return RedisEngine(Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40))


def _blocked_reads(admin: redis.Redis) -> list[dict[str, Any]]:
    return [c for c in admin.client_list() if c.get("cmd") == "xreadgroup"]


def _kill_blocked_read(admin: redis.Redis) -> None:
    for client in _blocked_reads(admin):
        admin.client_kill_filter(_id=client["id"])


@pytest.fixture
def admin(redis_client: redis.Redis) -> redis.Redis:
    redis_client.delete(STREAM)
    redis_client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    return redis_client


async def test_the_gateways_stream_read_fails_when_its_connection_dies(
        engine: RedisEngine, admin: redis.Redis) -> None:
    reader = engine._aio_reader  # the client behind every gateway's shard reads
    try:
        read = asyncio.create_task(reader.xreadgroup(GROUP, "gw", {STREAM: ">"}, block=BLOCK_MS))
        await eventually(lambda: _blocked_reads(admin), what="the read blocking in Redis")
        _kill_blocked_read(admin)
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(read, BLOCK_MS / 1000 / 2)
        assert time.monotonic() - started < BLOCK_MS / 1000 / 2
    finally:
        await engine.aclose()


def test_the_workers_inbox_read_fails_when_its_connection_dies(
        engine: RedisEngine, admin: redis.Redis) -> None:
    reader = engine._sync_reader  # the client behind the worker's inbox reads
    outcome: list[BaseException | object] = []

    def read() -> None:
        try:
            outcome.append(reader.xreadgroup(GROUP, "worker", {STREAM: ">"}, block=BLOCK_MS))
        except BaseException as exc:  # the outcome under test
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        wait_sync(lambda: _blocked_reads(admin), what="the read blocking in Redis")
        _kill_blocked_read(admin)
        thread.join(BLOCK_MS / 1000 / 2)  # returns at once when the read failed
        assert not thread.is_alive(), "the read was re-issued and blocks again"
        assert len(outcome) == 1 and isinstance(outcome[0], RedisConnectionError), outcome
    finally:
        reader.close()
        asyncio.run(engine.aclose())

