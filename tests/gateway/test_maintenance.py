"""The gateway's timers on a real Redis: the heartbeat keeps its period while a
housekeeping round is stuck (a long presence sweep), so a busy gateway never
looks dead to /readyz or to the other gateways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest
import redis

from gateway.maintenance import Maintenance
from gateway.node import Node
from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import Departure, Presence
from shared.settings import Settings
from tests.support.delivery import eventually
from tests.support.redis_fixture import RedisUnderTest

INTERVAL = 0.05


class StuckSweep:
    """The engine's own presence, except that a sweep waits until released."""

    def __init__(self, real: Presence) -> None:
        self._real = real
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def refresh(self, slots: Iterable[tuple[int, str]],
                      memberships: Iterable[tuple[str, int, str]]) -> None:
        await self._real.refresh(slots, memberships)

    async def sweep(self) -> list[Departure]:
        self.entered.set()
        await self.release.wait()
        return await self._real.sweep()

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


async def never_lost() -> None:
    raise AssertionError("the instance id was not taken by anyone")


@pytest.fixture
async def node(redis_server: RedisUnderTest) -> AsyncIterator[Node]:
    settings = Settings(REDIS_URL=redis_server.url, JWT_SECRET="x" * 40, STREAM_SHARDS=2,
                        WS_HEARTBEAT_INTERVAL=INTERVAL)
    engine = RedisEngine(settings)
    yield Node(settings, "gw-timers", engine)
    await engine.aclose()


async def test_heartbeats_go_on_while_housekeeping_is_stuck(
        node: Node, redis_client: redis.Redis) -> None:
    presence = StuckSweep(node.presence)
    timers = Maintenance(node.engine, node.instance_id, node.hub, presence,  # type: ignore[arg-type]
                         node.rooms, node.reader, node.metrics, never_lost)
    timers.start()
    try:
        async with asyncio.timeout(10):
            await presence.entered.wait()  # housekeeping's first round is now stuck
        beats = timers.beats
        await eventually(lambda: timers.beats >= beats + 5, timeout=10,
                         what="five heartbeats during one stuck sweep")
        assert timers.rounds == 1
        # each beat went through every shard, where the gateways' readers see it
        for shard in range(2):
            assert redis_client.xlen(keys.shard_stream(shard)) >= 5
        presence.release.set()
        await eventually(lambda: timers.rounds >= 2, timeout=10, what="housekeeping resumed")
    finally:
        presence.release.set()
        await timers.stop()
