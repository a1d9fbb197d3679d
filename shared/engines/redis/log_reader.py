"""One gateway's reader of the shard streams, with the instance's own consumer group.

Guarantees: entries of one shard reach `on_entry` in stream order; an entry is
acknowledged once `on_entry` returned, in the same round trip as the next read
(the pending list stays near empty: the next read is sent at once); a dropped
connection is retried with backoff and reading resumes where the group left off,
first delivering the entries Redis had already handed to this consumer (its
pending list: a reply lost with the connection); a missing stream or group
(NOGROUP, e.g. Redis restarted without persistence) is recreated from the last
id processed, and a gap in the shard's sequence numbers (entries trimmed before
we read them, or a reset Redis) or a recreated group is reported through
`on_gap` so members can be told to resync. An entry that is not ours (a foreign
writer, a corrupt field) is logged, acknowledged and skipped; no error ever ends
the reader while it is running.

`XREADGROUP >` is sent over a client that never retries on its own (a re-issued
read would hand over a second batch while the first waits unseen in the pending
list); the reader's own recovery replays the pending list instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared import keys
from shared.cancellation import raise_if_cancelled
from shared.codec import parse_stream_id, trusted_id_key
from shared.engines.linger import Linger
from shared.engines.roles import LogEntry, LogSink

log = logging.getLogger("roomcast.consumer")

READ_COUNT = 500
BLOCK_MS = 1000
BACKOFF_BASE = 0.1
BACKOFF_CAP = 3.0
# Fan-out hands frames to the members' queues without waiting; yield to their
# writer tasks this often within one read, so that a burst of READ_COUNT entries
# is not a burst of READ_COUNT frames in a fast client's queue.
YIELD_EVERY = 64


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw_reply(response: Any, **options: Any) -> Any:
    """XREADGROUP's reply as Redis sent it. redis-py's own conversion (to a list of
    (id, dict) per stream) was a tenth of a gateway's fan-out time; `_streams_of`
    and `_parse` read the raw shape directly."""
    return response


def _streams_of(reply: Any) -> Iterable[tuple[Any, list[Any]]]:
    """(stream, entries) pairs from the reader client's raw reply (a RESP3 map, or a
    list over RESP2) or from the other client's reply, which redis-py converts to a
    list."""
    if not reply:
        return ()
    return reply.items() if isinstance(reply, dict) else reply


def _entries_of(reply: Any) -> list[Any]:
    """The entries of a one-stream reply, in any of the shapes above."""
    return [entry for _, entries in _streams_of(reply) for entry in entries if entry]


def _parse(raw_id: bytes | str, fields: Any) -> LogEntry | None:
    """The entry, or None when it is not one our scripts wrote. `fields` is the raw
    flat list (our scripts write e, r, q in that order: the fast path) or a dict."""
    try:
        if (type(fields) is list and len(fields) == 6 and fields[0] == b"e"
                and fields[2] == b"r" and fields[4] == b"q"):
            encoded, room, seq = fields[1], fields[3], fields[5]
        else:
            named = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2],
                                                                     strict=True))
            if b"q" not in named:
                return None  # without its sequence number it would look like a gap
            encoded, room, seq = named[b"e"], named[b"r"], named[b"q"]
        entry = LogEntry(_text(raw_id), room.decode(), int(seq), encoded,
                         trusted_id_key(raw_id))
    except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None
    if not entry.is_control and not (entry.encoded.startswith(b"{")
                                     and entry.encoded.endswith(b"}")):
        return None
    return entry


class ShardConsumer:
    """Reads some shards (all of them, or one on a Redis Cluster) in one loop."""

    def __init__(self, reader: aioredis.Redis, client: aioredis.Redis, instance_id: str,
                 shards: Sequence[int], sink: LogSink) -> None:
        self._reader = reader  # never retries: see the module doc
        self._redis = client
        self._group = keys.gateway_group(instance_id)
        self._consumer = instance_id
        self._shards = list(shards)
        self._streams = {s: keys.shard_stream(s) for s in self._shards}
        self._shard_by_stream = {stream: shard for shard, stream in self._streams.items()}
        self._on_entry = sink.on_entry
        self._on_gap = sink.on_gap
        # Called after each run of entries, before anything else may run: what
        # on_entry gathered is written before the reader yields or reports a gap.
        self._on_flush = sink.on_flush
        self.last_id: dict[int, str] = {}
        self.last_seq: dict[int, int] = {}
        self.healthy = False
        self.last_read_at = 0.0
        self._linger = Linger()
        self._stopping = False
        # (stream, ids) processed and not yet acknowledged: sent with the next read.
        # Kept until a read succeeds (an XACK sent twice is harmless).
        self._unacked: list[tuple[str, list[Any]]] = []

    async def ensure_groups(self, start: str = "$") -> list[int]:
        """Create this instance's group on every shard stream that lacks it, at the last
        id processed when known, else at `start`. Returns the shards where it was made."""
        created = []
        for shard, stream in self._streams.items():
            try:
                await self._redis.xgroup_create(stream, self._group,
                                                id=self.last_id.get(shard, start), mkstream=True)
                created.append(shard)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return created

    async def ack_leftovers(self) -> None:
        """Entries Redis handed to this consumer that were never acknowledged: a previous
        run of this instance died with them, or a reply was lost with its connection.
        They are delivered now (members already served skip them by id), then acked."""
        for shard, stream in self._streams.items():
            start = "0"
            while True:
                reply = await self._redis.xreadgroup(self._group, self._consumer,
                                                     {stream: start}, count=READ_COUNT)
                entries = _entries_of(reply)
                if not entries:
                    break
                ids = await self._process(shard, entries)
                await self._redis.xack(stream, self._group, *ids)
                start = _text(entries[-1][0])

    async def run(self) -> None:
        attempt = 0
        started = False
        recovering = False
        while not self._stopping:
            raise_if_cancelled()
            try:
                if not started:
                    await self._start()
                    started = True
                elif recovering:
                    await self._recover()
                recovering = False
                await self._read_once()
                attempt = 0
                self.healthy = True
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                self.healthy = False
                recovering = True
                if "NOGROUP" in str(exc):
                    log.warning("consumer group or stream vanished; recreating")
                    continue
                log.error("shard read failed", extra={"error": str(exc)[:200]})
                await self._backoff(attempt)
                attempt += 1
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.healthy = False
                recovering = True
                log.warning("redis unreachable; retrying", extra={"error": str(exc)[:200]})
                await self._backoff(attempt)
                attempt += 1
            except Exception:  # a bug must not leave the gateway deaf
                self.healthy = False
                recovering = True
                log.exception("shard reader failed; restarting it")
                await self._backoff(attempt)
                attempt += 1

    def stop(self) -> None:
        self._stopping = True

    @property
    def streams(self) -> dict[int, str]:
        return self._streams

    async def _start(self) -> None:
        await self.ensure_groups()
        await self.ack_leftovers()
        self.healthy = True

    async def _recover(self) -> None:
        """After any failure: groups that vanished are made again (from the last id
        processed, else from the stream's start: a new stream holds nothing older than
        the failure), their members told to resync, and what Redis handed to this
        consumer before the failure is delivered."""
        for shard in await self.ensure_groups(start="0"):
            log.warning("consumer group recreated", extra={"shard": shard})
            self.last_seq.pop(shard, None)  # the next entry is the new baseline
            await self._on_gap(shard)
        await self.ack_leftovers()

    async def _backoff(self, attempt: int) -> None:
        # Full jitter: gateways that lost Redis together do not come back in lockstep.
        await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))

    async def _read_once(self) -> None:
        if self._linger.delay:
            await asyncio.sleep(self._linger.delay)
        streams = {stream: ">" for stream in self._streams.values()}
        if self._unacked:
            # the last read's acks and this read in one round trip
            async with self._reader.pipeline(transaction=False) as pipe:
                for stream, ids in self._unacked:
                    pipe.xack(stream, self._group, *ids)
                pipe.xreadgroup(self._group, self._consumer, streams, count=READ_COUNT,
                                block=BLOCK_MS)
                reply = (await pipe.execute())[-1]
            self._unacked = []
        else:
            reply = await self._reader.xreadgroup(self._group, self._consumer, streams,
                                                  count=READ_COUNT, block=BLOCK_MS)
        self.last_read_at = time.monotonic()
        self._linger.read_returned(bool(reply))
        if not reply:
            return
        for raw_stream, entries in _streams_of(reply):
            stream = _text(raw_stream)
            shard = self._shard_by_stream[stream]
            ids = await self._fill_from_pending(shard, stream, entries)
            ids += await self._process(shard, entries)
            if ids:
                self._unacked.append((stream, ids))

    async def ack_processed(self) -> None:
        """Acknowledge what was processed since the last read (on a clean stop)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in self._unacked:
                pipe.xack(stream, self._group, *ids)
            await pipe.execute()
        self._unacked = []

    async def _process(self, shard: int,
                       entries: list[Any]) -> list[Any]:
        """Deliver entries of one shard in order; returns the ids to acknowledge."""
        ids = []
        done = parse_stream_id(self.last_id.get(shard, "0-0")) or (0, 0)
        for n, (raw_id, fields) in enumerate(entries, 1):
            ids.append(raw_id)
            if not fields:
                continue  # deleted while pending
            entry = _parse(raw_id, fields)
            if entry is None:
                log.warning("skipped a shard entry that is not ours",
                            extra={"shard": shard, "id": _text(raw_id)})
                continue
            if entry.key <= done:
                continue  # handed to on_entry before a failure kept it from the ack
            previous = self.last_seq.get(shard)
            if previous is not None and entry.seq != previous + 1:
                await self._report_gap(shard, previous, entry.seq)
            self.last_seq[shard] = entry.seq
            self._on_entry(shard, entry)
            self.last_id[shard] = entry.id
            if n % YIELD_EVERY == 0:
                self._on_flush()
                await asyncio.sleep(0)  # let the writers drain between chunks
        self._on_flush()
        return ids

    async def _fill_from_pending(self, shard: int, stream: str,
                                 entries: list[Any]) -> list[Any]:
        """When the first new entry does not follow the last one processed, the entries
        in between may have been handed to this consumer in a reply that was lost with
        its connection (redis-py reconnects and retries the read without telling us):
        they wait in our pending list. Deliver them first; only what is not there is a
        gap. Returns the ids to acknowledge."""
        previous = self.last_seq.get(shard)
        first = next((parsed for raw_id, fields in entries
                      if fields and (parsed := _parse(raw_id, fields)) is not None), None)
        if previous is None or first is None or first.seq == previous + 1:
            return []
        limit = first.key
        start = self.last_id.get(shard, "0")
        acked: list[Any] = []
        while True:
            reply = await self._redis.xreadgroup(self._group, self._consumer,
                                                 {stream: start}, count=READ_COUNT)
            older = [(i, f) for i, f in _entries_of(reply)
                     if (parse_stream_id(_text(i)) or (0, 0)) < limit]
            if not older:
                return acked
            log.warning("delivering entries left in the pending list",
                        extra={"shard": shard, "count": len(older)})
            acked += await self._process(shard, older)
            start = _text(older[-1][0])

    async def _report_gap(self, shard: int, previous: int, seq: int) -> None:
        # checked inline per entry (no coroutine per entry); awaited only on a gap
        self.last_seq[shard] = seq
        self._on_flush()  # events before the gap go out before its resync
        log.warning("gap in shard stream", extra={"shard": shard, "expected": previous + 1,
                                                   "got": seq})
        await self._on_gap(shard)

    async def destroy_groups(self) -> None:
        for stream in self._streams.values():
            await self._redis.xgroup_destroy(stream, self._group)


