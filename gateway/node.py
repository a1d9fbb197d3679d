"""The gateway node: owns the hub, the shard consumer, cluster bookkeeping and
the background loops (heartbeat, janitor), and shuts them down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from redis.exceptions import RedisError

from gateway.access import Access, build_access
from gateway.auth import Principal, TokenVerifier
from gateway.cluster_state import ClusterState
from gateway.connection import Connection, State
from gateway.consumer import ShardConsumer
from gateway.history import RoomHistory
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.presence_sweeper import PresenceSweeper
from shared import keys
from shared.codec import (
    CONTROL_HEARTBEAT,
    CONTROL_REVOKE,
    ShardEntry,
    direct_frame,
    encode_control,
    encode_event,
    parse_stream_id,
)
from shared.redis_client import async_client
from shared.rooms import Room, RoomKind, shard_of
from shared.settings import Settings
from shared.stream_writer import AsyncStreamWriter
from workers.api import Backend
from workers.broker import build_broker

log = logging.getLogger("roomcast.node")

READY_HEARTBEATS = 3  # own heartbeat must come back through every shard within this
JANITOR_EVERY_HEARTBEATS = 20


class Node:
    def __init__(self, settings: Settings, instance_id: str) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.metrics = Metrics()
        self.hub = Hub()
        self.redis: aioredis.Redis = async_client(settings)
        self.verifier = TokenVerifier(settings)
        self.access: Access = build_access(settings, self.redis)
        self.history = RoomHistory(self.redis, settings)
        self.cluster = ClusterState(self.redis, settings.WS_HEARTBEAT_INTERVAL)
        self.writer = AsyncStreamWriter(self.redis, settings)
        self.broker: RedisBroker = build_broker(settings)
        self.backend = Backend(self.broker)
        self.shards = list(range(settings.STREAM_SHARDS))
        # One reader for all shards in one XREADGROUP call; on a Redis Cluster the
        # shards live in different slots, so each gets a reader of its own.
        groups = [[s] for s in self.shards] if settings.REDIS_CLUSTER else [self.shards]
        self.consumers = [ShardConsumer(self.redis, instance_id, shards, self._on_entry,
                                        self._on_gap, self.hub.flush) for shards in groups]
        self.sweeper = PresenceSweeper(self.redis, instance_id, settings.WS_HEARTBEAT_INTERVAL,
                                       self._publish_left)
        self.accepting = False
        self._heartbeat_seen: dict[int, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._started_at = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self._free_previous_slots()
        for consumer in self.consumers:
            await consumer.ensure_groups()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(c.run(), name=f"consumer-{i}")
                       for i, c in enumerate(self.consumers)]
        self._tasks.append(loop.create_task(self._heartbeat_loop(), name="heartbeat"))
        self.accepting = True
        log.info("gateway started", extra={"instance": self.instance_id})

    async def stop(self, *, destroy_groups: bool = True) -> None:
        """Drain: refuse new connections, close every client with 1012, clean up."""
        self.accepting = False
        for conn in list(self.hub.connections):
            conn.close(1012, "Server restart")
        for consumer in self.consumers:
            consumer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if destroy_groups:
            with contextlib.suppress(RedisError, OSError):
                for consumer in self.consumers:
                    await consumer.destroy_groups()
        await self.redis.aclose()
        self.broker.close()

    async def _free_previous_slots(self) -> None:
        """Slots still held by this instance's previous run (it crashed): free them now
        rather than making those users wait for the slots to expire."""
        held = keys.instance_slots(self.instance_id)
        for raw in await self.redis.smembers(held):
            user_id, _, connection_id = raw.decode().partition("|")
            await self.cluster.release_slot(int(user_id), connection_id)
        await self.redis.delete(held)

    # -- readiness ------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        window = self.settings.WS_HEARTBEAT_INTERVAL * READY_HEARTBEATS
        grace = now - self._started_at < window
        stale = [s for s in self.shards if now - self._heartbeat_seen.get(s, -1e9) > window]
        reading = all(c.healthy for c in self.consumers)
        ok = reading and self.accepting and (not stale or grace)
        return ok, {"consumer": reading, "accepting": self.accepting,
                    "deaf_shards": [] if grace else stale}

    # -- connections ----------------------------------------------------------------------
    async def claim_slot(self, conn: Connection) -> bool:
        """One of the user's connection slots, counted over all gateways."""
        limit = self.settings.WS_MAX_CONNECTIONS_PER_USER
        if not await self.cluster.claim_slot(conn.principal.user_id, conn.id, limit):
            return False
        await self.redis.sadd(keys.instance_slots(self.instance_id),
                              f"{conn.principal.user_id}|{conn.id}")
        self.hub.add_connection(conn)
        self.metrics.connections.inc()
        return True

    async def join_own_room(self, conn: Connection) -> None:
        own = str(Room.user(conn.principal.user_id))
        conn.hold(own)
        self.hub.add(conn, own)
        point = await self.history.join_point(own, None)
        conn.release(own, parse_stream_id(point.last_id) or (0, 0), None)

    async def disconnect(self, conn: Connection) -> None:
        self.metrics.connections.dec()
        rooms = list(conn.rooms)
        self.hub.remove_connection(conn)
        for room in rooms:
            await self._presence_leave(conn, room)
        with contextlib.suppress(RedisError, OSError):
            await self.cluster.release_slot(conn.principal.user_id, conn.id)
            await self.redis.srem(keys.instance_slots(self.instance_id),
                                  f"{conn.principal.user_id}|{conn.id}")

    # -- rooms ----------------------------------------------------------------------------
    async def join(self, conn: Connection, room: Room, since: str | None,
                   ref: str | int | None = None) -> dict[str, Any]:
        """Join (or re-join) a room; returns the `room_joined` data. The caller has
        checked the format; access and the room limit are checked here."""
        name = str(room)
        rejoin = name in conn.rooms
        if rejoin and since is not None:
            # A resume of a room we already serve (the own user room is joined at
            # connect): the client's `since` replaces the connect-time baseline.
            conn.forget(name)
        conn.hold(name)
        self.hub.add(conn, name)
        try:
            point = await self.history.join_point(name, since)
        except BaseException:
            conn.forget(name)
            if not rejoin:
                self.hub.remove(conn, name)
            raise
        data: dict[str, Any] = {"last_id": point.last_id}
        if point.recovered is not None:
            data["recovered"] = point.recovered
            data["replayed"] = point.replayed
        conn.send(direct_frame("room_joined", data, room=name, ref=ref))
        # the replay ends at last_id; live events after it follow the replay
        conn.release(name, parse_stream_id(point.last_id) or (0, 0), point.replay)
        if not rejoin and room.kind is not RoomKind.USER:
            await self._presence_enter(conn, name)
        self.metrics.rooms.set(len(self.hub.rooms()))
        return data

    async def leave(self, conn: Connection, room: str) -> None:
        was_member = room in conn.rooms
        self.hub.remove(conn, room)
        conn.forget(room)
        if was_member:
            await self._presence_leave(conn, room)
        self.metrics.rooms.set(len(self.hub.rooms()))

    async def _presence_enter(self, conn: Connection, room: str) -> None:
        p = conn.principal
        first = await self.cluster.enter_room(room, p.user_id, p.username, conn.id)
        await self.sweeper.register(room)
        if first:
            await self._publish_presence("user_joined", room, p)

    async def _presence_leave(self, conn: Connection, room: str) -> None:
        if Room.parse(room).kind is RoomKind.USER:
            return
        p = conn.principal
        try:
            if await self.cluster.leave_room(room, p.user_id, conn.id):
                await self._publish_presence("user_left", room, p)
        except (RedisError, OSError):
            log.warning("presence leave failed", extra={"room": room})

    async def _publish_presence(self, kind: str, room: str, p: Principal) -> None:
        await self._publish_user_event(kind, room, p.user_id, p.username)

    async def _publish_left(self, room: str, user_id: int, username: str) -> None:
        await self._publish_user_event("user_left", room, user_id, username)

    async def _publish_user_event(self, kind: str, room: str, user_id: int,
                                  username: str) -> None:
        encoded = encode_event(kind, room, {"user_id": user_id, "username": username},
                               username)
        await self.writer.append_event(room, encoded, key=None)

    # -- stream entries -------------------------------------------------------------------
    def _on_entry(self, shard: int, entry: ShardEntry) -> None:
        if entry.is_control:
            self._on_control(shard, entry)
            return
        self.metrics.events_in.inc()
        id_key = parse_stream_id(entry.id) or (0, 0)
        members = self.hub.members(entry.room)
        if not members:
            return
        delivered = self.hub.deliver(entry.room, id_key, entry.wire_frame())
        self.metrics.frames_out.inc(delivered)
        self.metrics.fanout_latency.observe(max(0.0, time.time() - id_key[0] / 1000))

    def _on_control(self, shard: int, entry: ShardEntry) -> None:
        payload = entry.control()
        kind = payload.get("type")
        if kind == CONTROL_HEARTBEAT and payload.get("gw") == self.instance_id:
            self._heartbeat_seen[shard] = time.monotonic()
        elif kind == CONTROL_REVOKE:
            user_id = int(payload.get("user_id", 0))
            conns = self.hub.user_connections(user_id)
            if conns:
                task = asyncio.get_running_loop().create_task(self._recheck_access(conns))
                self._tasks.append(task)
                task.add_done_callback(self._tasks_done)

    def _tasks_done(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _recheck_access(self, conns: list[Connection]) -> None:
        for conn in conns:
            for name in sorted(conn.rooms):
                room = Room.parse(name)
                if room.kind is RoomKind.USER or conn.state is not State.OPEN:
                    continue
                if not await self.access.allowed(conn.principal.user_id, room):
                    await self.leave(conn, name)
                    conn.send(direct_frame("room_left", {"reason": "access_revoked"}, room=name))
                    log.info("access revoked", extra={"user_id": conn.principal.user_id,
                                                      "room": name, "connection_id": conn.id})

    async def _on_gap(self, shard: int) -> None:
        """Members of rooms on this shard may have missed events: tell them to refetch."""
        for room in self.hub.rooms():
            if shard_of(room, self.settings.STREAM_SHARDS) != shard:
                continue
            frame = direct_frame("resync_required", None, room=room)
            for conn in list(self.hub.members(room)):
                conn.send(frame)
                self.metrics.resyncs.inc()

    # -- heartbeat ------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        beat = 0
        interval = self.settings.WS_HEARTBEAT_INTERVAL
        while True:
            try:
                await self._heartbeat(beat)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: readiness shows it; keep beating
                log.warning("heartbeat failed", extra={"error": str(exc)[:200]})
            beat += 1
            await asyncio.sleep(interval)

    async def _heartbeat(self, beat: int) -> None:
        payload = encode_control(CONTROL_HEARTBEAT, {"gw": self.instance_id, "n": beat})
        for shard in self.shards:
            await self.writer.append_control(shard, payload, CONTROL_HEARTBEAT)
        conns = [c for c in self.hub.connections if c.state is State.OPEN]
        await self.cluster.refresh(
            ((c.principal.user_id, c.id) for c in conns),
            ((room, c.principal.user_id, c.id) for c in conns for room in c.rooms
             if not room.startswith("user:")))
        rooms = [room for room in self.hub.rooms() if not room.startswith("user:")]
        if rooms:  # re-register: heals a room the sweeper dropped while we entered it
            await self.redis.sadd(keys.presence_rooms(), *rooms)
        await self.sweeper.maybe_sweep()
        await self._measure_lag()
        if beat % JANITOR_EVERY_HEARTBEATS == 0:
            await self._janitor()

    async def _measure_lag(self) -> None:
        for shard in self.shards:
            info = await self.redis.xinfo_stream(keys.shard_stream(shard))
            newest = parse_stream_id(_text(info.get("last-generated-id")))
            done = parse_stream_id(self._last_processed(shard))
            lag = 0.0
            if newest and done and newest > done:
                lag = (newest[0] - done[0]) / 1000
            self.metrics.consumer_lag.labels(shard=str(shard)).set(lag)

    def _last_processed(self, shard: int) -> str:
        for consumer in self.consumers:
            if shard in consumer.last_id:
                return consumer.last_id[shard]
        return "0-0"

    async def _abandoned(self, stream: str, name: str, group: dict[str, Any]) -> bool:
        limit_ms = self.settings.GATEWAY_JANITOR_IDLE * 1000
        consumers = await self.redis.xinfo_consumers(stream, name)
        if consumers:
            return min(int(c.get("idle", 0)) for c in consumers) > limit_ms
        # No consumer: a gateway that died before its first read, or one starting
        # right now. Judge by the time of the last entry the group was given; "0-0"
        # (made on an empty stream) says nothing, so such a group is left alone.
        delivered = parse_stream_id(_text(group.get("last-delivered-id")))
        if delivered is None or delivered[0] == 0:
            return False
        return time.time() * 1000 - delivered[0] > limit_ms

    async def _janitor(self) -> None:
        """Destroy groups of instances that have been gone for a day."""
        mine = keys.gateway_group(self.instance_id)
        for shard in self.shards:
            stream = keys.shard_stream(shard)
            for group in await self.redis.xinfo_groups(stream):
                name = _text(group.get("name"))
                if name == mine or not name.startswith("gw:"):
                    continue
                if await self._abandoned(stream, name, group):
                    await self.redis.xgroup_destroy(stream, name)
                    log.info("janitor removed idle group", extra={"group": name,
                                                                  "shard": shard})


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value) if value is not None else ""
