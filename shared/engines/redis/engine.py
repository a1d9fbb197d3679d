"""The Redis engine: every role on one Redis (or Redis Cluster), for any number of
gateways and workers. Clients are made on first use: a gateway never opens the
synchronous ones, a worker never the asyncio ones."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
import uuid
from collections.abc import Sequence

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared import keys
from shared.engines.access import OpenAccess
from shared.engines.redis.access import RedisAccess, RedisAccessStore
from shared.engines.redis.batcher import CommandBatcher, batcher_client
from shared.engines.redis.client import async_client, sync_client
from shared.engines.redis.event_log import RedisEventLog, RedisEventWriter
from shared.engines.redis.history import RedisHistory
from shared.engines.redis.job_queue import (
    AsyncRedisJobQueue,
    RedisJobQueue,
    acheck_shard_count,
    check_shard_count,
)
from shared.engines.redis.job_source import RedisJobSource, fetch_many
from shared.engines.redis.presence import RedisPresence
from shared.engines.redis.scripts import source
from shared.engines.roles import (
    Access,
    AccessStore,
    EventLog,
    EventWriter,
    FetchedJob,
    History,
    JobQueue,
    JobSource,
    Presence,
    SyncJobQueue,
)
from shared.settings import AccessMode, Settings


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def holder_is_dead_here(token: str) -> bool:
    """True when `token` names a process on this host that no longer exists."""
    host, _, rest = token.partition("|")
    pid, _, _ = rest.partition("|")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False


class RedisEngine:
    name = "redis"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # host|pid|random: a restart on this host can tell its dead predecessor's lease
        self._instance_token = f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex[:8]}"

    # -- clients ----------------------------------------------------------------------
    @functools.cached_property
    def aio(self) -> aioredis.Redis:
        return async_client(self.settings)

    @functools.cached_property
    def _aio_reader(self) -> aioredis.Redis:
        return async_client(self.settings, retries=False)

    @functools.cached_property
    def _aio_batched(self) -> aioredis.Redis:
        return batcher_client(self.settings)

    @functools.cached_property
    def sync(self) -> redis.Redis:
        return sync_client(self.settings)

    @functools.cached_property
    def _sync_reader(self) -> redis.Redis:
        # blocking reads of the inbox: a socket timeout above the longest BLOCK
        return sync_client(self.settings, retries=False, socket_timeout=30)

    # -- gateway side -----------------------------------------------------------------
    @functools.cached_property
    def event_log(self) -> EventLog:
        return RedisEventLog(self.aio, self._aio_reader, self.settings, self.batcher)

    @functools.cached_property
    def history(self) -> History:
        return RedisHistory(self.aio, self.settings, self.batcher)

    def presence(self, instance_id: str) -> Presence:
        return RedisPresence(self.aio, instance_id, self.settings.WS_HEARTBEAT_INTERVAL,
                             batcher=self.batcher)

    @functools.cached_property
    def batcher(self) -> CommandBatcher | None:
        """The gateway's small calls, sent together (None on a Cluster: see batcher.py)."""
        return None if self.settings.REDIS_CLUSTER else CommandBatcher(self._aio_batched)

    @functools.cached_property
    def access(self) -> Access:
        if self.settings.ACCESS_MODE is AccessMode.OPEN:
            return OpenAccess()
        return RedisAccess(self.aio)

    @functools.cached_property
    def jobs(self) -> JobQueue:
        return AsyncRedisJobQueue(self.aio, self.settings)

    async def check_config(self) -> None:
        """Refuse to run with a STREAM_SHARDS other than this Redis's (SettingsError)."""
        await acheck_shard_count(self.aio, self.settings)

    async def reachable(self) -> bool:
        try:
            return bool(await self.aio.ping())
        except (RedisError, OSError):
            return False

    async def hold_instance(self, instance_id: str, ttl: float) -> bool:
        """Take or renew the lease on a gateway instance id. False: a live gateway has it.

        A holder on this host whose process is gone (SIGKILLed, then restarted with
        the same id) is taken over at once; a holder elsewhere keeps the id until its
        lease expires (3 heartbeat intervals) unless it renews it."""
        lease = self.aio.register_script(source("lease"))
        key = keys.instance_lease(instance_id)
        reply = await lease(keys=[key], args=[self._instance_token, int(ttl * 1000), "1"])
        if reply == 1:
            return True
        holder = _text(reply)
        if not holder_is_dead_here(holder):
            return False
        reply = await lease(keys=[key], args=[self._instance_token, int(ttl * 1000), "2",
                                              holder])
        return bool(reply == 1)

    async def release_instance(self, instance_id: str) -> None:
        lease = self.aio.register_script(source("lease"))
        with contextlib.suppress(RedisError, OSError):
            await lease(keys=[keys.instance_lease(instance_id)],
                        args=[self._instance_token, 0, "0"])

    async def aclose(self) -> None:
        batcher = self.__dict__.pop("batcher", None)
        if batcher is not None:
            await batcher.aclose()
        for name in ("aio", "_aio_reader", "_aio_batched"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                await client.aclose()

    # -- worker and backend side ------------------------------------------------------
    @functools.cached_property
    def writer(self) -> EventWriter:
        return RedisEventWriter(self.sync, self.settings)

    @functools.cached_property
    def access_store(self) -> AccessStore:
        return RedisAccessStore(self.sync, self.writer, self.settings.STREAM_SHARDS)

    @functools.cached_property
    def sync_jobs(self) -> SyncJobQueue:
        return RedisJobQueue(self.sync, self.settings)

    def check_config_sync(self) -> None:
        check_shard_count(self.sync, self.settings)

    def job_source(self, shard: int, worker_id: str) -> JobSource:
        return RedisJobSource(self._sync_reader, self.settings, shard, worker_id)

    def fetch_jobs(self, sources: Sequence[JobSource], count: int, block_ms: int
                   ) -> dict[int, list[FetchedJob]]:
        mine = [s for s in sources if isinstance(s, RedisJobSource)]
        assert len(mine) == len(sources), "sources of another engine"
        return fetch_many(self._sync_reader, mine, count, block_ms)

    def register_worker(self, worker_id: str, ttl: float) -> None:
        now = time.time()
        with self.sync.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.workers(), {worker_id: now + ttl})
            pipe.zremrangebyscore(keys.workers(), "-inf", now)
            pipe.execute()

    def unregister_worker(self, worker_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            self.sync.zrem(keys.workers(), worker_id)

    def live_workers(self) -> int:
        return int(self.sync.zcount(keys.workers(), time.time(), "+inf"))

    def start_local_workers(self) -> None:
        """Workers are processes of their own (`roomcast worker`)."""

    def stop_local_workers(self) -> None:
        """Nothing runs here: see start_local_workers."""

    def close(self) -> None:
        for name in ("sync", "_sync_reader"):
            client = self.__dict__.pop(name, None)
            if client is not None:
                client.close()
