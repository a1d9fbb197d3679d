"""Prometheus metrics of one gateway, in a registry of its own (several apps
can live in one test process without clashing)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("roomcast_connections", "Open WebSocket connections", registry=r)
        self.rooms = Gauge("roomcast_rooms", "Rooms with members on this gateway", registry=r)
        self.events_in = Counter("roomcast_events_in", "Room events read from shard streams",
                                 registry=r)
        self.frames_out = Counter("roomcast_frames_out", "Event frames queued to clients",
                                  registry=r)
        self.fanout_latency = Histogram(
            "roomcast_fanout_latency_seconds", "From stream append to queued for clients",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r)
        self.consumer_lag = Gauge("roomcast_consumer_lag_seconds",
                                  "Age of the newest entry behind the last one processed",
                                  ["shard"], registry=r)
        self.slow_consumer_closes = Counter("roomcast_slow_consumer_closes",
                                            "Connections closed with 1013", registry=r)
        self.auth_failures = Counter("roomcast_auth_failures", "Rejected tokens", ["reason"],
                                     registry=r)
        self.resyncs = Counter("roomcast_resync_required", "resync_required frames sent",
                               registry=r)
        self.queue_depth = Gauge("roomcast_queue_depth", "Jobs waiting for a worker (all shards)",
                                 registry=r)
        self.workers = Gauge("roomcast_workers", "Live workers (by their heartbeats)",
                             registry=r)
        self.dead_letters = Gauge("roomcast_dead_letters",
                                  "Jobs or events set aside as never appendable, in the "
                                  "dead-letter streams; each is a gap in its producer's order",
                                  registry=r)
