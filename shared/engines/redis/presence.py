"""Presence and connection slots over all gateways, in Redis.

Every entry carries an expiry score that its gateway refreshes each heartbeat,
so the entries of a gateway that crashed free themselves within
`EXPIRY_HEARTBEATS` intervals without anyone cleaning up after it. `sweep` then
finds the users such a crash took out of a room (one gateway sweeps per
interval, whoever takes the lock), so one `user_left` goes out for each.

Every script answers the same when a call is retried after a lost reply, so the
client may retry them (see client.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from shared import keys
from shared.engines.redis.batcher import Command, CommandBatcher
from shared.engines.redis.scripts import source
from shared.engines.roles import Departure, RoomMember

EXPIRY_HEARTBEATS = 2.5  # < 3 intervals: a crashed gateway's slots are gone in time
SCAN_BATCH = 200
REFRESH_CHUNK = 500  # connections (or memberships) per refresh call
DEPARTURES_KEPT_MS = 86_400_000  # an unannounced departure outlives any Redis blip


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    def __init__(self, client: aioredis.Redis, instance_id: str,
                 heartbeat_interval: float, *, batcher: CommandBatcher | None = None) -> None:
        self._redis = client
        # None on a Redis Cluster: redis-py refuses scripts inside a Cluster pipeline,
        # so there each script is a call of its own
        self._batcher = batcher
        self._cluster = batcher is None
        self._instance_id = instance_id
        self._ttl = heartbeat_interval * EXPIRY_HEARTBEATS
        self._interval_ms = max(1, int(heartbeat_interval * 1000))
        self._claim = client.register_script(source("claim_slot"))
        self._enter = client.register_script(source("presence_enter"))
        self._leave = client.register_script(source("presence_leave"))
        self._sweep = client.register_script(source("presence_sweep"))
        self._announced = client.register_script(source("presence_announced"))
        self._refresh = client.register_script(source("presence_refresh"))
        if batcher is not None:
            for script in (self._claim, self._enter, self._leave, self._refresh):
                batcher.script(script.sha, script.script)

    def _expiry(self) -> tuple[float, float]:
        now = time.time()
        return now, now + self._ttl

    # -- connection slots -------------------------------------------------------------
    async def claim_slot(self, user_id: int, connection_id: str, limit: int) -> bool:
        """One round trip: the claim and this instance's record of it go together (the
        record is undone in the rare case the user is at the limit)."""
        now, expiry = self._expiry()
        held = keys.instance_slots(self._instance_id)
        slot = f"{user_id}|{connection_id}"
        claim_keys, claim_args = [keys.user_connections(user_id)], [now, expiry, connection_id,
                                                                    limit]
        if self._cluster:
            claimed = await self._claim(keys=claim_keys, args=claim_args)
            await self._redis.sadd(held, slot)
            await self._redis.pexpireat(held, int(expiry * 1000))
        else:
            claimed = (await self._script_pipeline(
                self._claim, claim_keys, claim_args,
                [("SADD", held, slot), ("PEXPIREAT", held, int(expiry * 1000))]))[0]
        if not claimed:
            await self._redis.srem(held, slot)
        return bool(claimed)

    async def release_slot(self, user_id: int, connection_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(keys.user_connections(user_id), connection_id)
            pipe.srem(keys.instance_slots(self._instance_id), f"{user_id}|{connection_id}")
            await pipe.execute()

    async def free_previous_run(self) -> None:
        held = keys.instance_slots(self._instance_id)
        for raw in await self._redis.smembers(held):
            user_id, _, connection_id = _text(raw).partition("|")
            await self._redis.zrem(keys.user_connections(int(user_id)), connection_id)
        await self._redis.delete(held)

    # -- presence -------------------------------------------------------------------------
    def _room_keys(self, room: str, user_id: int) -> list[str]:
        return [keys.room_presence(room), keys.room_user_connections(room, user_id),
                keys.room_presence_names(room), keys.room_departures(room)]

    async def enter(self, room: str, user_id: int, username: str, connection_id: str) -> bool:
        now, expiry = self._expiry()
        enter_keys = self._room_keys(room, user_id)
        enter_args = [now, expiry, connection_id, user_id, username]
        if self._cluster:
            first = await self._enter(keys=enter_keys, args=enter_args)
            await self._redis.sadd(keys.presence_rooms(), room)
            return bool(first)
        replies = await self._script_pipeline(  # and the room, for the sweeper
            self._enter, enter_keys, enter_args, [("SADD", keys.presence_rooms(), room)])
        return bool(replies[0])

    async def _script_pipeline(self, script: Any, script_keys: list[str], args: list[Any],
                               more: list[Command]) -> list[Any]:
        """A script then `more` commands, in one round trip shared with the other calls
        of this event-loop turn (see batcher.py). Not on a Redis Cluster."""
        assert self._batcher is not None
        return await self._batcher.execute(
            [("EVALSHA", script.sha, len(script_keys), *script_keys, *args), *more])

    async def leave(self, room: str, user_id: int, connection_id: str) -> bool:
        now, _ = self._expiry()
        leave_keys = self._room_keys(room, user_id)
        leave_args = [now, 0, connection_id, user_id, ""]
        if self._cluster:
            return bool(await self._leave(keys=leave_keys, args=leave_args))
        return bool((await self._script_pipeline(self._leave, leave_keys, leave_args, []))[0])

    async def size(self, room: str) -> int:
        return int(await self._redis.zcount(keys.room_presence(room), time.time(), "+inf"))

    async def members(self, room: str) -> list[RoomMember]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(keys.room_presence(room), time.time(), "+inf")
            pipe.hgetall(keys.room_presence_names(room))
            user_ids, names = await pipe.execute()
        named = {_text(k): _text(v) for k, v in names.items()}
        return sorted((RoomMember(int(uid), named.get(_text(uid)) or f"user-{int(uid)}")
                       for uid in user_ids), key=lambda m: m.user_id)

    # -- heartbeat ------------------------------------------------------------------------
    async def refresh(self, slots: Iterable[tuple[int, str]],
                      memberships: Iterable[tuple[str, int, str]]) -> None:
        """In chunks of REFRESH_CHUNK connections or memberships, one script call each:
        with 10,000 connections one pipeline of every command stalled the gateway's
        event loop for about half a second (command packing), delaying every event
        that arrived meanwhile; between chunks the fan-out runs."""
        _, expiry = self._expiry()
        expire_ms = int(expiry * 1000)
        if self._cluster:  # keys of many slots: no script can take them together
            await self._refresh_pipelined(list(slots), list(memberships), expiry, expire_ms)
            return
        held = keys.instance_slots(self._instance_id)
        slot_list, member_list = list(slots), list(memberships)
        for start in range(0, max(len(slot_list), 1), REFRESH_CHUNK):  # once at least
            chunk = slot_list[start:start + REFRESH_CHUNK]
            call_keys = [held] + [keys.user_connections(uid) for uid, _ in chunk]
            args: list[Any] = [expiry, expire_ms, len(chunk)] + [cid for _, cid in chunk]
            await self._script_pipeline(self._refresh, call_keys, args, [])
        for start in range(0, len(member_list), REFRESH_CHUNK):
            part = member_list[start:start + REFRESH_CHUNK]
            call_keys, args = [held], [expiry, expire_ms, 0]
            rooms = set()
            for room, user_id, connection_id in part:
                rooms.add(room)
                call_keys += [keys.room_user_connections(room, user_id),
                              keys.room_presence(room), keys.room_presence_names(room)]
                args += [user_id, connection_id]
            # re-register: heals a room the sweeper dropped while we entered it
            await self._script_pipeline(self._refresh, call_keys, args,
                                        [("SADD", keys.presence_rooms(), *rooms)])

    async def _refresh_pipelined(self, slots: list[tuple[int, str]],
                                 memberships: list[tuple[str, int, str]], expiry: float,
                                 expire_ms: int) -> None:
        rooms: set[str] = set()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pexpireat(keys.instance_slots(self._instance_id), expire_ms)
            for user_id, connection_id in slots:
                pipe.zadd(keys.user_connections(user_id), {connection_id: expiry}, xx=True)
                pipe.pexpireat(keys.user_connections(user_id), expire_ms)
            for room, user_id, connection_id in memberships:
                rooms.add(room)
                pipe.zadd(keys.room_user_connections(room, user_id), {connection_id: expiry},
                          xx=True)
                pipe.pexpireat(keys.room_user_connections(room, user_id), expire_ms)
                pipe.zadd(keys.room_presence(room), {str(user_id): expiry}, xx=True)
                pipe.pexpireat(keys.room_presence(room), expire_ms)
                pipe.pexpireat(keys.room_presence_names(room), expire_ms)
            if rooms:
                pipe.sadd(keys.presence_rooms(), *rooms)
            await pipe.execute()

    async def sweep(self) -> list[Departure]:
        taken = await self._redis.set(keys.presence_sweeper(), self._instance_id, nx=True,
                                      px=self._interval_ms)
        if not taken:
            return []
        gone: list[Departure] = []
        async for raw_room in self._redis.sscan_iter(keys.presence_rooms(), count=SCAN_BATCH):
            room = _text(raw_room)
            presence, departures = keys.room_presence(room), keys.room_departures(room)
            pairs = await self._sweep(keys=[presence, keys.room_presence_names(room), departures],
                                      args=[time.time(), DEPARTURES_KEPT_MS])
            for i in range(0, len(pairs), 2):
                user_id = int(pairs[i])
                token, _, name = _text(pairs[i + 1]).partition("|")
                gone.append(Departure(room, RoomMember(user_id, name or f"user-{user_id}"),
                                      token))
            # a room stays on the sweeper's list while a departure waits to be announced
            if not await self._redis.exists(presence, departures):
                await self._redis.srem(keys.presence_rooms(), room)
        return gone

    async def announced(self, departure: Departure) -> None:
        member = departure.member
        await self._announced(keys=[keys.room_departures(departure.room)],
                              args=[member.user_id, f"{departure.token}|{member.username}"])
