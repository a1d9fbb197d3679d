"""The job queue on Redis: one inbox stream per shard, bounded.

A producer's jobs for one shard are queued by one script call, all or none, so
their order is the producer's; jobs of different shards are independent (each
shard is consumed by one worker at a time: see job_source.py). Past
PUBLISH_QUEUE_MAX entries in a shard's inbox the call waits, up to
PUBLISH_QUEUE_TIMEOUT, for the workers to make room, then raises QueueFull.
Nothing is ever dropped. A dropped connection or a short Redis restart is ridden
over for up to OUTAGE_SECONDS (a job queued twice by such a retry is harmless:
events dedupe by key, access changes are idempotent).

Jobs accepted for some shards stay queued when another shard's are refused;
every event keeps its key, so queueing the same events again appends each once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.engines.jobs import enqueue_args, split_by_shard
from shared.engines.redis.group_commit import GroupCommit
from shared.engines.redis.scripts import source
from shared.engines.roles import Job, QueueFull, QueueStats
from shared.settings import Settings, SettingsError

FIRST_WAIT = 0.005  # back-pressure: first pause before asking again, doubling
MAX_WAIT = 0.2
OUTAGE_SECONDS = 5.0  # how long an enqueue rides over an unreachable Redis
_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)


def _mismatch(mine: int, found: object) -> SettingsError:
    value = found.decode() if isinstance(found, bytes) else str(found)
    return SettingsError(f"STREAM_SHARDS: {mine} here, but this Redis serves {value} shards "
                         f"(set by its first gateway, worker or producer); use {value}")


def check_shard_count(client: redis.Redis, settings: Settings) -> None:
    found = client.register_script(source("config"))(
        keys=[keys.shard_count()], args=[settings.STREAM_SHARDS])
    if int(found) != settings.STREAM_SHARDS:
        raise _mismatch(settings.STREAM_SHARDS, found)


async def acheck_shard_count(client: aioredis.Redis, settings: Settings) -> None:
    found = await client.register_script(source("config"))(
        keys=[keys.shard_count()], args=[settings.STREAM_SHARDS])
    if int(found) != settings.STREAM_SHARDS:
        raise _mismatch(settings.STREAM_SHARDS, found)


class _Attempt:
    """One enqueue call's state, I/O-free: which shards' jobs still wait, and what to do
    next (try them, pause, or give up). Shared by the sync and the async queue."""

    def __init__(self, settings: Settings, jobs: Sequence[Job], timeout: float | None) -> None:
        self.bound = settings.PUBLISH_QUEUE_MAX
        self.timeout = settings.PUBLISH_QUEUE_TIMEOUT if timeout is None else timeout
        self.pending = split_by_shard(jobs, settings.STREAM_SHARDS)
        self.total = len(self.pending)
        start = time.monotonic()
        self.deadline = start + self.timeout
        self.outage_deadline = start + OUTAGE_SECONDS
        self.wait = FIRST_WAIT

    def calls(self) -> list[tuple[int, list[str], list[Any]]]:
        """One script call per shard, each with the shard's jobs."""
        return [(shard, *enqueue_args(self.bound, [(shard, jobs)]))
                for shard, jobs in list(self.pending.items())]

    def accepted(self, shard: int) -> None:
        del self.pending[shard]

    def pause(self) -> float:
        """Seconds to wait before the next round; raises QueueFull past the timeout."""
        if time.monotonic() >= self.deadline:
            shards = sorted(self.pending)
            raise QueueFull(
                f"job queue full for shard(s) {', '.join(map(str, shards))} after "
                f"{self.timeout:g} s (PUBLISH_QUEUE_MAX); {self.total - len(shards)} of "
                f"{self.total} shards' jobs were queued; queueing the same events again "
                "is safe")
        wait, self.wait = self.wait, min(self.wait * 2, MAX_WAIT)
        return wait

    def outage(self, exc: Exception) -> float:
        """Seconds to wait after a connection error; re-raises it past OUTAGE_SECONDS."""
        if time.monotonic() >= self.outage_deadline:
            raise exc
        wait, self.wait = self.wait, min(self.wait * 2, MAX_WAIT)
        return wait


class _ScriptCalls:
    """Without group commit: a Redis Cluster client routes each shard's call to its
    slot's node."""

    def __init__(self, client: redis.Redis, script: str, bound: int) -> None:
        self._script = client.register_script(script)
        self._bound = bound

    def submit(self, pending: Mapping[int, Sequence[Job]]) -> set[int]:
        queued = set()
        for shard, jobs in pending.items():
            call_keys, args = enqueue_args(self._bound, [(shard, jobs)])
            if self._script(keys=call_keys, args=args)[0]:
                queued.add(shard)
        return queued


class RedisJobQueue:
    """The producer side for backends and workers (threads); calls made at the same
    time by several threads share one script call (group_commit.py)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        bound = settings.PUBLISH_QUEUE_MAX
        self._enqueue: GroupCommit | _ScriptCalls = (
            _ScriptCalls(client, source("enqueue"), bound) if settings.REDIS_CLUSTER
            else GroupCommit(client, source("enqueue"), bound))
        self._checked = False

    def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        if not self._checked:
            check_shard_count(self._redis, self._settings)
            self._checked = True
        attempt = _Attempt(self._settings, jobs, timeout)
        while attempt.pending:
            try:
                for shard in self._enqueue.submit(attempt.pending):
                    attempt.accepted(shard)
            except _OUTAGE as exc:
                time.sleep(attempt.outage(exc))  # Redis restarting: try again shortly
                continue
            if attempt.pending:
                time.sleep(attempt.pause())  # back-pressure: the workers are behind


class AsyncRedisJobQueue:
    """The producer side for gateways and async backends."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self._enqueue = client.register_script(source("enqueue"))
        self._checked = False

    async def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        if not self._checked:
            await acheck_shard_count(self._redis, self._settings)
            self._checked = True
        attempt = _Attempt(self._settings, jobs, timeout)
        while attempt.pending:
            try:
                for shard, call_keys, args in attempt.calls():
                    if (await self._enqueue(keys=call_keys, args=args))[0]:
                        attempt.accepted(shard)
            except _OUTAGE as exc:
                await asyncio.sleep(attempt.outage(exc))  # Redis restarting: try again
                continue
            if attempt.pending:
                await asyncio.sleep(attempt.pause())  # back-pressure: workers are behind

    async def stats(self) -> QueueStats:
        shards = range(self._settings.STREAM_SHARDS)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.xlen(keys.inbox(shard))
            for shard in shards:
                pipe.xlen(keys.dead_letters(shard))
            pipe.zcount(keys.workers(), time.time(), "+inf")
            replies = await pipe.execute()
        n = len(shards)
        depths = [int(x) for x in replies[:n]]
        return QueueStats(depth=sum(depths), workers=int(replies[-1]),
                          dead_letters=sum(int(x) for x in replies[n:2 * n]),
                          detail={f"shard_{s}": d for s, d in zip(shards, depths, strict=True)})
