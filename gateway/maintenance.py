"""A gateway's timers, each on its own so a slow one never delays another.

- heartbeat (every WS_HEARTBEAT_INTERVAL): a control entry through every shard,
  which /readyz waits to see come back (a gateway that silently stopped reading
  is taken out of rotation); the lease on the instance id; the expiry of this
  gateway's connection slots and room presence. Nothing else runs on it: a long
  sweep or a slow janitor cannot make a healthy gateway look dead.
- housekeeping (same interval): `user_left` for users of crashed gateways, the
  consumer lag per shard, the job queue's depth and live workers, and every
  JANITOR_EVERY rounds the janitor for consumer groups of gateways gone for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.connection import State
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.rooms import Rooms
from shared.cancellation import raise_if_cancelled
from shared.codec import CONTROL_HEARTBEAT, encode_control
from shared.engines import Engine
from shared.engines.roles import LogReader, Presence

log = logging.getLogger("roomcast.maintenance")

JANITOR_EVERY = 20  # housekeeping rounds


class LostInstanceId(Exception):
    """Another live gateway holds this instance id."""


class Maintenance:
    def __init__(self, engine: Engine, instance_id: str, hub: Hub, presence: Presence,
                 rooms: Rooms, reader: LogReader, metrics: Metrics,
                 on_lost_instance: Callable[[], Awaitable[None]]) -> None:
        self._engine = engine
        self._settings = engine.settings
        self._instance_id = instance_id
        self._hub = hub
        self._presence = presence
        self._rooms = rooms
        self._reader = reader
        self._metrics = metrics
        self._on_lost_instance = on_lost_instance
        self._tasks: list[asyncio.Task[None]] = []
        self.beats = 0
        self.rounds = 0

    def start(self) -> None:
        interval = self._settings.WS_HEARTBEAT_INTERVAL
        self._tasks = [
            asyncio.create_task(self._every(interval, self.heartbeat), name="heartbeat"),
            asyncio.create_task(self._every(interval, self.housekeeping), name="housekeeping"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except LostInstanceId:
                await self._on_lost_instance()
                return
            except Exception as exc:  # Redis down: readiness shows it; keep going
                log.warning(f"{step.__name__} failed", extra={"error": str(exc)[:200]})
            raise_if_cancelled()  # a cancel the step's Redis call swallowed
            await asyncio.sleep(interval)  # the timer's period

    async def heartbeat(self) -> None:
        interval = self._settings.WS_HEARTBEAT_INTERVAL
        if not await self._engine.hold_instance(self._instance_id, interval * 3):
            raise LostInstanceId(self._instance_id)
        payload = encode_control(CONTROL_HEARTBEAT, {"gw": self._instance_id, "n": self.beats})
        log_ = self._engine.event_log
        await asyncio.gather(*(log_.append_control(shard, payload, CONTROL_HEARTBEAT)
                               for shard in range(self._settings.STREAM_SHARDS)))
        self.beats += 1
        conns = [c for c in self._hub.connections if c.state is State.OPEN]
        await self._presence.refresh(
            ((c.principal.user_id, c.id) for c in conns),
            ((room, c.principal.user_id, c.id) for c in conns for room in c.rooms
             if not room.startswith("user:")))

    async def housekeeping(self) -> None:
        self.rounds += 1
        for departure in await self._presence.sweep():
            await self._rooms.user_gone(departure)
            await self._presence.announced(departure)
        for shard, lag in (await self._reader.lag_seconds()).items():
            self._metrics.consumer_lag.labels(shard=str(shard)).set(lag)
        stats = await self._engine.jobs.stats()
        self._metrics.queue_depth.set(stats.depth)
        self._metrics.workers.set(stats.workers)
        self._metrics.dead_letters.set(stats.dead_letters)
        if stats.depth and not stats.workers:
            # acked sends and queued events wait for a worker: say so every round
            log.warning("job queue stalled: no live worker", extra={"jobs": stats.depth})
        if self.rounds % JANITOR_EVERY == 1:
            for group in await self._engine.event_log.janitor(
                    self._instance_id, self._settings.GATEWAY_JANITOR_IDLE):
                log.info("janitor removed idle group", extra={"group": group})
