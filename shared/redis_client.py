"""Redis clients built from Settings: standalone or Cluster, sync or asyncio,
with retries and exponential backoff on connection errors."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from shared.settings import Settings

_RETRY_ON = (RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError)
_COMMON: dict[str, Any] = {"socket_connect_timeout": 5, "health_check_interval": 15}
# A gateway has a burst of commands in flight when many clients connect or leave at
# once (a reconnect storm after a crash). The default pool raises "Too many
# connections" past its cap; a blocking pool makes the burst wait its turn instead.
ASYNC_POOL_SIZE = 256
ASYNC_POOL_WAIT_SECONDS = 10


def sync_client(settings: Settings, url: str | None = None) -> redis.Redis:
    backoff = ExponentialBackoff(cap=2.0, base=0.05)
    if settings.REDIS_CLUSTER:
        return RedisCluster.from_url(url or settings.REDIS_URL, retry=Retry(backoff, 3))
    return redis.Redis.from_url(url or settings.REDIS_URL, retry=Retry(backoff, 3),
                                retry_on_error=list(_RETRY_ON), **_COMMON)


def async_client(settings: Settings) -> aioredis.Redis:
    backoff = ExponentialBackoff(cap=2.0, base=0.05)
    if settings.REDIS_CLUSTER:
        return AsyncRedisCluster.from_url(settings.REDIS_URL, retry=AsyncRetry(backoff, 3),
                                          max_connections=ASYNC_POOL_SIZE)
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT_SECONDS,
        retry=AsyncRetry(backoff, 3), retry_on_error=list(_RETRY_ON), **_COMMON)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
