"""Socket.IO fan-out load generator for the peer comparison (one process: asyncio on
uvloop, picows clients, orjson).

Opens N Socket.IO clients (Engine.IO v4 / Socket.IO v5 over a raw WebSocket, room in
the handshake query) split round-robin over the gateway URLs; client i joins room
`room-{(i // block) % rooms}`. Then it starts the publisher command and measures,
until the publisher is done and deliveries stop (bounded by --max-time):

  * delivered messages/s summed over clients, while the publisher runs;
  * end-to-end latency: receipt time minus the event's `ts` (the publisher's
    CLOCK_MONOTONIC in µs; one machine, one clock);
  * lost / duplicated / out-of-order sequence numbers per client, against the
    publisher's final per-room counts;
  * CPU (% of one core) of itself, the publisher and every --watch NAME=PID, the
    machine's busy share, and peak RSS, from /proc.

Publisher contract: print `{"event": "start"}` when publishing begins and
`{"event": "done", "events": N, "published": {room: count}, ...}` at the end; every
event carries `room`, `seq` (per room, from 0) and `ts`.

The result JSON keeps the field names `roomcast bench` reads (roomcast/bench/report.py:
peer_figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1048576.0
LATENCY_CAP = 30_000_000  # samples kept (µs each, 8 bytes)
latencies = array("q")


# -- /proc -------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all threads), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_MB
    except OSError:
        return None


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


Sample = tuple[float, dict[str, float | None], tuple[int, int]]


class CpuSampler:
    """CPU seconds of named pids at named marks; percentages of one core between marks."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.marks: dict[str, Sample] = {}
        self.peak_rss_mb: dict[str, float] = {}

    def sample(self) -> Sample:
        for name, pid in self.pids.items():
            rss = rss_mb(pid)
            if rss is not None and rss > self.peak_rss_mb.get(name, 0.0):
                self.peak_rss_mb[name] = rss
        return (time.monotonic(), {n: cpu_seconds(p) for n, p in self.pids.items()},
                machine_jiffies())

    def mark(self, name: str) -> None:
        self.marks[name] = self.sample()

    def cpu_pct(self, start: str, end: str) -> dict[str, float | None]:
        (t0, c0, m0), (t1, c1, m1) = self.marks[start], self.marks[end]
        elapsed = max(t1 - t0, 1e-9)
        out: dict[str, float | None] = {}
        for name in self.pids:
            before, after = c0.get(name), c1.get(name)
            if before is not None and after is not None:
                out[name] = round(100.0 * (after - before) / elapsed, 1)
        busy, total = m1[0] - m0[0], m1[1] - m0[1]
        out["machine_busy_pct_of_2_cores"] = round(100.0 * busy / total, 1) if total else None
        return out


