"""Redis clients built from Settings: standalone or Cluster, sync or asyncio.

redis-py can retry a command on its own when the connection drops. That is only
safe for commands that do the same thing twice: every script of ours is written
so (events dedupe by key, presence answers are idempotent, acks and set updates
are), but a re-issued `XREADGROUP >` hands a second batch to the consumer while
the first sits unseen in its pending list. Readers therefore get a client that
never retries (`retries=False`): the error reaches the reader, which backs off
and recovers its pending entries itself.
"""

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

from shared.engines.redis.command_packer import packs_in_c, with_hiredis_packing
from shared.settings import Settings

_RETRY_ON = (RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError)
# A Redis that goes silent without resetting the connection (a partition, a frozen
# host) would otherwise hold a caller for as long as TCP keeps retransmitting, many
# minutes: a presence sweep or a worker's append would hang, not fail and recover.
# redis-py 8 defaults to 5 s, as here; said explicitly so that a library whose
# default is "no timeout" (redis-py before 6) cannot bring the hang back. Every
# command answers well within it; blocking reads block for 1 s (BLOCK_MS).
SOCKET_TIMEOUT_S = 5.0


def _common() -> dict[str, Any]:
    """Read at each call, so a test can shorten SOCKET_TIMEOUT_S."""
    return {"socket_connect_timeout": 5, "socket_timeout": SOCKET_TIMEOUT_S,
            "health_check_interval": 15}


# A gateway has a burst of commands in flight when many clients connect or leave at
# once (a reconnect storm after a crash). The default pool raises "Too many
# connections" past its cap; a blocking pool makes the burst wait its turn instead.
ASYNC_POOL_SIZE = 256
ASYNC_POOL_WAIT_SECONDS = 10
RETRIES = 3


def _retry(retries: bool) -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), RETRIES if retries else 0)


def _async_retry(retries: bool) -> AsyncRetry:
    return AsyncRetry(ExponentialBackoff(cap=2.0, base=0.05), RETRIES if retries else 0)


def sync_client(settings: Settings, *, retries: bool = True, **options: Any) -> redis.Redis:
    if settings.REDIS_CLUSTER:
        return RedisCluster.from_url(settings.REDIS_URL, retry=_retry(retries),
                                     **{"socket_timeout": SOCKET_TIMEOUT_S, **options})
    return redis.Redis.from_url(settings.REDIS_URL, retry=_retry(retries),
                                retry_on_error=list(_RETRY_ON) if retries else [],
                                **{**_common(), **options})


def async_client(settings: Settings, *, retries: bool = True,
                 untimed: bool = False) -> aioredis.Redis:
    """`untimed`: no socket timeout, only for a caller that bounds each round trip
    itself (the command batcher); with one, redis-py wraps every reply's read in a
    timeout of its own, and every send in `wait_for`."""
    if settings.REDIS_CLUSTER:
        return AsyncRedisCluster.from_url(settings.REDIS_URL, retry=_async_retry(retries),
                                          max_connections=ASYNC_POOL_SIZE,
                                          socket_timeout=SOCKET_TIMEOUT_S)
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL, max_connections=ASYNC_POOL_SIZE, timeout=ASYNC_POOL_WAIT_SECONDS,
        retry=_async_retry(retries), retry_on_error=list(_RETRY_ON) if retries else [],
        **{**_common(), **({"socket_timeout": None} if untimed else {})})
    if packs_in_c(pool.connection_kwargs):
        pool.connection_class = with_hiredis_packing(pool.connection_class)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
