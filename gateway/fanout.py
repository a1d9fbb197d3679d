"""What a gateway does with each log entry: room events to the members on this
instance (one frame per event, the same bytes to every member), control entries
to whoever acts on them, gaps to the members who may have missed events.

This is the gateway's `LogSink`: the reader calls it in log order, and calls
`on_flush` after each run of entries, before anything else may run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.hub import Hub
from gateway.metrics import Metrics
from shared.codec import (
    CONTROL_HEARTBEAT,
    CONTROL_REVOKE,
    decode_control,
    direct_frame,
    event_frame,
)
from shared.engines.roles import LogEntry
from shared.rooms import shard_of


class FanOut:
    def __init__(self, hub: Hub, metrics: Metrics, instance_id: str, shards: int,
                 on_revoked: Callable[[int], None]) -> None:
        self._hub = hub
        self._metrics = metrics
        self._instance_id = instance_id
        self._shards = shards
        self._on_revoked = on_revoked
        # monotonic time this gateway's own heartbeat last came back, per shard
        self.heartbeat_seen: dict[int, float] = {}
        # counted here per entry, added to the Prometheus counters once per read (their
        # lock per increment showed in the fan-out profile)
        self._events_in = 0
        self._frames_out = 0

    def on_entry(self, shard: int, entry: LogEntry) -> None:
        if entry.is_control:
            self._on_control(shard, entry)
            return
        self._events_in += 1
        members = self._hub.members(entry.room)
        if not members:
            return
        id_key = entry.key
        self._frames_out += self._hub.deliver(entry.room, id_key,
                                              event_frame(entry.encoded, entry.id))
        self._metrics.fanout_latency.observe(max(0.0, time.time() - id_key[0] / 1000))

    def on_flush(self) -> None:
        self._hub.flush()
        if self._events_in:
            self._metrics.events_in.inc(self._events_in)
            self._events_in = 0
        if self._frames_out:
            self._metrics.frames_out.inc(self._frames_out)
            self._frames_out = 0

    async def on_gap(self, shard: int) -> None:
        """Members of rooms on this shard may have missed events: tell them to refetch."""
        for room in self._hub.rooms():
            if shard_of(room, self._shards) != shard:
                continue
            frame = direct_frame("resync_required", None, room=room)
            for conn in list(self._hub.members(room)):
                conn.send(frame)
                self._metrics.resyncs.inc()

    def _on_control(self, shard: int, entry: LogEntry) -> None:
        payload = decode_control(entry.encoded)
        kind = payload.get("type")
        if kind == CONTROL_HEARTBEAT and payload.get("gw") == self._instance_id:
            self.heartbeat_seen[shard] = time.monotonic()
        elif kind == CONTROL_REVOKE:
            self._on_revoked(int(payload.get("user_id", 0)))
