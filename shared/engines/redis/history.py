"""Resume: what a join with `since` replays, and whether that replay is complete.

A room's history is a capped, expiring stream whose entries have the same ids
as the shard stream, each numbered with the room's event count `n`. The room
meta hash keeps its first-ever id, latest id and count, which tells a trimmed
or expired history from a room with no events.

The decision comes from one snapshot (a MULTI of the meta, the oldest held
entry, the entry at `since` and the first page after it): read separately, a
busy room could trim entries after `since` between the check and the read, and
the client would get `recovered: true` with a hole in its replay. The replay
ends at the room's latest id of that snapshot (later events reach the joining
connection live) and is read a page at a time as the client's socket drains,
so a long resume never sits in memory whole. The numbers tell how many events
the replay holds (`replayed`) and whether a later page lost entries to a trim
in between; then the replay stops there and the client gets `resync_required`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.codec import event_frame, parse_stream_id
from shared.engines.recovery import recoverable
from shared.engines.redis.batcher import CommandBatcher
from shared.engines.roles import ZERO_ID, IdKey, JoinPoint
from shared.settings import Settings

REPLAY_PAGE = 64  # history entries read per round trip while replaying


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _id_key(entry_id: str) -> IdKey:
    return parse_stream_id(entry_id) or (0, 0)


def _number(fields: dict[bytes, bytes]) -> int:
    return int(fields.get(b"n", b"0"))


def _frames(entries: list[Any]) -> list[tuple[IdKey, bytes]]:
    frames = []
    for raw_id, fields in entries:
        entry_id = _text(raw_id) or ZERO_ID
        frames.append((_id_key(entry_id), event_frame(fields[b"e"], entry_id)))
    return frames


class RedisReplayCursor:
    """Pages of one room's history after an id, up to the join's latest id."""

    def __init__(self, client: aioredis.Redis, history_key: str, room: str,
                 first_page: list[Any], after_id: str, after_n: int, until: str) -> None:
        self.room = room
        self._redis = client
        self._key = history_key
        self._pending: list[Any] | None = first_page
        self._after_id, self._after_n = after_id, after_n
        self._until = until
        self._broken = False

    @property
    def broken(self) -> bool:
        return self._broken

    async def next_page(self) -> list[tuple[IdKey, bytes]]:
        entries, self._pending = self._pending, None
        if entries is None:
            if self._broken or _id_key(self._after_id) >= _id_key(self._until):
                return []
            entries = await self._redis.xrange(self._key, f"({self._after_id}", self._until,
                                               count=REPLAY_PAGE)
        if not entries:
            self._broken = True  # the rest expired or was trimmed away
            return []
        if _number(entries[0][1]) != self._after_n + 1:
            self._broken = True  # trimmed between two pages
            return []
        self._after_id = _text(entries[-1][0]) or ZERO_ID
        self._after_n = _number(entries[-1][1])
        return _frames(entries)


class RedisHistory:
    def __init__(self, client: aioredis.Redis, settings: Settings,
                 batcher: CommandBatcher | None = None) -> None:
        self._redis = client
        self._shards = settings.STREAM_SHARDS
        self._batcher = batcher  # None on a Cluster

    async def join_point(self, room: str, since: str | None) -> JoinPoint:
        history_key = keys.room_history(room, self._shards)
        meta_key = keys.room_meta(room, self._shards)
        if since is None and self._batcher is not None:
            # a plain join (most of them): one read, with the other calls of this turn
            ((last,),) = await self._batcher.execute([("HMGET", meta_key, "last")])
            return JoinPoint(last_id=_text(last) or ZERO_ID)
        async with self._redis.pipeline(transaction=since is not None) as pipe:
            pipe.hmget(meta_key, "first", "last", "n")
            pipe.xrange(history_key, "-", "+", count=1)
            if since is not None and parse_stream_id(since) is not None:
                pipe.xrevrange(history_key, since, "-", count=1)
                start = "-" if parse_stream_id(since) == (0, 0) else f"({since}"
                pipe.xrange(history_key, start, "+", count=REPLAY_PAGE)
            replies = await pipe.execute()
        (first, last, count), oldest_entries = replies[0], replies[1]
        first, last = _text(first), _text(last)
        point = JoinPoint(last_id=last or ZERO_ID)
        if since is None:
            return point
        oldest = oldest_entries[0] if oldest_entries else None
        point.recovered = recoverable(since, first, last, _text(oldest[0]) if oldest else None)
        if not point.recovered or last is None or since == last or len(replies) < 4:
            return point
        at_since, first_page = replies[2], replies[3]
        if parse_stream_id(since) == (0, 0):
            after_n = _number(oldest[1]) - 1 if oldest else 0
        else:
            after_n = _number(at_since[0][1]) if at_since else 0
        point.replayed = max(0, int(count or 0) - after_n)
        if point.replayed:
            point.replay = RedisReplayCursor(self._redis, history_key, room, first_page,
                                             since, after_n, last)
        return point

