"""One bench run against a running stack: connect, warm up, publish, drain, report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from roomcast.bench.clients import ClientState, Fleet
from roomcast.bench.procmon import ProcMonitor
from roomcast.bench.publisher import room_name
from roomcast.bench.stack import BenchStack
from roomcast.cli.children import die_with_parent

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INTERVAL_S = 0.5
WARMUP_RESEND_S = 5.0
DRAIN_POLL_S = 0.1


@dataclass
class ScenarioConfig:
    clients: int = 500
    layout: str = "one-room"  # or "small-rooms"
    room_size: int = 5
    rate: float = 100.0  # events/s over all rooms; 0 = as fast as possible
    duration: float = 10.0
    drain: float = 20.0  # bound on the wait for stragglers after publishing
    idle: float = 3.0  # the drain also ends after this long without a delivery
    connect_batch: int = 100
    connect_steady: bool = False  # a sliding window of connect_batch instead of waves
    connect_timeout: float = 60.0
    settle: float = 1.0
    warmup_timeout: float = 30.0
    resume: bool = False
    payload_bytes: int = 0
    producers: int = 1  # publisher threads (each owns a share of the rooms)
    batch: int = 1  # events per enqueue call (publish_many)
    from_job: bool = False  # append as code inside a Dramatiq job does: no worker hop
    grant: bool = False  # grant room access through the worker (gateways in ACL mode)

    @property
    def rooms(self) -> int:
        return 1 if self.layout == "one-room" else math.ceil(self.clients / self.room_size)

    def room_index(self, client: int) -> int:
        return 0 if self.layout == "one-room" else client // self.room_size


def _tokens(stack: BenchStack, user_ids: list[int], own_stack: bool) -> list[str]:
    from gateway.auth import issue_token
    from shared.settings import Settings, load_settings

    if own_stack:  # our gateways check the secret only
        settings = Settings(JWT_SECRET=stack.jwt_secret, JWT_AUDIENCE=None, JWT_ISSUER=None,
                            JWT_PUBLIC_KEY=None)
    else:  # someone else's gateways: audience/issuer as configured in our environment
        settings = load_settings(JWT_SECRET=stack.jwt_secret, JWT_PUBLIC_KEY=None)
    ttl = 6 * 3600
    return [issue_token(settings, uid, f"bench{uid}", ttl) for uid in user_ids]


class Publisher:
    """The `bench.publisher` subprocess and its line protocol."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, stack: BenchStack, cfg: ScenarioConfig, room_base: int) -> Publisher:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "roomcast.bench.publisher", "--room-base", str(room_base),
            "--rooms", str(cfg.rooms), "--rate", str(cfg.rate), "--duration", str(cfg.duration),
            "--payload-bytes", str(cfg.payload_bytes), "--producers", str(cfg.producers),
            "--batch", str(cfg.batch), *(["--from-job"] if cfg.from_job else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=stack.child_env(), cwd=PROJECT_ROOT, preexec_fn=die_with_parent)
        return cls(proc)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"publisher exited (rc={self.proc.returncode}) "
                                       f"before {event!r}")
                with contextlib.suppress(ValueError):
                    message: dict[str, Any] = json.loads(line)
                    if message.get("event") == event:
                        return message

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


