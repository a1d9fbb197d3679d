"""Shared fixtures: a real Redis per test module, real roomcast processes, and the
contract tests' stacks over both engines."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import pytest
import redis

from shared.settings import Settings
from tests.support.engine_stack import (
    ENGINES,
    EngineName,
    EngineStack,
    EngineStacks,
    engine_stacks,
)
from tests.support.redis_fixture import RedisUnderTest, running_redis
from tests.support.stack import JWT_SECRET, Stack

_ids = itertools.count(random.randint(1000, 9000) * 1000)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisUnderTest]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisUnderTest) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def settings(redis_server: RedisUnderTest) -> Settings:
    return Settings(REDIS_URL=redis_server.url, JWT_SECRET=JWT_SECRET, STREAM_SHARDS=4)


@pytest.fixture
def unique_id() -> Callable[[], int]:
    """Fresh room and user ids: tests sharing a module's stack never collide."""
    return lambda: next(_ids)


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    """A worker and two gateways on the module's Redis."""
    s = Stack(redis_server.url)
    s.start_worker()
    s.add_gateway()
    s.add_gateway()
    yield s
    s.stop()


@pytest.fixture
def db(stack: Stack) -> Iterator[redis.Redis]:
    """A client of the Redis behind this module's `stack` (modules may define their own)."""
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


# -- the contract tests: one suite, both engines ------------------------------------------
@pytest.fixture(scope="module", params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> EngineName:
    """Every contract test runs once per engine: `test_x[redis]`, `test_x[memory]`.
    Module-scoped, so a module starts each engine's processes once."""
    name: EngineName = request.param
    return name


@pytest.fixture(scope="module")
def engine_stacks_of_module(engine_name: EngineName, request: pytest.FixtureRequest
                            ) -> Iterator[EngineStacks]:
    """Makes this module's stacks (with their own settings) on the engine under test."""
    redis_url = request.getfixturevalue("redis_server").url if engine_name == "redis" else None
    with engine_stacks(engine_name, redis_url) as stacks:
        yield stacks


@pytest.fixture(scope="module")
def engine_stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    """Two gateways and a worker on Redis; one memory-engine gateway; ACCESS_MODE=acl."""
    return engine_stacks_of_module.start()
