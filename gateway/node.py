"""The gateway node: wires the engine's roles to this instance's hub, rooms,
fan-out and timers; starts them in order and drains them on shutdown.

The node knows roles (shared/engines/roles.py), never an engine's classes: the
same gateway runs on Redis or in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gateway.auth import TokenVerifier
from gateway.commands import CommandLimits, Commands
from gateway.connection import Connection
from gateway.fanout import FanOut
from gateway.hub import Hub
from gateway.maintenance import Maintenance
from gateway.metrics import Metrics
from gateway.rooms import Rooms
from shared.engines import Engine
from shared.settings import Settings

log = logging.getLogger("roomcast.node")

READY_HEARTBEATS = 3  # own heartbeat must come back through every shard within this
# A closed connection's presence and slot are released in the engine on a best-effort
# basis (both expire there on their own). While Redis is unreachable, the client's
# retries and its pool's wait would hold each connection's task for many seconds; on
# SIGTERM uvicorn cancels whatever still runs after its graceful timeout (5 s,
# roomcast/cli/serve.py), logging a traceback per connection. Bounded under that.
RELEASE_BOUND_SECONDS = 3.0


class InstanceIdTaken(Exception):
    """A live gateway already runs with this instance id."""


class Node:
    def __init__(self, settings: Settings, instance_id: str, engine: Engine) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.engine = engine
        self.metrics = Metrics()
        self.hub = Hub()
        self.verifier = TokenVerifier(settings)
        self.presence = engine.presence(instance_id)
        self.rooms = Rooms(self.hub, engine.history, self.presence, engine.access,
                           engine.event_log, self.metrics, settings.PRESENCE_EVENTS_MAX_USERS)
        self.fanout = FanOut(self.hub, self.metrics, instance_id, settings.STREAM_SHARDS,
                             self.rooms.recheck_user)
        self.reader = engine.event_log.reader(instance_id, self.fanout)
        self.commands = Commands(self.rooms, engine.access, engine.jobs, self.verifier,
                                 CommandLimits(settings.WS_MAX_ROOMS_PER_CONNECTION,
                                               settings.EVENT_MAX_BYTES),
                                 self.metrics.auth_failures)
        self.maintenance = Maintenance(engine, instance_id, self.hub, self.presence, self.rooms,
                                       self.reader, self.metrics, self._lost_instance_id)
        self.accepting = False
        self._reading: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.check_config()
        interval = self.settings.WS_HEARTBEAT_INTERVAL
        if not await self.engine.hold_instance(self.instance_id, interval * 3):
            raise InstanceIdTaken(
                f"gateway instance id {self.instance_id!r} is in use by a live gateway; "
                "give this one another GATEWAY_INSTANCE_ID (or --instance-id)")
        await self.presence.free_previous_run()
        await self.reader.start()
        self._reading = asyncio.create_task(self.reader.run(), name="log-reader")
        self.maintenance.start()
        self.accepting = True
        log.info("gateway started", extra={"instance": self.instance_id,
                                           "engine": self.engine.name})

    async def stop(self, *, forget: bool = True) -> None:
        """Drain: refuse new connections, close every client with 1012, clean up."""
        self.accepting = False
        for conn in list(self.hub.connections):
            conn.close(1012, "Server restart")
        await self.maintenance.stop()
        await self.rooms.stop()
        await self.reader.close(forget=forget)
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        await self.engine.release_instance(self.instance_id)
        await self.engine.aclose()

    async def _lost_instance_id(self) -> None:
        log.error("another live gateway took this instance id; refusing connections",
                  extra={"instance": self.instance_id})
        self.accepting = False

    # -- readiness ------------------------------------------------------------------------
    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        window = self.settings.WS_HEARTBEAT_INTERVAL * READY_HEARTBEATS
        grace = now - self._started_at < window
        seen = self.fanout.heartbeat_seen
        stale = [s for s in range(self.settings.STREAM_SHARDS)
                 if now - seen.get(s, -1e9) > window]
        reading = self.reader.healthy
        reachable = await self.engine.reachable()
        ok = reachable and reading and self.accepting and (not stale or grace)
        detail: dict[str, Any] = {"engine": self.engine.name, "reachable": reachable,
                                  "consumer": reading, "accepting": self.accepting,
                                  "deaf_shards": [] if grace else stale}
        if reachable:
            stats = await self.engine.jobs.stats()
            detail.update(queue_depth=stats.depth, workers=stats.workers)
        return ok, detail

    # -- connections ----------------------------------------------------------------------
    async def claim_slot(self, conn: Connection) -> bool:
        """One of the user's connection slots, counted over all gateways."""
        limit = self.settings.WS_MAX_CONNECTIONS_PER_USER
        if not await self.presence.claim_slot(conn.principal.user_id, conn.id, limit):
            return False
        self.hub.add_connection(conn)
        self.metrics.connections.inc()
        return True

    async def disconnect(self, conn: Connection) -> None:
        self.metrics.connections.dec()
        try:
            async with asyncio.timeout(RELEASE_BOUND_SECONDS):
                await self.rooms.leave_all(conn)
                with contextlib.suppress(Exception):  # best effort: the slot expires anyway
                    await self.presence.release_slot(conn.principal.user_id, conn.id)
        except TimeoutError:
            log.warning("release after disconnect timed out; presence and slot expire "
                        "on their own", extra={"connection_id": conn.id})