class LoopLag:
    """How late the load generator's event loop wakes a timer: when it is busy with
    frames, the latency it measures includes its own queueing."""

    def __init__(self) -> None:
        self.max_s = 0.0
        self.samples: list[float] = []

    def reset(self) -> None:
        self.max_s, self.samples = 0.0, []

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        return {"p50": round(ordered[len(ordered) // 2] * 1000, 1),
                "max": round(self.max_s * 1000, 1)}


def _lag_probe(lag: LoopLag, stop: asyncio.Event) -> None:
    """A timer that measures how late it fires, then re-arms itself."""
    loop = asyncio.get_running_loop()
    due = time.monotonic() + SAMPLE_INTERVAL_S

    def fire() -> None:
        nonlocal due
        if stop.is_set():
            return
        late = max(0.0, time.monotonic() - due)
        lag.samples.append(late)
        lag.max_s = max(lag.max_s, late)
        due = time.monotonic() + SAMPLE_INTERVAL_S
        loop.call_later(SAMPLE_INTERVAL_S, fire)

    loop.call_later(SAMPLE_INTERVAL_S, fire)


async def _warm_up(pub: Publisher, fleet: Fleet, timeout: float) -> bool:
    """One event per room until every connected client has seen one: the worker,
    the gateways' consumers and every join are live before anything is measured."""
    deadline = time.monotonic() + timeout
    clients = fleet.connected
    while time.monotonic() < deadline:
        pub.send("warmup")
        await pub.expect("warmed", max(1.0, deadline - time.monotonic()))
        resend_at = time.monotonic() + WARMUP_RESEND_S
        while time.monotonic() < min(resend_at, deadline):
            if all(s.warmups or s.connection is None for s in clients):  # closed: skip
                return True
            await asyncio.sleep(0.05)
    missing = sum(1 for s in clients if not s.warmups)
    fleet.error(f"warm-up: {missing} clients saw no warm-up event in {timeout:.0f} s")
    return False


async def run_scenario(stack: BenchStack, cfg: ScenarioConfig, own_stack: bool) -> dict[str, Any]:
    mon = ProcMonitor()
    for name, pid in stack.pids().items():
        mon.watch(name, pid, tree=(name == "worker"))
    mon.watch("loadgen", os.getpid())

    # fresh ids: a reused Redis may hold earlier runs' rooms, users and connection slots
    room_base = random.randint(10**6, 9 * 10**8)
    user_base = random.randint(10**6, 9 * 10**8)
    urls = stack.gateway_urls
    user_ids = [user_base + i for i in range(cfg.clients)]
    tokens = _tokens(stack, user_ids, own_stack)
    states = [ClientState(idx=i, user_id=user_ids[i],
                          room=room_name(room_base + cfg.room_index(i)),
                          url=f"{urls[i % len(urls)]}?token={tokens[i]}", gateway=i % len(urls))
              for i in range(cfg.clients)]
    fleet = Fleet(states, resume=cfg.resume, retry_forbidden=cfg.grant)

    stop_sampling = asyncio.Event()
    lag = LoopLag()
    _lag_probe(lag, stop_sampling)
    mon.start(SAMPLE_INTERVAL_S)
    pub: Publisher | None = None
    try:
        pub = await Publisher.start(stack, cfg, room_base)
        mon.watch("publisher", pub.proc.pid)
        await pub.expect("ready", 60)
        if cfg.grant:
            await _grant(stack, states)
        mon.mark("before_connect")
        connect_s = await fleet.connect_all(cfg.connect_batch, cfg.connect_timeout,
                                           steady=cfg.connect_steady)
        mon.mark("after_connect")
        await asyncio.sleep(cfg.settle)  # connected and idle: heartbeats only
        mon.mark("after_idle")
        # go right after the warm-up: an idle Dramatiq worker polls with a backoff of up
        # to 1 s, which would land on the first measured events
        warmed = await _warm_up(pub, fleet, cfg.warmup_timeout)

        # every client that joined counts, even if the server closed it since
        members = [s for s in states if s.joined]
        fleet.recorder.restart(time.time())
        lag.reset()
        rec0 = sum(s.received for s in members)
        # the bound on publishing + drain, as peers/loadgen.py's --max-time (plus the
        # publisher's start-up, a few ms)
        fleet.deadline = time.time() + cfg.duration + cfg.drain + 0.5
        pub.send("go")
        start = await pub.expect("start", 30)
        done = await pub.expect("done", cfg.duration + 60)
        published: dict[str, int] = done["published"]
        expected = sum(published.get(s.room, 0) for s in members)
        await _drain(fleet, members, expected, cfg)
        fleet.freeze()  # the figures are final from here on
        mon.mark("end")
        last_delivery = fleet.recorder.last_at or float(done["t"])
        stop_sampling.set()
        backlog = await asyncio.to_thread(_queue_backlog, stack.redis_url)
        for text in stack.check_alive():
            fleet.error(text)
        report = _report(cfg, stack, mon, fleet, members, published, expected, start, done,
                         rec0, last_delivery, connect_s, warmed, backlog)
        report["loadgen_loop_lag_ms"] = lag.summary()
        return report
    finally:
        stop_sampling.set()
        mon.stop()
        await fleet.close_all()
        if pub is not None:
            await pub.stop()


async def _grant(stack: BenchStack, states: list[ClientState]) -> None:
    def grant_all() -> None:
        from shared.settings import load_settings
        from workers.api import Backend

        backend = Backend(load_settings(REDIS_URL=stack.redis_url))
        try:
            for s in states:
                backend.grant_access(s.user_id, s.room)
        finally:
            backend.close()

    await asyncio.to_thread(grant_all)


async def _drain(fleet: Fleet, members: list[ClientState], expected: int,
                 cfg: ScenarioConfig) -> None:
    """Wait until every expected pair arrived, or `idle` s pass with no delivery, or the
    `drain` bound."""
    t_end = time.monotonic() + cfg.drain
    last_total = fleet.received()
    last_change = time.monotonic()
    while time.monotonic() < t_end and time.time() < fleet.deadline:
        if sum(s.received - s.dup for s in members) >= expected:
            return
        total = fleet.received()
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change >= cfg.idle:
            fleet.error(f"drain: nothing delivered for {cfg.idle:g} s; stopped waiting")
            return
        await asyncio.sleep(DRAIN_POLL_S)
    fleet.error(f"drain bound ({cfg.drain:g} s) reached")


def _queue_backlog(redis_url: str) -> int | None:
    """Jobs still in the job queue (not yet appended), over every shard."""
    import redis

    from shared import keys
    from shared.settings import load_settings

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        try:
            shards = load_settings().STREAM_SHARDS
            return sum(int(client.xlen(keys.inbox(s))) for s in range(shards))
        finally:
            client.close()
    except Exception:  # Redis gone: the figure is simply unknown
        return None


def _report(cfg: ScenarioConfig, stack: BenchStack, mon: ProcMonitor, fleet: Fleet,
            members: list[ClientState], published: dict[str, int], expected: int,
            start: dict[str, Any], done: dict[str, Any], rec0: int,
            last_delivery: float, connect_s: float, warmed: bool,
            backlog: int | None) -> dict[str, Any]:
    t_start, t_done = float(start["t"]), float(done["t"])
    window = t_done - t_start
    received = sum(s.received for s in members) - rec0
    during = _received_between(fleet, t_start, t_done)
    dup = sum(s.dup for s in members)
    lost = sum(s.lost(published.get(s.room, 0)) for s in members)
    beyond = sum(s.beyond(published.get(s.room, 0)) for s in members)
    if beyond:
        fleet.error(f"{beyond} (client, seq) pairs beyond the published count")
    delivered = received - dup
    active = max(last_delivery - t_start, 1e-9)
    drain_s = max(last_delivery - t_done, 0.0)
    after_pub = received - during
    # our gateways are gw1..gwN, serving gateway URL 0..N-1
    per_gateway = {name: sum(1 for s in members if s.gateway == int(name[2:]) - 1)
                   for name in stack.gateway_pids()}
    rss_before, rss_after = mon.marks["before_connect"].rss, mon.marks["after_idle"].rss
    mem_per_conn = {name: round((rss_after[name] - rss_before[name]) / 1024 / n, 1)
                    for name, n in per_gateway.items()
                    if n and name in rss_before and name in rss_after}
    if mem_per_conn:
        mem_per_conn["mean"] = round(sum(mem_per_conn.values()) / len(mem_per_conn), 1)
    cpu_publish = mon.cpu_pct_between(t_start, t_done)
    cpu_connect = mon.cpu_pct("before_connect", "after_connect")
    # a gateway's CPU time while connecting over the connections it took
    ms_per_connect = {name: round(cpu_connect[name] / 100 * connect_s / n * 1000, 3)
                      for name, n in per_gateway.items() if n and name in cpu_connect}
    return {
        "clients": cfg.clients,
        "connected": len(members),
        "connected_at_end": sum(1 for s in members if s.connection is not None),
        "connect_s": round(connect_s, 2),
        "connects_per_s": round(len(members) / connect_s) if connect_s > 0 else None,
        "rooms": cfg.rooms,
        "warmed_up": warmed,
        "published": {"events": int(done["events"]), "window_s": round(window, 3),
                      "rate": done["rate"]},
        "expected": expected,
        "delivered": delivered,
        "received": received,
        "delivered_per_s": round(during / window) if window > 0 else None,
        "delivered_per_s_overall": round(received / active),
        "delivered_after_publish": after_pub,
        "drain_s": round(drain_s, 2),
        "latency_ms": fleet.recorder.hist.summary(),
        "latency_ms_enqueue_to_append": fleet.recorder.to_append.summary(),
        "latency_ms_append_to_receipt": fleet.recorder.from_append.summary(),
        "lost": lost,
        "lost_pct": round(100.0 * lost / expected, 3) if expected else 0.0,
        "dup": dup,
        "out_of_order": sum(s.out_of_order for s in members),
        "reconnects": sum(s.reconnects for s in members),
        "closes_by_code": dict(fleet.closes_by_code),
        "queue_backlog_at_end": backlog,  # jobs never appended: not a gateway loss
        "pushback": done.get("pushback"),
        "producers": done.get("producers"),
        "publisher_errors": done.get("errors"),
        "cpu_pct": {"publish": cpu_publish,
                    "publish_and_drain": mon.cpu_pct_between(t_start, mon.marks["end"].at),
                    "connect": cpu_connect,
                    # every client connected and silent: the cost of heartbeats alone
                    "idle": mon.cpu_pct("after_connect", "after_idle")},
        "peak_rss_mb": mon.peak_rss_mb(),
        "rss_mb_after_connect": mon.rss_mb("after_connect"),
        "mem_per_conn_kb": mem_per_conn,
        "cpu_ms_per_connect": ms_per_connect,
        "publisher_cpu_s": done.get("cpu_s"),
        "n_errors": fleet.n_errors,
        "errors": fleet.errors,
        "timeline": _timeline(fleet, mon, float(start["t"])),
        "scenario": asdict(cfg),
    }


def _received_between(fleet: Fleet, t0: float, t1: float) -> int:
    """Bench events received (by receipt time) in [t0, t1], from the per-second bins;
    the partial seconds at both ends are prorated."""
    timeline = fleet.recorder.timeline
    a, b = t0 - timeline.origin, t1 - timeline.origin
    total = 0.0
    for sec, hist in timeline.seconds.items():
        overlap = min(b, sec + 1) - max(a, sec)
        if overlap > 0:
            total += hist.n * min(1.0, overlap)
    return round(total)


def _timeline(fleet: Fleet, mon: ProcMonitor, origin: float) -> list[dict[str, Any]]:
    """Per second since publishing began: deliveries, latency, CPU of each process."""
    rows = {r["t"]: r for r in fleet.recorder.timeline.rows()}
    shift = round(fleet.recorder.timeline.origin - origin)
    out: dict[int, dict[str, Any]] = {}
    for t, row in rows.items():
        out[t + shift] = {**row, "t": t + shift}
    last = max(out, default=-1)
    for t in range(last + 1):
        cpu = mon.cpu_pct_between(origin + t, origin + t + 1)
        if cpu:
            out.setdefault(t, {"t": t, "delivered": 0})["cpu_pct"] = cpu
    return [out[t] for t in sorted(out)]
