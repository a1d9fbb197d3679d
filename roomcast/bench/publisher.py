"""The bench's publisher, a subprocess: enqueues events through the real worker
path (`workers.api.Backend`), so they are checked, queued, appended by the worker
and fanned out by the gateways like a backend's: from `--producers` threads, one
event per call or `--batch` per `publish_many`.

Own process so that its CPU (pydantic validation, Redis round trips) is
neither charged to nor stolen from the load generator's clients.

With --from-job each producer thread publishes as code inside a Dramatiq job
does (`workers.api.JobPublisher`, what `api.job_publisher()` returns there): the
events are checked the same way, then appended to the room's stream at once,
with no hop through the job queue and the worker.

Driven over stdin/stdout, one command / one JSON object per line:
  (start)   -> {"event": "ready"}
  warmup    -> one warm-up event per room (seq -1)  -> {"event": "warmed"}
  go        -> {"event": "start", ...}, publishes for --duration s,
               {"event": "done", "events": N, "published": {room: n}, ...}
EOF on stdin (the bench went away) ends it.

Event: `project.updated` to `project:<id>` with data
{"project_id", "changes": {}, "seq" (per room, from 0), "t_enqueue" (time.time())}.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

EVENT_TYPE = "project.updated"


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def room_name(room_id: int) -> str:
    return f"project:{room_id}"


def event_data(room_id: int, seq: int, pad: str) -> dict[str, Any]:
    data: dict[str, Any] = {"project_id": room_id, "changes": {}, "seq": seq,
                            "t_enqueue": time.time()}
    if pad:
        data["pad"] = pad
    return data


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Producer(threading.Thread):
    """One producer thread: its own rooms, in order, alone or in batches."""

    def __init__(self, backend: Any, rooms: list[int], rate: float, t0: float, end: float,
                 pad: str, batch: int) -> None:
        super().__init__(daemon=True)
        self.backend, self.rooms, self.rate = backend, rooms, rate
        self.t0, self.end, self.pad, self.batch = t0, end, pad, max(1, batch)
        self.counts = [0] * len(rooms)
        self.names = [room_name(r) for r in rooms]
        self.sent = 0
        self.queue_full = 0  # QueueFull raised (then the same events were sent again)
        self.slowest_call_s = 0.0  # the longest enqueue: a wait for room in the queue
        self.error: str | None = None

    def _events(self) -> list[dict[str, Any]]:
        out = []
        for _ in range(self.batch):
            i = self.sent % len(self.rooms)
            out.append({"type": EVENT_TYPE, "room": self.names[i], "sender": "bench",
                        "data": event_data(self.rooms[i], self.counts[i], self.pad)})
            self.counts[i] += 1
            self.sent += 1
        return out

    def _send(self, events: list[dict[str, Any]]) -> None:
        from shared.engines.roles import QueueFull

        while True:
            started = time.monotonic()
            try:
                if len(events) == 1:
                    self.backend.publish(events[0])
                else:
                    self.backend.publish_many(events)
                return
            except QueueFull:
                self.queue_full += 1  # nothing lost: the same events go again
            finally:
                self.slowest_call_s = max(self.slowest_call_s, time.monotonic() - started)

    def run(self) -> None:
        try:
            while True:
                now = time.time()
                if now >= self.end:
                    return
                if self.rate > 0:
                    due = self.t0 + self.sent / self.rate
                    if due > now:
                        time.sleep(min(due - now, self.end - now))  # the fixed rate's pace
                        continue
                self._send(self._events())
        except Exception as exc:  # reported by the bench
            self.error = f"{type(exc).__name__}: {exc}"[:300]


def publish(publisher_for: Callable[[int], Any], rooms: list[int], rate: float,
            duration: float, pad: str, producers: int = 1, batch: int = 1) -> dict[str, Any]:
    """Rooms split over `producers` threads (a room belongs to one: its events keep one
    producer's order); each sends one event per call, or `batch` per publish_many; a
    fixed `rate` events/s over all, or as fast as possible (0). Producer k publishes
    through `publisher_for(k)`."""
    cpu0 = _cpu_s()
    t0 = time.time()
    _say(event="start", t=t0)
    end = t0 + duration
    threads = [Producer(publisher_for(k), rooms[k::producers], rate / producers, t0, end, pad,
                        batch)
               for k in range(producers) if rooms[k::producers]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    t1 = time.time()
    n = sum(th.sent for th in threads)
    published = {name: c for th in threads for name, c in zip(th.names, th.counts, strict=True)
                 if c}
    return {"event": "done", "events": n, "t": t1, "window_s": round(t1 - t0, 3),
            "rate": round(n / max(t1 - t0, 1e-9), 1), "cpu_s": round(_cpu_s() - cpu0, 3),
            "producers": len(threads), "batch": batch,
            "pushback": {"queue_full_raised": sum(th.queue_full for th in threads),
                         "slowest_enqueue_ms": round(max(th.slowest_call_s
                                                         for th in threads) * 1000, 1)},
            "errors": [th.error for th in threads if th.error],
            "published": published}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast.bench.publisher")
    parser.add_argument("--room-base", type=int, required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument("--producers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--from-job", action="store_true")
    args = parser.parse_args(argv)

    from shared.engines import build_engine
    from shared.settings import load_settings
    from workers.api import Backend, JobPublisher

    settings = load_settings()
    engine = build_engine(settings)
    backend = Backend(settings, engine=engine)
    run_id = uuid.uuid4().hex[:8]

    def publisher_for(producer: int) -> Any:
        if not args.from_job:
            return backend  # shared: concurrent enqueues go out together (group commit)
        # one per thread, as each job has its own: keys job:<message id>:<n>
        return JobPublisher(settings, engine.writer, f"bench-{run_id}-{producer}")

    rooms = [args.room_base + i for i in range(args.rooms)]
    pad = "x" * args.payload_bytes
    try:
        _say(event="ready")
        for line in sys.stdin:
            command = line.strip()
            if command == "warmup":
                warm = publisher_for(-1)  # one for all rooms: its keys are numbered
                for room in rooms:
                    data = {"project_id": room, "changes": {}, "seq": -1,
                            "t_enqueue": time.time(), "warmup": True}
                    warm.event(EVENT_TYPE, room_name(room), data, sender="bench")
                _say(event="warmed")
            elif command == "go":
                _say(**publish(publisher_for, rooms, args.rate, args.duration, pad,
                               args.producers, args.batch))
                return 0
        return 1  # stdin closed before "go"
    finally:
        backend.close()


if __name__ == "__main__":
    raise SystemExit(main())
