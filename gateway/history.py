"""Resume: what a join with `since` replays, and whether that replay is complete.

A room's history is a capped, expiring stream whose entries have the same ids
as the shard stream. The room meta hash keeps its first-ever and latest id,
which tells a trimmed or expired history from a room with no events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from shared import keys
from shared.codec import frame_from_entry, parse_stream_id
from shared.settings import Settings

ZERO_ID = "0-0"
REPLAY_BATCH = 500


@dataclass(slots=True)
class JoinPoint:
    last_id: str  # latest event id of the room at the join, "0-0" when none
    recovered: bool | None = None  # None: no `since` was asked
    replay: list[tuple[str, str]] = field(default_factory=list)  # (id, frame)


class RoomHistory:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._shards = settings.STREAM_SHARDS
        self._size = settings.ROOM_HISTORY_SIZE

    async def join_point(self, room: str, since: str | None) -> JoinPoint:
        history_key = keys.room_history(room, self._shards)
        meta_key = keys.room_meta(room, self._shards)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(meta_key, "first", "last")
            pipe.xrange(history_key, "-", "+", count=1)
            meta, oldest_entries = await pipe.execute()
        first = meta[0].decode() if meta[0] else None
        last = meta[1].decode() if meta[1] else None
        point = JoinPoint(last_id=last or ZERO_ID)
        if since is None:
            return point
        oldest = oldest_entries[0][0].decode() if oldest_entries else None
        point.recovered = _recoverable(since, first, last, oldest)
        if point.recovered and last is not None and since != last:
            point.replay = await self._read_after(history_key, since)
            if point.replay:
                point.last_id = max(point.last_id, point.replay[-1][0], key=_id_key)
        return point

    async def _read_after(self, history_key: str, since: str) -> list[tuple[str, str]]:
        frames: list[tuple[str, str]] = []
        start = f"({since}"
        while True:
            entries = await self._redis.xrange(history_key, start, "+", count=REPLAY_BATCH)
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                frames.append((entry_id, frame_from_entry(fields[b"e"], entry_id)))
            if len(entries) < REPLAY_BATCH or len(frames) > self._size * 2:
                return frames
            start = f"({frames[-1][0]}"


def _id_key(entry_id: str) -> tuple[int, int]:
    return parse_stream_id(entry_id) or (0, 0)


def _recoverable(since: str, first: str | None, last: str | None, oldest: str | None) -> bool:
    """True when every event after `since` is still held."""
    wanted = parse_stream_id(since)
    if wanted is None:
        return False  # malformed
    if last is None:
        return wanted == (0, 0)  # a room with no events: nothing can have been missed
    latest = _id_key(last)
    if wanted > latest:
        return False  # from the future: not an id this room gave out
    if wanted == latest:
        return True  # the client saw the latest event; nothing to replay
    if oldest is None:
        return False  # history expired
    if wanted == (0, 0):
        return oldest == first  # whole history asked: complete only if nothing was trimmed
    return _id_key(oldest) <= wanted
