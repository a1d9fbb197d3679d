"""Publishes `user_left` for users whose gateway crashed.

A clean disconnect publishes `user_left` itself. After a crash nobody does, so
each heartbeat one gateway (whoever takes the lock) walks the rooms with
presence and removes users whose every connection has expired; the script
returns each such user once, however many gateways sweep.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources

import redis.asyncio as aioredis

from shared import keys

SCAN_BATCH = 200
OnLeft = Callable[[str, int, str], Awaitable[None]]


class PresenceSweeper:
    def __init__(self, client: aioredis.Redis, instance_id: str, interval: float,
                 on_left: OnLeft) -> None:
        self._redis = client
        self._instance_id = instance_id
        self._interval_ms = max(1, int(interval * 1000))
        self._on_left = on_left
        source = resources.files("shared").joinpath("scripts/presence_sweep.lua").read_text()
        self._sweep = client.register_script(source)

    async def register(self, room: str) -> None:
        await self._redis.sadd(keys.presence_rooms(), room)

    async def maybe_sweep(self) -> int:
        """Sweep if no other gateway does this interval; returns users removed."""
        taken = await self._redis.set(keys.presence_sweeper(), self._instance_id, nx=True,
                                      px=self._interval_ms)
        if not taken:
            return 0
        removed = 0
        async for raw_room in self._redis.sscan_iter(keys.presence_rooms(), count=SCAN_BATCH):
            room = raw_room.decode() if isinstance(raw_room, bytes) else str(raw_room)
            presence = keys.room_presence(room)
            gone = await self._sweep(keys=[presence], args=[time.time()])
            for raw_user in gone:
                user_id = int(raw_user)
                name = await self._redis.hget(keys.usernames(), str(user_id))
                await self._on_left(room, user_id,
                                    name.decode() if name else f"user-{user_id}")
                removed += 1
            if not await self._redis.exists(presence):
                await self._redis.srem(keys.presence_rooms(), room)
        return removed
