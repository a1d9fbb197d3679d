"""`roomcast bench --hop-probe`: what the worker hop costs, against what a hop costs.

SPEC's path puts a worker between a backend and the streams: the backend queues a
job, the worker checks it and appends the event. Socket.IO's publisher appends at
once. At low rates that hop shows in end-to-end latency, and on VMs whose idle
vCPUs halt, much of its cost is waking processes, not roomcast's code. This probe
separates the two. It sends one event at a time at a steady pace over four paths,
in turn, and one reader process times each event from the send to its arrival in
Redis:

- `direct`: a bare XADD to a stream (what Socket.IO's publisher does);
- `relay`: a bare XADD to an inbox, which a bare relay process (XREADGROUP, XADD,
  XACK, no checks) moves on: the floor of any hop through a second process;
- `job`: roomcast's publish from inside a job (`workers.api.JobPublisher`): the
  event is checked and appended at once, as `--from-job` does;
- `worker`: roomcast's publish from a backend (`workers.api.Backend`): checked,
  queued, taken by the running `roomcast worker`, checked again and appended.

Events of the four paths alternate, so all of them see the same machine. The
reader reads the relay's stream and the room's shard stream in one blocking read,
takes its clock as the read returns, and ends when every path's events are in.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import time
import uuid
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

import redis

PATHS = ("direct", "relay", "job", "worker")
ROOM = "project:1"
INBOX, RELAYED, GROUP = "hop-probe:inbox", "hop-probe:out", "hop-probe"
WARMUP_EVENTS = 8  # per path, before timing: first connections, scripts loaded
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ProbeConfig:
    redis_url: str
    jwt_secret: str
    events: int = 1000  # in all, shared by the four paths
    gap_s: float = 0.01


def _relay(redis_url: str) -> None:
    """The bare hop: take each entry of the inbox and append it to the relayed stream."""
    client = redis.Redis.from_url(redis_url)
    while True:
        for _, entries in client.xreadgroup(GROUP, "relay", {INBOX: ">"}, count=100,
                                            block=1000) or []:
            for entry_id, fields in entries:
                client.xadd(RELAYED, {**fields, "path": b"relay"})
                client.xack(INBOX, GROUP, entry_id)


def _tail(client: redis.Redis, stream: str) -> str:
    """The stream's last id now (what `$` would mean at this moment), or 0-0."""
    newest = client.xrevrange(stream, count=1)
    return newest[0][0].decode() if newest else "0-0"


def _read(redis_url: str, shard_stream: str, expected: dict[str, int], ready: Any,
          out: Queue[dict[str, list[float]]]) -> None:
    """Latency of every event, by path, until each path's count has arrived (or
    nothing came for READY_TIMEOUT_S: what is missing then shows as a short count)."""
    client = redis.Redis.from_url(redis_url)
    # resolved before saying ready: a `$` read would miss what is sent meanwhile
    last: dict[str, str] = {stream: _tail(client, stream) for stream in (RELAYED, shard_stream)}
    latency: dict[str, list[float]] = {path: [] for path in PATHS}
    ready.set()
    quiet_since = time.monotonic()
    while any(len(latency[path]) < count for path, count in expected.items()):
        if time.monotonic() - quiet_since > READY_TIMEOUT_S:
            break
        reply = client.xread(last, block=1000)
        now = time.time()
        for raw_stream, entries in reply or []:
            quiet_since = time.monotonic()
            for entry_id, fields in entries:
                last[raw_stream.decode()] = entry_id
                if b"path" in fields:  # the relay's stream: direct and relayed
                    if b"warm" in fields:
                        continue  # a warm-up event
                    path, sent = fields[b"path"].decode(), float(fields[b"t"])
                else:  # the shard stream: roomcast's events, sent time in their data
                    data = json.loads(fields[b"e"]).get("data") or {}
                    if "probe_path" not in data:
                        continue  # a warm-up event
                    path, sent = data["probe_path"], data["t_sent"]
                latency[path].append((now - sent) * 1000)
    out.put(latency)


def measure_hop(config: ProbeConfig) -> dict[str, dict[str, float]]:
    """p50 and p90 in ms, and the count, of each path; needs a running worker."""
    from shared import keys
    from shared.engines import build_engine
    from shared.rooms import shard_of
    from shared.settings import Settings
    from workers.api import Backend, JobPublisher

    settings = Settings(REDIS_URL=config.redis_url, JWT_SECRET=config.jwt_secret)
    engine = build_engine(settings)
    backend = Backend(settings, engine=engine)
    job = JobPublisher(settings, engine.writer, f"hop-probe-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(config.redis_url)
    client.delete(INBOX, RELAYED)  # a reused Redis (--redis-url) keeps the last run's
    client.xgroup_create(INBOX, GROUP, id="0", mkstream=True)
    context = multiprocessing.get_context("spawn")  # no inherited threads or sockets
    ready, results = context.Event(), context.Queue()
    shard_stream = keys.shard_stream(shard_of(ROOM, settings.STREAM_SHARDS))
    expected = {path: len(range(n, config.events, len(PATHS))) for n, path in enumerate(PATHS)}
    reader = context.Process(target=_read,
                             args=(config.redis_url, shard_stream, expected, ready, results))
    relay = context.Process(target=_relay, args=(config.redis_url,))
    reader.start()
    relay.start()
    try:
        if not ready.wait(READY_TIMEOUT_S):
            raise TimeoutError("the probe's reader did not start")
        data = {"project_id": 1, "changes": {}}

        def send(path: str, *, timed: bool = True) -> None:
            sent = time.time()
            mark = {} if timed else {"warm": b"1"}
            if path == "direct":
                client.xadd(RELAYED, {"t": repr(sent), "path": b"direct", **mark})
            elif path == "relay":
                client.xadd(INBOX, {"t": repr(sent), **mark})
            else:
                extra = {"probe_path": path, "t_sent": sent} if timed else {}
                publisher = job if path == "job" else backend
                publisher.event("project.updated", ROOM, {**data, **extra}, sender="probe")

        for _ in range(WARMUP_EVENTS):
            for path in PATHS:
                send(path, timed=False)
        time.sleep(0.5)  # pace: the warm-up is not timed
        for n in range(config.events):
            send(PATHS[n % len(PATHS)])
            time.sleep(config.gap_s)  # the pace under test: one event per gap
        latency = results.get(timeout=READY_TIMEOUT_S * 2)
    finally:
        relay.kill()  # it serves until stopped
        reader.join(5)
        for process in (reader, relay):
            if process.is_alive():
                process.kill()
            process.join(5)
        client.close()
        backend.close()
    return {path: _quantiles(values) for path, values in latency.items()}


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    values.sort()
    return {"n": len(values), "p50_ms": round(statistics.median(values), 3),
            "p90_ms": round(values[int(len(values) * 0.9)], 3)}
