"""Resume: what a join with `since` replays, and whether that replay is complete.

A room's history is a capped, expiring stream whose entries have the same ids
as the shard stream. The room meta hash keeps its first-ever and latest id,
which tells a trimmed or expired history from a room with no events.

The decision and the replay come from one snapshot (a MULTI of the meta, the
oldest held entry and the entries after `since`): read separately, a busy room
could trim entries after `since` between the check and the read, and the
client would get `recovered: true` with a hole in its replay. The replay ends
at the room's latest id of that snapshot; later events reach the joining
connection live (it holds them back until the replay is queued).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.codec import frame_from_entry, parse_stream_id
from shared.settings import Settings

ZERO_ID = "0-0"


@dataclass(slots=True)
class JoinPoint:
    last_id: str  # latest event id of the room at the join, "0-0" when none
    recovered: bool | None = None  # None: no `since` was asked
    replay: list[tuple[str, str]] = field(default_factory=list)  # (id, frame)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


class RoomHistory:
    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._redis = client
        self._shards = settings.STREAM_SHARDS

    async def join_point(self, room: str, since: str | None) -> JoinPoint:
        history_key = keys.room_history(room, self._shards)
        meta_key = keys.room_meta(room, self._shards)
        first, last, oldest, _ = await self._snapshot(history_key, meta_key, None)
        point = JoinPoint(last_id=last or ZERO_ID)
        if since is None:
            return point
        point.recovered = _recoverable(since, first, last, oldest)
        if not point.recovered or last is None or since == last:
            return point
        # Recoverable with something to replay: decide again on the snapshot that
        # holds the replay itself (the room may have moved on since the first look).
        first, last, oldest, entries = await self._snapshot(history_key, meta_key, since)
        point.last_id = last or ZERO_ID
        point.recovered = _recoverable(since, first, last, oldest)
        if point.recovered:
            point.replay = _frames(entries)
        return point

    async def _snapshot(self, history_key: str, meta_key: str, since: str | None,
                        ) -> tuple[str | None, str | None, str | None, list[Any]]:
        """(first, last, oldest held id, entries after `since`) as of one moment."""
        async with self._redis.pipeline(transaction=since is not None) as pipe:
            pipe.hmget(meta_key, "first", "last")
            pipe.xrange(history_key, "-", "+", count=1)
            if since is not None:
                start = "-" if parse_stream_id(since) == (0, 0) else f"({since}"
                pipe.xrange(history_key, start, "+")  # the history is capped: bounded
            replies = await pipe.execute()
        meta, oldest_entries = replies[0], replies[1]
        oldest = _text(oldest_entries[0][0]) if oldest_entries else None
        entries = replies[2] if since is not None else []
        return _text(meta[0]), _text(meta[1]), oldest, entries


def _frames(entries: list[Any]) -> list[tuple[str, str]]:
    """(id, frame) of each entry, oldest first. Consumes `entries` from the end, so each
    raw entry is freed as its frame is made: a replay of a large history peaks at one
    copy in memory, not two."""
    entries.reverse()
    frames = []
    while entries:
        raw_id, fields = entries.pop()
        entry_id = _text(raw_id) or ZERO_ID
        frames.append((entry_id, frame_from_entry(fields[b"e"], entry_id)))
    return frames


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