class RedisLogReader:
    """LogReader: one ShardConsumer per group of shards, run side by side."""

    def __init__(self, reader: aioredis.Redis, client: aioredis.Redis, instance_id: str,
                 groups: list[list[int]], sink: LogSink) -> None:
        self._redis = client
        # the reader client serves only these reads: their replies stay raw (_parse)
        reader.set_response_callback("XREADGROUP", _raw_reply)
        self._consumers = [ShardConsumer(reader, client, instance_id, shards, sink)
                           for shards in groups]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self._consumers)

    async def start(self) -> None:
        for consumer in self._consumers:
            await consumer.ensure_groups()  # from here on, nothing appended is missed

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(c.run()) for c in self._consumers]
        await asyncio.gather(*self._tasks)

    def stop(self) -> None:
        for consumer in self._consumers:
            consumer.stop()
        for task in self._tasks:
            task.cancel()

    async def close(self, *, forget: bool) -> None:
        self.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(RedisError, OSError):
            for consumer in self._consumers:
                if forget:
                    await consumer.destroy_groups()
                else:
                    await consumer.ack_processed()

    async def lag_seconds(self) -> dict[int, float]:
        """Per shard: age of the newest entry behind the last one this gateway processed."""
        lag = {}
        for consumer in self._consumers:
            for shard, stream in consumer.streams.items():
                info = await self._redis.xinfo_stream(stream)
                newest = parse_stream_id(_text(info.get("last-generated-id") or b""))
                done = parse_stream_id(consumer.last_id.get(shard, "0-0"))
                lag[shard] = ((newest[0] - done[0]) / 1000
                              if newest and done and newest > done else 0.0)
        return lag
