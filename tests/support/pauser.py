"""A chaos-run member in a process of its own, so the test can SIGSTOP it: a frozen
process reads nothing, and the gateway sees a client whose socket stays full for a
few seconds (a phone on a slow network, a busy tab), with TCP backpressure.

    python -m tests.support.pauser OUT.json TOKEN ROOM[,ROOM] URL [URL ...]

It joins the rooms through the Python SDK (failover over the URLs, resume by id),
records the `seq` of every `project.updated` it receives, per room and in arrival
order, and writes {"arrivals": {room: [seq, ...]}, "not_recovered": n, "resyncs": n}
to OUT.json every DUMP_EVERY seconds (atomically: the test reads it while it runs)
and once more on SIGTERM, then exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from roomcast.client import NotRecovered, ResyncRequired, RoomcastClient, RoomEvent

EVENT_TYPE = "project.updated"
DUMP_EVERY = 0.5


async def run(out: Path, token: str, rooms: list[str], urls: list[str]) -> None:
    arrivals: dict[str, list[int]] = {room: [] for room in rooms}
    counts = {"not_recovered": 0, "resyncs": 0}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    client = RoomcastClient(urls, token, connect_kwargs={"proxy": None})

    def on_event(event: RoomEvent) -> None:
        if event.type == EVENT_TYPE and event.room in arrivals:
            arrivals[event.room].append(int(event.data["seq"]))

    def on_not_recovered(event: NotRecovered) -> None:
        counts["not_recovered"] += 1

    def on_resync(event: ResyncRequired) -> None:
        counts["resyncs"] += 1

    client.on(RoomEvent, on_event)
    client.on(NotRecovered, on_not_recovered)
    client.on(ResyncRequired, on_resync)
    joins = [client.join(room) for room in rooms]
    client.connect()
    await client.wait_connected()
    await asyncio.gather(*joins)
    print("joined", flush=True)  # the test waits for this line

    def dump() -> None:
        partial = out.with_suffix(".part")
        partial.write_text(json.dumps({"arrivals": arrivals, **counts}))
        partial.replace(out)

    while not stop.is_set():
        dump()
        try:
            await asyncio.wait_for(stop.wait(), DUMP_EVERY)
        except TimeoutError:
            pass
    await client.close()
    dump()


def main() -> None:
    out, token, rooms, *urls = sys.argv[1:]
    asyncio.run(run(Path(out), token, rooms.split(","), urls))


if __name__ == "__main__":
    main()
