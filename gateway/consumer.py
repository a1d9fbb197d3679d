"""Reads the shard streams with this instance's own consumer group.

Guarantees: entries of one shard reach `on_entry` in stream order; an entry
is acknowledged right after `on_entry` returns (the pending list stays near
empty); a dropped connection is retried with backoff and reading resumes
where the group left off; a missing stream or group (NOGROUP, e.g. Redis
restarted without persistence) is recreated from the last id processed, and a
gap in the shard's sequence numbers (entries trimmed before we read them, or a
reset Redis) is reported through `on_gap` so members can be told to resync.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.codec import ShardEntry

log = logging.getLogger("roomcast.consumer")

READ_COUNT = 500
BLOCK_MS = 1000
BACKOFF_BASE = 0.1
BACKOFF_CAP = 3.0


class ShardConsumer:
    def __init__(self, client: aioredis.Redis, instance_id: str, shards: Sequence[int],
                 on_entry: Callable[[int, ShardEntry], None],
                 on_gap: Callable[[int], Awaitable[None]]) -> None:
        self._redis = client
        self._group = keys.gateway_group(instance_id)
        self._consumer = instance_id
        self._shards = list(shards)
        self._streams = {s: keys.shard_stream(s) for s in self._shards}
        self._on_entry = on_entry
        self._on_gap = on_gap
        self.last_id: dict[int, str] = {}
        self.last_seq: dict[int, int] = {}
        self.healthy = False
        self.last_read_at = 0.0
        self._stopping = False

    async def ensure_groups(self, start: str = "$") -> None:
        for shard, stream in self._streams.items():
            try:
                await self._redis.xgroup_create(stream, self._group,
                                                id=self.last_id.get(shard, start), mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def ack_leftovers(self) -> None:
        """Entries delivered to a previous run of this instance and never acked:
        its clients are gone (they resume from room history), so just ack them."""
        for shard, stream in self._streams.items():
            while True:
                reply = await self._redis.xreadgroup(self._group, self._consumer, {stream: "0"},
                                                     count=READ_COUNT)
                entries = reply[0][1] if reply else []
                ids = [entry_id for entry_id, _ in entries]
                if not ids:
                    break
                await self._redis.xack(stream, self._group, *ids)
                self.last_id[shard] = ids[-1].decode()

    async def run(self) -> None:
        attempt = 0
        await self._start()
        while not self._stopping:
            try:
                await self._read_once()
                attempt = 0
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                self.healthy = False
                if "NOGROUP" not in str(exc):
                    log.error("shard read failed", extra={"error": str(exc)[:200]})
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                log.warning("consumer group or stream vanished; recreating")
                await self._recreate()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.healthy = False
                log.warning("redis unreachable; retrying", extra={"error": str(exc)[:200]})
                await self._backoff(attempt)
                attempt += 1
                await self._safe_start()

    def stop(self) -> None:
        self._stopping = True

    async def _start(self) -> None:
        await self.ensure_groups()
        await self.ack_leftovers()
        self.healthy = True

    async def _safe_start(self) -> None:
        try:
            await self.ensure_groups()
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
            pass  # the next read reports it again

    async def _recreate(self) -> None:
        await self.ensure_groups(start="0")
        for shard in self._shards:
            self.last_seq.pop(shard, None)  # the next entry is the new baseline
            await self._on_gap(shard)

    async def _backoff(self, attempt: int) -> None:
        # Full jitter: gateways that lost Redis together do not come back in lockstep.
        await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))

    async def _read_once(self) -> None:
        streams = {stream: ">" for stream in self._streams.values()}
        reply = await self._redis.xreadgroup(self._group, self._consumer, streams,
                                             count=READ_COUNT, block=BLOCK_MS)
        self.last_read_at = time.monotonic()
        if not reply:
            return
        shard_by_stream = {stream: shard for shard, stream in self._streams.items()}
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw_stream, entries in reply:
                stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
                shard = shard_by_stream[stream]
                ids = []
                for raw_id, fields in entries:
                    if not fields:
                        continue  # deleted while pending
                    entry = ShardEntry.from_fields(raw_id, fields)
                    await self._check_sequence(shard, entry.seq)
                    self._on_entry(shard, entry)
                    self.last_id[shard] = entry.id
                    ids.append(raw_id)
                if ids:
                    pipe.xack(stream, self._group, *ids)
            await pipe.execute()

    async def _check_sequence(self, shard: int, seq: int) -> None:
        previous = self.last_seq.get(shard)
        self.last_seq[shard] = seq
        if previous is not None and seq != previous + 1:
            log.warning("gap in shard stream", extra={"shard": shard, "expected": previous + 1,
                                                       "got": seq})
            await self._on_gap(shard)

    async def destroy_groups(self) -> None:
        for stream in self._streams.values():
            await self._redis.xgroup_destroy(stream, self._group)
