"""The bench's publisher, a subprocess: enqueues events through the real worker
path (`workers.api.Backend.event`), so they are validated, queued in Dramatiq,
appended by the worker and fanned out by the gateways like a backend's.

Own process so that its CPU (pydantic validation, Redis round trips) is
neither charged to nor stolen from the load generator's clients.

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
import time
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


def publish(backend: Any, rooms: list[int], rate: float, duration: float,
            pad: str) -> dict[str, Any]:
    """Round-robin over rooms; fixed `rate` events/s (catching up if late) or max (0)."""
    counts = [0] * len(rooms)
    names = [room_name(r) for r in rooms]
    n = 0
    cpu0 = _cpu_s()
    t0 = time.time()
    _say(event="start", t=t0)
    end = t0 + duration
    while True:
        now = time.time()
        if now >= end:
            break
        if rate > 0:
            due = t0 + n / rate
            if due > now:
                time.sleep(min(due - now, end - now))
                continue
        i = n % len(rooms)
        backend.event(EVENT_TYPE, names[i], event_data(rooms[i], counts[i], pad),
                      sender="bench")
        counts[i] += 1
        n += 1
    t1 = time.time()
    return {"event": "done", "events": n, "t": t1, "window_s": round(t1 - t0, 3),
            "rate": round(n / max(t1 - t0, 1e-9), 1), "cpu_s": round(_cpu_s() - cpu0, 3),
            "published": {names[i]: c for i, c in enumerate(counts) if c}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roomcast.bench.publisher")
    parser.add_argument("--room-base", type=int, required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--payload-bytes", type=int, default=0)
    args = parser.parse_args(argv)

    from shared.settings import load_settings
    from workers.api import Backend

    backend = Backend(load_settings())
    rooms = [args.room_base + i for i in range(args.rooms)]
    pad = "x" * args.payload_bytes
    try:
        _say(event="ready")
        for line in sys.stdin:
            command = line.strip()
            if command == "warmup":
                for room in rooms:
                    data = {"project_id": room, "changes": {}, "seq": -1,
                            "t_enqueue": time.time(), "warmup": True}
                    backend.event(EVENT_TYPE, room_name(room), data, sender="bench")
                _say(event="warmed")
            elif command == "go":
                _say(**publish(backend, rooms, args.rate, args.duration, pad))
                return 0
        return 1  # stdin closed before "go"
    finally:
        backend.close()


if __name__ == "__main__":
    raise SystemExit(main())
