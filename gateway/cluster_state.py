"""Bookkeeping shared by all gateways: per-user connection slots and room presence.

Every entry carries an expiry score that its gateway refreshes each heartbeat,
so the entries of a gateway that crashed free themselves within
`EXPIRY_HEARTBEATS` intervals without anyone cleaning up after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from importlib import resources

import redis.asyncio as aioredis

from shared import keys

EXPIRY_HEARTBEATS = 2.5  # < 3 intervals: a crashed gateway's slots are gone in time


def _script(name: str) -> str:
    return resources.files("shared").joinpath(f"scripts/{name}.lua").read_text()


class ClusterState:
    def __init__(self, client: aioredis.Redis, heartbeat_interval: float) -> None:
        self._redis = client
        self._ttl = heartbeat_interval * EXPIRY_HEARTBEATS
        self._claim = client.register_script(_script("claim_slot"))
        self._enter = client.register_script(_script("presence_enter"))
        self._leave = client.register_script(_script("presence_leave"))

    def _expiry(self) -> tuple[float, float]:
        now = time.time()
        return now, now + self._ttl

    # -- connection slots -------------------------------------------------------------
    async def claim_slot(self, user_id: int, connection_id: str, limit: int) -> bool:
        now, expiry = self._expiry()
        taken = await self._claim(keys=[keys.user_connections(user_id)],
                                  args=[now, expiry, connection_id, limit])
        return bool(taken)

    async def release_slot(self, user_id: int, connection_id: str) -> None:
        await self._redis.zrem(keys.user_connections(user_id), connection_id)

    # -- presence -------------------------------------------------------------------------
    async def enter_room(self, room: str, user_id: int, username: str,
                         connection_id: str) -> bool:
        now, expiry = self._expiry()
        await self._redis.hset(keys.usernames(), str(user_id), username)
        first = await self._enter(
            keys=[keys.room_presence(room), keys.room_user_connections(room, user_id)],
            args=[now, expiry, connection_id, user_id])
        return bool(first)

    async def leave_room(self, room: str, user_id: int, connection_id: str) -> bool:
        now, _ = self._expiry()
        last = await self._leave(
            keys=[keys.room_presence(room), keys.room_user_connections(room, user_id)],
            args=[now, 0, connection_id, user_id])
        return bool(last)

    async def members(self, room: str) -> list[tuple[int, str]]:
        user_ids = await self._redis.zrangebyscore(keys.room_presence(room), time.time(), "+inf")
        if not user_ids:
            return []
        names = await self._redis.hmget(keys.usernames(), user_ids)
        return sorted(
            (int(uid), (name or b"").decode() or f"user-{int(uid)}")
            for uid, name in zip(user_ids, names, strict=True)
        )

    # -- heartbeat ------------------------------------------------------------------------
    async def refresh(self, slots: Iterable[tuple[int, str]],
                      memberships: Iterable[tuple[str, int, str]]) -> None:
        """Push the expiry of every live slot and membership of this gateway forward."""
        _, expiry = self._expiry()
        expire_ms = int(expiry * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, connection_id in slots:
                pipe.zadd(keys.user_connections(user_id), {connection_id: expiry}, xx=True)
                pipe.pexpireat(keys.user_connections(user_id), expire_ms)
            for room, user_id, connection_id in memberships:
                pipe.zadd(keys.room_user_connections(room, user_id), {connection_id: expiry},
                          xx=True)
                pipe.pexpireat(keys.room_user_connections(room, user_id), expire_ms)
                pipe.zadd(keys.room_presence(room), {str(user_id): expiry}, xx=True)
                pipe.pexpireat(keys.room_presence(room), expire_ms)
            await pipe.execute()
