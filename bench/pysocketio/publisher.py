"""Publisher for the python-socketio peer: a write-only AsyncRedisManager emitting to
rooms, one Redis PUBLISH per event, each awaited so a room's events keep their order.

Follows the load generator's publisher contract: `{"event": "start"}` when publishing
begins, `{"event": "done", "events": N, "published": {room: count}, ...}` at the end;
every event carries `room`, a per-room `seq` from 0 and `ts` (CLOCK_MONOTONIC, µs).
`--rate 0` publishes as fast as one awaited PUBLISH at a time allows.

    python pysocketio/publisher.py --redis-port 6390 --rooms 1 --duration 10 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import socketio


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def publish(args: argparse.Namespace) -> None:
    manager = socketio.AsyncRedisManager(f"redis://127.0.0.1:{args.redis_port}/0",
                                         write_only=True)
    rooms = [f"room-{i}" for i in range(args.rooms)]
    counts = [0] * args.rooms
    padding = "x" * args.pad
    manager._redis_connect()  # connected before the clock starts
    await manager.redis.ping()
    cpu0, start = cpu_seconds(), time.monotonic()
    print(json.dumps({"event": "start"}), flush=True)
    sent = 0
    while sent < args.max_events:
        now = time.monotonic()
        if now >= start + args.duration:
            break
        due = args.max_events if args.rate <= 0 else int((now - start) * args.rate)
        if sent >= due:
            await asyncio.sleep(0.001)  # pacing a fixed rate
            continue
        index = sent % args.rooms
        await manager.emit(args.event, {"room": rooms[index], "seq": counts[index],
                                        "ts": time.monotonic_ns() // 1000, "data": padding},
                           room=rooms[index], namespace="/")
        counts[index] += 1
        sent += 1
    elapsed = time.monotonic() - start
    print(json.dumps({"event": "done", "events": sent, "elapsed_s": elapsed,
                      "rate": sent / elapsed, "cpu_pct": 100 * (cpu_seconds() - cpu0) / elapsed,
                      "published": dict(zip(rooms, counts, strict=True))}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--max-events", type=int, default=2_000_000)
    parser.add_argument("--pad", type=int, default=64)
    parser.add_argument("--event", default="task.updated")
    asyncio.run(publish(parser.parse_args()))


if __name__ == "__main__":
    main()