# -- one client ---------------------------------------------------------------------------
class SocketIOClient(WSListener):  # type: ignore[misc]  # picows has no type information
    """A Socket.IO client on the default namespace that records each event's seq and ts."""

    def __init__(self, room: str, run: Run) -> None:
        super().__init__()
        self.room = room
        self.run = run
        self.transport: WSTransport | None = None
        self.ready = False
        self.received = 0
        self.unique = 0
        self.dup = 0
        self.out_of_order = 0  # late arrivals that filled a gap
        self.next_seq = 0
        self.gaps: list[list[int]] = []  # [start, end) not (yet) received

    @staticmethod
    def url(base: str, room: str) -> str:
        return f"{base}/socket.io/?EIO=4&transport=websocket&room={room}"

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.run.on_closed()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        payload = frame.get_payload_as_bytes()
        kind = payload[:1]
        if kind == b"4":  # an Engine.IO message carrying a Socket.IO packet
            packet = payload[1:2]
            if packet == b"2":  # EVENT: 42["name", {...}]
                data = orjson.loads(payload[2:])[1]
                self.record(data["seq"], data["ts"])
            elif packet == b"0":  # CONNECT acknowledged
                self.set_ready()
            elif packet == b"4":  # CONNECT_ERROR
                self.run.errors.append(payload.decode(errors="replace")[:200])
                transport.disconnect()
        elif kind == b"2":  # Engine.IO ping: answer pong
            transport.send(WSMsgType.TEXT, b"3")
        elif kind == b"0":  # Engine.IO open: connect to the default namespace
            transport.send(WSMsgType.TEXT, b"40")
        elif kind == b"1":  # Engine.IO close
            transport.disconnect()

    def set_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.run.on_ready()

    def record(self, seq: int, ts: int) -> None:
        if len(latencies) < LATENCY_CAP:
            latencies.append(time.monotonic_ns() // 1000 - ts)
        self.received += 1
        if seq >= self.next_seq:
            if seq > self.next_seq:
                self.gaps.append([self.next_seq, seq])
            self.next_seq = seq + 1
            self.unique += 1
            return
        for gap in self.gaps:
            if gap[0] <= seq < gap[1]:
                self.out_of_order += 1
                self.unique += 1
                if seq == gap[0]:
                    gap[0] += 1
                elif seq == gap[1] - 1:
                    gap[1] -= 1
                else:
                    self.gaps.append([seq + 1, gap[1]])
                    gap[1] = seq
                return
        self.dup += 1

    def lost_and_beyond(self, published: int) -> tuple[int, int]:
        """(seqs below `published` never received, seqs at or past it received)."""
        lost = sum(min(g[1], published) - g[0] for g in self.gaps if g[0] < published)
        lost += max(0, published - self.next_seq)
        beyond = max(0, self.next_seq - published)
        beyond -= sum(g[1] - max(g[0], published) for g in self.gaps if g[1] > published)
        return lost, beyond


# -- the run ------------------------------------------------------------------------------
@dataclass
class Publisher:
    """What the publisher reported, and the delivery counts at its start and end."""

    start: float | None = None
    end: float | None = None
    received_at_start: int = 0
    received_at_end: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients: list[SocketIOClient] = []
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.errors: list[str] = []
        self.unexpected_closes = 0
        self.closing = False

    def on_ready(self) -> None:
        self.ready += 1
        if self.ready >= self.args.clients:
            self.all_ready.set()

    def on_closed(self) -> None:
        if not self.closing:
            self.unexpected_closes += 1

    def received(self) -> int:
        return sum(c.received for c in self.clients)

    def expected(self, report: dict[str, Any]) -> int | None:
        published = report.get("published")
        if not isinstance(published, dict):
            return None
        return sum(int(published.get(c.room, 0)) for c in self.clients)

    async def connect_one(self, index: int, limit: asyncio.Semaphore) -> None:
        args = self.args
        base = args.urls[index % len(args.urls)]
        room = f"room-{(index // args.clients_per_room_block) % args.rooms}"
        async with limit:
            try:
                _, client = await ws_connect(lambda: SocketIOClient(room, self),
                                             SocketIOClient.url(base, room),
                                             websocket_handshake_timeout=10,
                                             max_frame_size=16 * 1024 * 1024)
                self.clients.append(client)
            except Exception as exc:  # one failed client is counted, the run goes on
                self.errors.append(f"client {index}: {type(exc).__name__}: {exc}"[:200])

    async def connect_all(self) -> float:
        args = self.args
        started = time.monotonic()
        limit = asyncio.Semaphore(args.connect_concurrency)
        tasks = [asyncio.create_task(self.connect_one(i, limit)) for i in range(args.clients)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), args.connect_timeout)
            remaining = args.connect_timeout - (time.monotonic() - started)
            await asyncio.wait_for(self.all_ready.wait(), max(1.0, remaining))
        except TimeoutError:
            self.errors.append(f"connect phase timed out: {self.ready}/{args.clients} ready")
        return time.monotonic() - started

    async def follow_publisher(self, process: asyncio.subprocess.Process, sampler: CpuSampler,
                               pub: Publisher) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "start":
                sampler.mark("pub_start")
                pub.start, pub.received_at_start = time.monotonic(), self.received()
                pub.started.set()
            elif message.get("event") == "done":
                sampler.mark("pub_end")
                pub.end, pub.received_at_end = time.monotonic(), self.received()
                pub.report = message
                pub.done.set()

    async def main(self) -> dict[str, Any]:
        args = self.args
        result: dict[str, Any] = {"proto": "socketio", "clients": args.clients,
                                  "rooms": args.rooms, "urls": args.urls, "label": args.label}
        sampler = CpuSampler({**args.watch, "loadgen": os.getpid()})
        result["connect_s"] = round(await self.connect_all(), 2)
        result["connected"], result["ready"] = len(self.clients), self.ready
        await asyncio.sleep(args.settle)  # let the servers finish their joins

        started = time.monotonic()
        sampler.mark("begin")
        process = await asyncio.create_subprocess_exec(*shlex.split(args.publish_cmd),
                                                       stdout=asyncio.subprocess.PIPE)
        sampler.pids["publisher"] = process.pid
        pub = Publisher()
        reader = asyncio.create_task(self.follow_publisher(process, sampler, pub))
        timeline, last_change = await self.sample_until_drained(process, sampler, pub, started)
        sampler.mark("end")
        if process.returncode is None:
            process.kill()
        await process.wait()
        reader.cancel()

        self.closing = True
        result.update(self.results(pub, sampler, timeline, last_change, started))
        for client in self.clients:
            if client.transport is not None:
                client.transport.disconnect()
        await asyncio.sleep(0.2)  # let the close frames go out
        result["errors"], result["n_errors"] = self.errors[:20], len(self.errors)
        return result

    async def sample_until_drained(self, process: asyncio.subprocess.Process,
                                   sampler: CpuSampler, pub: Publisher,
                                   started: float) -> tuple[list[dict[str, Any]], float]:
        """One timeline row per interval, until everything expected arrived, deliveries
        stopped for --idle after the publisher's end, or --max-time passed."""
        args = self.args
        timeline: list[dict[str, Any]] = []
        last_total, last_change = self.received(), time.monotonic()
        previous = sampler.sample()
        while True:
            await asyncio.sleep(args.sample_interval)
            now = time.monotonic()
            current = sampler.sample()
            total = self.received()
            elapsed = current[0] - previous[0]
            cpu = {n: (round(100 * (c - p) / elapsed, 1)
                       if (c := current[1].get(n)) is not None
                       and (p := previous[1].get(n)) is not None else None)
                   for n in sampler.pids}
            timeline.append({"t": round(now - started, 2),
                             "rate": round((total - last_total) / elapsed), "cpu": cpu})
            previous = current
            if total != last_total:
                last_change = now
            last_total = total
            if now >= started + args.max_time:
                self.errors.append("max-time reached")
                break
            if not pub.done.is_set():
                if process.returncode is not None:
                    await asyncio.sleep(0.2)  # its last line may still be in the pipe
                    if not pub.done.is_set():
                        self.errors.append(f"publisher exited rc={process.returncode} "
                                           "without a report")
                        break
                continue
            expected = self.expected(pub.report)
            if expected is not None and sum(c.unique for c in self.clients) >= expected:
                break
            if now - last_change >= args.idle:
                break
        return timeline, last_change

    def results(self, pub: Publisher, sampler: CpuSampler, timeline: list[dict[str, Any]],
                last_change: float, started: float) -> dict[str, Any]:
        out: dict[str, Any] = {"publisher": {k: v for k, v in pub.report.items()
                                             if k not in ("published", "event")}}
        total = self.received()
        if pub.start is not None and pub.end is not None:
            window = pub.end - pub.start
            during = pub.received_at_end - pub.received_at_start
            out["pub_window_s"] = round(window, 3)
            out["delivered_during_pub"] = during
            out["delivered_per_s_during_pub"] = round(during / window) if window > 0 else None
            if last_change - pub.end > 1.5:  # a backlog still arriving after the publisher
                out["delivered_after_pub"] = total - pub.received_at_end
                out["delivered_per_s_after_pub"] = round(
                    (total - pub.received_at_end) / (last_change - pub.end))
        out["delivered_total"] = total
        out["active_s"] = round(sampler.marks["end"][0] - (pub.start or started), 3)
        out["peak_rate_per_s"] = max((row["rate"] for row in timeline), default=0)
        expected = self.expected(pub.report)
        out["expected"] = expected
        out["unique"] = sum(c.unique for c in self.clients)
        out["dup"] = sum(c.dup for c in self.clients)
        out["out_of_order"] = sum(c.out_of_order for c in self.clients)
        if expected is not None:
            published = pub.report["published"]
            counts = [c.lost_and_beyond(int(published.get(c.room, 0))) for c in self.clients]
            lost, beyond = sum(c[0] for c in counts), sum(c[1] for c in counts)
            out["lost"], out["unexpected_seq"] = lost, beyond
            if beyond:
                self.errors.append(f"{beyond} messages with seq beyond the published count")
            out["lost_pct"] = round(100.0 * lost / expected, 3) if expected else 0.0
        out["latency_ms"] = latency_summary()
        out["unexpected_closes"] = self.unexpected_closes
        if "pub_start" in sampler.marks and "pub_end" in sampler.marks:
            out["cpu_pct_pub_window"] = sampler.cpu_pct("pub_start", "pub_end")
        if "pub_start" in sampler.marks:
            out["cpu_pct_until_drained"] = sampler.cpu_pct("pub_start", "end")
        out["peak_rss_mb"] = {n: round(v, 1) for n, v in sampler.peak_rss_mb.items()}
        out["timeline"] = timeline
        return out


