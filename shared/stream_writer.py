"""Append entries through the publish script (dedupe + shard XADD + room history).

Used by worker actors (sync client, Dramatiq threads) and by gateways (async
client, for user_joined/user_left, heartbeats and revocations).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import keys
from shared.rooms import shard_of
from shared.settings import Settings

PUBLISH_SCRIPT = resources.files("shared").joinpath("scripts/publish.lua").read_text()
# Safety cap on each shard stream: readers normally sit at its tail.
SHARD_STREAM_MAXLEN = 50_000
DEDUPE_TTL_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class AppendResult:
    id: str
    appended: bool  # False: the key had been seen, `id` is the first append's


def _room_call(settings: Settings, room: str, encoded: bytes, key: str | None,
               history: bool) -> tuple[list[str], list[Any]]:
    shard = shard_of(room, settings.STREAM_SHARDS)
    call_keys = [
        keys.shard_stream(shard), keys.shard_seq(shard),
        keys.dedupe(key or "-", room, settings.STREAM_SHARDS),
        keys.room_history(room, settings.STREAM_SHARDS),
        keys.room_meta(room, settings.STREAM_SHARDS),
    ]
    args: list[Any] = [
        encoded, room, SHARD_STREAM_MAXLEN, settings.ROOM_HISTORY_SIZE,
        settings.ROOM_HISTORY_TTL, DEDUPE_TTL_SECONDS if key else 0, "1" if history else "0",
    ]
    return call_keys, args


def _control_call(shard: int, encoded: bytes, marker: str) -> tuple[list[str], list[Any]]:
    # Control entries carry a room starting with "_" and skip dedupe and history;
    # the unused keys still share the shard's hash tag (Cluster needs one slot).
    stream = keys.shard_stream(shard)
    call_keys = [stream, keys.shard_seq(shard), stream, stream, stream]
    return call_keys, [encoded, marker, SHARD_STREAM_MAXLEN, 1, 1, 0, "0"]


def _result(raw: list[Any]) -> AppendResult:
    entry_id = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
    return AppendResult(id=entry_id, appended=bool(int(raw[1])))


class StreamWriter:
    """Synchronous writer for worker actors."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._settings = settings
        self._script = client.register_script(PUBLISH_SCRIPT)

    def append_event(self, room: str, encoded: bytes, key: str) -> AppendResult:
        call_keys, args = _room_call(self._settings, room, encoded, key, history=True)
        return _result(self._script(keys=call_keys, args=args))

    def append_control(self, shard: int, encoded: bytes, marker: str) -> str:
        call_keys, args = _control_call(shard, encoded, marker)
        return _result(self._script(keys=call_keys, args=args)).id


class AsyncStreamWriter:
    """Asynchronous writer for gateways."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self._settings = settings
        self._script = client.register_script(PUBLISH_SCRIPT)

    async def append_event(self, room: str, encoded: bytes, key: str | None) -> AppendResult:
        call_keys, args = _room_call(self._settings, room, encoded, key, history=True)
        return _result(await self._script(keys=call_keys, args=args))

    async def append_control(self, shard: int, encoded: bytes, marker: str) -> str:
        call_keys, args = _control_call(shard, encoded, marker)
        return _result(await self._script(keys=call_keys, args=args)).id
