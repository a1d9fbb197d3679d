"""The event log on Redis Streams: `STREAM_SHARDS` shard streams that every gateway
reads with its own consumer group, and a capped, expiring history stream per
room with the same ids. Appends go through scripts/append.lua (deduplicated by
event key, atomic per shard); control entries through scripts/control.lua."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import keys
from shared.codec import parse_stream_id
from shared.engines.redis.append import SHARD_STREAM_MAXLEN, build_calls, results
from shared.engines.redis.batcher import CommandBatcher
from shared.engines.redis.log_reader import RedisLogReader
from shared.engines.redis.scripts import source
from shared.engines.roles import AppendResult, LogReader, LogSink, PendingEvent
from shared.settings import Settings


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value) if value is not None else ""


class RedisEventWriter:
    """EventWriter for worker threads (a synchronous client)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._settings = settings
        self._append = client.register_script(source("append"))
        self._control = client.register_script(source("control"))

    def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]:
        calls = build_calls(self._settings, events)
        replies = [self._append(keys=c.keys, args=c.args) for c in calls]
        return results(calls, replies, len(events))

    def append_control(self, shard: int, payload: bytes, marker: str) -> None:
        self._control(keys=[keys.shard_stream(shard), keys.shard_seq(shard)],
                      args=[SHARD_STREAM_MAXLEN, payload, marker])


class RedisEventLog:
    """EventLog for gateways (asyncio)."""

    def __init__(self, client: aioredis.Redis, reader_client: aioredis.Redis,
                 settings: Settings, batcher: CommandBatcher | None = None) -> None:
        self._redis = client
        self._reader_client = reader_client
        self._settings = settings
        self._append = client.register_script(source("append"))
        self._control = client.register_script(source("control"))
        self._batcher = batcher  # None on a Cluster
        if batcher is not None:
            batcher.script(self._append.sha, self._append.script)

    async def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]:
        calls = build_calls(self._settings, events)
        if self._batcher is not None:  # with the other calls of this turn
            replies = await self._batcher.execute(
                [("EVALSHA", self._append.sha, len(c.keys), *c.keys, *c.args) for c in calls])
        else:
            replies = [await self._append(keys=c.keys, args=c.args) for c in calls]
        return results(calls, replies, len(events))

    async def append_control(self, shard: int, payload: bytes, marker: str) -> None:
        await self._control(keys=[keys.shard_stream(shard), keys.shard_seq(shard)],
                            args=[SHARD_STREAM_MAXLEN, payload, marker])

    def reader(self, instance_id: str, sink: LogSink) -> LogReader:
        shards = list(range(self._settings.STREAM_SHARDS))
        # One XREADGROUP over every shard; on a Redis Cluster the shards live in
        # different slots, so each gets a reader of its own.
        groups = [[s] for s in shards] if self._settings.REDIS_CLUSTER else [shards]
        return RedisLogReader(self._reader_client, self._redis, instance_id, groups, sink)

    async def janitor(self, instance_id: str, idle_seconds: float) -> list[str]:
        """Destroy the consumer groups of gateway instances gone for `idle_seconds`."""
        mine = keys.gateway_group(instance_id)
        removed = []
        for shard in range(self._settings.STREAM_SHARDS):
            stream = keys.shard_stream(shard)
            for group in await self._redis.xinfo_groups(stream):
                name = _text(group.get("name"))
                if name == mine or not name.startswith("gw:"):
                    continue
                if await self._abandoned(stream, name, group, idle_seconds):
                    await self._redis.xgroup_destroy(stream, name)
                    removed.append(f"{name}@{shard}")
        return removed

    async def _abandoned(self, stream: str, name: str, group: dict[str, Any],
                         idle_seconds: float) -> bool:
        limit_ms = idle_seconds * 1000
        consumers = await self._redis.xinfo_consumers(stream, name)
        if consumers:
            return min(int(c.get("idle", 0)) for c in consumers) > limit_ms
        # No consumer: a gateway that died before its first read, or one starting
        # right now. Judge by the time of the last entry the group was given; "0-0"
        # (made on an empty stream) says nothing, so such a group is left alone.
        delivered = parse_stream_id(_text(group.get("last-delivered-id")))
        if delivered is None or delivered[0] == 0:
            return False
        return time.time() * 1000 - delivered[0] > limit_ms
