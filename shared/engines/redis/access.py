"""Grants and links in Redis: checked by gateways, written only by workers.

A revocation also appends a control entry to the room's shard stream, so every
gateway (each reads every shard) re-checks that user's rooms within its next read.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from shared import keys
from shared.codec import CONTROL_REVOKE, encode_control
from shared.engines.access import check_link, own_room_answer
from shared.engines.roles import EventWriter
from shared.rooms import Room, RoomKind, shard_of


class RedisAccess:
    """Access for ACCESS_MODE=acl (gateways)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def allowed(self, user_id: int, room: str) -> bool:
        parsed = Room.parse(room)
        own = own_room_answer(user_id, parsed)
        if own is not None:
            return own
        grants_key = keys.grants(user_id)
        if parsed.kind is RoomKind.PROJECT:
            return bool(await self._redis.sismember(grants_key, room))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sismember(grants_key, room)
            pipe.get(keys.room_link(room))
            direct, project = await pipe.execute()
        if direct:
            return True
        return bool(project) and bool(await self._redis.sismember(grants_key, project))


class RedisAccessStore:
    """AccessStore for workers."""

    def __init__(self, client: redis.Redis, writer: EventWriter, shards: int) -> None:
        self._redis = client
        self._writer = writer
        self._shards = shards

    def grant(self, user_id: int, room: str) -> None:
        self._redis.sadd(keys.grants(user_id), room)

    def revoke(self, user_id: int, room: str) -> None:
        self._redis.srem(keys.grants(user_id), room)
        self._writer.append_control(shard_of(room, self._shards),
                                    encode_control(CONTROL_REVOKE, {"user_id": user_id,
                                                                    "room": room}),
                                    CONTROL_REVOKE)

    def link(self, room: str, project_room: str) -> None:
        check_link(Room.parse(room), Room.parse(project_room))
        self._redis.set(keys.room_link(room), project_room)

    def granted(self, user_id: int, room: str) -> bool:
        parsed = Room.parse(room)
        own = own_room_answer(user_id, parsed)
        if own is not None:
            return own
        grants_key = keys.grants(user_id)
        if self._redis.sismember(grants_key, room):
            return True
        project = self._redis.get(keys.room_link(room)) if parsed.kind is not RoomKind.PROJECT \
            else None
        return bool(project) and bool(self._redis.sismember(grants_key, project))