def latency_summary() -> dict[str, float]:
    count = len(latencies)
    if not count:
        return {"n": 0}
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return round(ordered[min(count - 1, int(q * count))] / 1000.0, 3)

    return {"n": count, "p50": quantile(0.50), "p90": quantile(0.90), "p99": quantile(0.99),
            "p999": quantile(0.999), "max": round(ordered[-1] / 1000.0, 3),
            "min": round(ordered[0] / 1000.0, 3)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--urls", required=True, help="comma list of gateway base URLs (ws://...)")
    p.add_argument("--publish-cmd", required=True, help="the publisher (see the contract)")
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--rooms", type=int, default=1)
    p.add_argument("--clients-per-room-block", type=int, default=1,
                   help="client i joins room (i // block) %% rooms")
    p.add_argument("--max-time", type=float, default=30.0,
                   help="bound on publishing + drain, from the publisher's start (s)")
    p.add_argument("--idle", type=float, default=2.0,
                   help="the drain ends after this long without a message (s)")
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--connect-concurrency", type=int, default=100)
    p.add_argument("--sample-interval", type=float, default=1.0)
    p.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                   help="a process whose CPU and memory to report (repeatable)")
    p.add_argument("--label", default="")
    p.add_argument("--out", required=True, help="write the JSON result here")
    args = p.parse_args(argv)
    args.urls = [u.rstrip("/") for u in args.urls.split(",") if u]
    args.watch = {name: int(pid) for name, pid in (w.split("=", 1) for w in args.watch)}
    return args


def summary_line(result: dict[str, Any]) -> str:
    latency = result.get("latency_ms", {})
    publisher = result.get("publisher", {})
    return (f"[{result['label']}] clients={result['connected']}/{result['clients']} "
            f"published={publisher.get('events')} at {publisher.get('rate', 0):.0f}/s "
            f"delivered/s={result.get('delivered_per_s_during_pub')} "
            f"lost={result.get('lost')} dup={result.get('dup')} p50={latency.get('p50')} ms "
            f"p99={latency.get('p99')} ms errors={result['n_errors']}")


def main() -> None:
    import uvloop

    args = parse_args()
    result = uvloop.run(Run(args).main())
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(summary_line(result), flush=True)


if __name__ == "__main__":
    main()
