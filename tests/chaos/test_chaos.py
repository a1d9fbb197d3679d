"""Chaos run: gateways and the worker SIGKILLed under load lose nothing for resuming
clients, and one producer's events keep their order.

Three gateways, one worker, 200 SDK clients in 50 rooms, each homed on one
gateway: three in four list the other two gateways as failover URLs (the SDK
moves to the next URL on a drop), one in four is sticky (its home URL only, so
it retries until its gateway is back and joins it while the restarted gateway
is still catching up with what it missed). For DURATION seconds one gateway
is SIGKILLed every KILL_EVERY seconds (round-robin) and restarted with the same
instance id, and the worker (its whole process group) is SIGKILLed at
WORKER_KILLS and restarted, while one producer publishes sequence-numbered events
of several sizes (up to EVENT_MAX_BYTES) to the rooms through the real worker
path. PAUSERS more members run in processes of their own that the test freezes
(SIGSTOP) for PAUSE_SECONDS now and then: a client that stops reading for a few
seconds while staying under the send bounds. Then every client must catch up, and:

- lost = 0: every (client, room, seq) published after the client joined arrived;
- duplicates = 0; stream out of order = 0 (ids increase per room); producer-order
  inversions = 0 (per client and room, the producer's seqs increase in arrival
  order), for the SDK clients and the paused members alike;
- recovered:false answers (NotRecovered) = 0, resync_required = 0;
- the p99 time to resume (SDK Disconnected -> every room Recovered after the
  reconnect) stays under RESUME_P99_LIMIT for failover clients and under
  the slowest restart + one backoff step + RESUME_P99_LIMIT for sticky ones (they
  wait for the restart).

Events go round-robin over the rooms from one thread calling workers.api: one
producer, whose order the job queue keeps whatever the worker's threads, crashes
and retries (there is no gate waiting for an event to land before the next).

The figures are printed one per line (`CHAOS name = value`) and, if
CHAOS_REPORT names a file, written there as JSON. CHAOS_DURATION shortens the
run for local use (the event count scales with it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from roomcast.client import (
    Connected,
    ConnectionState,
    Disconnected,
    NotRecovered,
    Recovered,
    ResyncRequired,
    RoomcastClient,
    RoomEvent,
    RoomLeft,
    ServerError,
)
from roomcast.client.backoff import DEFAULT_CAP
from shared import keys
from shared.settings import Settings
from tests.support.delivery import WorkerGroup
from tests.support.redis_fixture import running_redis
from tests.support.stack import JWT_SECRET, Stack
from tests.support.tokens import make_token
from workers.api import Backend

pytestmark = pytest.mark.chaos

# -- the scenario ---------------------------------------------------------------------
DEFAULT_DURATION = 60.0
DURATION = float(os.environ.get("CHAOS_DURATION") or DEFAULT_DURATION)
EVENTS_PER_SECOND = 10_000 / 60  # 10,000 events in the full 60 s run
TOTAL_EVENTS = round(EVENTS_PER_SECOND * DURATION)
GATEWAYS = 3
CLIENTS = 200
ROOMS = 50
# Each client is in two rooms (8 members per room, spread over all gateways).
ROOM_OFFSETS = (1, 12, 23, 34)  # second room of client i: room i + offset[i // ROOMS]
KILL_EVERY = 5.0
WORKER_KILLS = (10.0, 30.0, 50.0)  # seconds into the chaos window (between gateway kills)
PAUSERS = 6
PAUSE_EVERY = 7.0
PAUSE_SECONDS = 3.0  # < the 2 x heartbeat keepalive: a paused member is not dropped
# Event sizes: (share of events, padding bytes); the largest near EVENT_MAX_BYTES.
SIZES = ((0.90, 0), (0.08, 4_000), (0.015, 16_000), (0.005, 64_000))
FIRST_KILL_AT = 2.5  # kills at 2.5, 7.5, ... so none lands on the start or the end
WORKER_THREADS = 8
STREAM_SHARDS = 4
HISTORY_SIZE = 5000  # > events per room in the run: every resume is recoverable
# SIGKILL resets the sockets, so drops are seen at once; a longer heartbeat only
# keeps a loaded 2-core box from dropping healthy links on a late pong.
HEARTBEAT_INTERVAL = 5
EVENT_TYPE = "project.updated"
USER_BASE = 10_000
STICKY_EVERY = 4  # client i is sticky (home URL only) when i % STICKY_EVERY == 0

# -- bounds (the whole test stays well under 3 minutes) -------------------------------
CONNECT_BATCH = 25
CONNECT_DEADLINE = 30.0
WORKER_READY_DEADLINE = 30.0
SETTLE_DEADLINE = 15.0
RESTART_DEADLINE = 30.0
PUBLISH_GRACE = 15.0  # publisher may finish this long after the chaos window
DRAIN_DEADLINE = 60.0
CLOSE_DEADLINE = 30.0  # 200 closing handshakes; each may wait up to 10 s on a loaded machine
POLL = 0.1
# Seconds, clients with failover URLs. A bound that a loaded 2-core CI machine keeps
# (a gateway start there takes up to ~10 s), not a speed figure: `roomcast bench
# --resume` and the quiet-machine chaos figures in docs/benchmarks.md are that.
RESUME_P99_LIMIT = 15.0
# Sticky clients wait for their gateway's restart (kill -> ready, measured, and slow on
# a loaded machine), then at most one backoff step (the SDK's cap), then the resume.
STICKY_BACKOFF_CAP = DEFAULT_CAP


def room_name(index: int) -> str:
    return f"project:{index + 1}"


def rooms_of(client: int) -> tuple[str, str]:
    first = client % ROOMS
    second = (first + ROOM_OFFSETS[(client // ROOMS) % len(ROOM_OFFSETS)]) % ROOMS
    return room_name(first), room_name(second)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


# -- one client and what it saw ---------------------------------------------------------
@dataclass
class Probe:
    index: int
    rooms: tuple[str, ...]
    client: RoomcastClient
    sticky: bool
    arrivals: dict[str, list[int]] = field(default_factory=dict)  # seqs, arrival order
    distinct: dict[str, set[int]] = field(default_factory=dict)
    duplicates: int = 0
    out_of_order: int = 0  # producer-order inversions: a seq below one already seen
    stream_out_of_order: int = 0  # an id at or below the room's last one
    last_id: dict[str, tuple[int, int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # publish -> receipt, s
    outage_since: float | None = None  # monotonic time of the Disconnected
    waiting: set[str] = field(default_factory=set)  # rooms not yet rejoined
    resume_times: list[float] = field(default_factory=list)
    drops: int = 0  # outages (first Disconnected of each)
    failed_attempts: int = 0  # further Disconnected events while already out
    attempt_codes: Counter[int] = field(default_factory=Counter)  # of those attempts
    drop_codes: Counter[int] = field(default_factory=Counter)
    reconnects: int = 0
    not_recovered: int = 0
    resyncs: int = 0
    presence_events: int = 0  # user_joined / user_left appended during the chaos
    chaos_from_ms: float = float("inf")  # wall clock (ms) the chaos started
    errors: list[str] = field(default_factory=list)
    rooms_left: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for room in self.rooms:
            self.arrivals[room] = []
            self.distinct[room] = set()
        c = self.client
        c.on(RoomEvent, self.on_event)
        c.on(Disconnected, self.on_disconnected)
        c.on(Connected, self.on_connected)
        c.on(Recovered, self.on_recovered)
        c.on(NotRecovered, self.on_not_recovered)
        c.on(ResyncRequired, self.on_resync)
        c.on(ServerError, self.on_error)
        c.on(RoomLeft, self.on_room_left)

    def on_event(self, event: RoomEvent) -> None:
        if event.type in ("user_joined", "user_left"):
            # Every user is back long before its dead connection's presence expires,
            # so none are expected during the chaos; reported, not asserted. The
            # stream id's time tells them from the tail of the connect phase.
            if int(event.id.split("-")[0]) >= self.chaos_from_ms:
                self.presence_events += 1
            return
        if event.type != EVENT_TYPE or event.room not in self.arrivals:
            return
        ms, _, n = event.id.partition("-")
        id_key = (int(ms), int(n))
        if id_key <= self.last_id.get(event.room, (0, 0)):
            self.stream_out_of_order += 1
        self.last_id[event.room] = id_key
        seq = event.data["seq"]
        seen = self.distinct[event.room]
        arrived = self.arrivals[event.room]
        if seq in seen:
            self.duplicates += 1
        elif arrived and seq < arrived[-1]:
            self.out_of_order += 1
        arrived.append(seq)
        seen.add(seq)
        self.latencies.append(time.time() - float(event.data["sent_at"]))

    def on_disconnected(self, event: Disconnected) -> None:
        if not event.will_reconnect:
            return  # the close() at the end of the test
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            self.drops += 1
            self.drop_codes[event.code] += 1
        else:
            self.failed_attempts += 1
            self.attempt_codes[event.code] += 1
        self.waiting = set(self.rooms)  # a drop mid-rejoin means rejoining them all again

    def on_connected(self, event: Connected) -> None:
        if event.reconnect:
            self.reconnects += 1

    def _rejoined(self, room: str) -> None:
        if self.outage_since is None or room not in self.waiting:
            return
        self.waiting.discard(room)
        if not self.waiting:
            self.resume_times.append(time.monotonic() - self.outage_since)
            self.outage_since = None

    def on_recovered(self, event: Recovered) -> None:
        self._rejoined(event.room)

    def on_not_recovered(self, event: NotRecovered) -> None:
        if event.room in self.arrivals:
            self.not_recovered += 1
        self._rejoined(event.room)

    def on_resync(self, event: ResyncRequired) -> None:
        self.resyncs += 1

    def on_error(self, event: ServerError) -> None:
        self.errors.append(f"{event.code} {event.message} {event.room}")

    def on_room_left(self, event: RoomLeft) -> None:
        self.rooms_left.append(f"{event.room} {event.reason}")

    def caught_up(self, expected: dict[str, int]) -> bool:
        return all(len(self.distinct[room]) >= expected[room] for room in self.rooms)


# -- the publisher: sequence-numbered events through the worker, at a fixed rate -------
class Publisher(threading.Thread):
    """One producer: `total` events round-robin over `rooms` at `rate`/s via workers.api,
    of the sizes in SIZES. Nothing waits for an event to land before the next: the
    job queue keeps this thread's order per room across worker kills."""

    def __init__(self, backend: Backend, rooms: list[str], total: int, rate: float) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self.backend = backend
        self.rooms = rooms
        self.total = total
        self.rate = rate
        self.stop = threading.Event()
        self.published: dict[str, list[int]] = {room: [] for room in rooms}
        self.count = 0
        self.bytes_by_size: Counter[int] = Counter()
        self.started_at = 0.0
        self.finished_at = 0.0
        self.error: BaseException | None = None
        self._rng = random.Random(11)

    def run(self) -> None:
        try:
            self._publish_all()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def _padding(self) -> int:
        roll = self._rng.random()
        for share, size in SIZES:
            if roll < share:
                return size
            roll -= share
        return 0

    def _publish_all(self) -> None:
        self.started_at = time.monotonic()
        for seq in range(self.total):
            delay = self.started_at + seq / self.rate - time.monotonic()
            if delay > 0 and self.stop.wait(delay):  # the rate schedule, not a sync guess
                return
            if self.stop.is_set():
                return
            room = self.rooms[seq % len(self.rooms)]
            data: dict[str, Any] = {"project_id": int(room.split(":")[1]), "changes": {},
                                    "seq": seq, "sent_at": time.time()}
            pad = self._padding()
            if pad:
                # the largest events land just under EVENT_MAX_BYTES once encoded
                data["pad"] = "x" * (pad - 600 if pad > 60_000 else pad)
            self.backend.event(EVENT_TYPE, room, data)
            self.bytes_by_size[pad] += 1
            self.published[room].append(seq)
            self.count += 1


# -- the stack ------------------------------------------------------------------------
@dataclass
class ChaosStack:
    stack: Stack
    worker: WorkerGroup  # in a session of its own: SIGKILL takes the whole group


@pytest.fixture
def chaos_stack() -> Iterator[ChaosStack]:
    with running_redis(prefer_process=True) as server:
        stack = Stack(server.url, env_overrides={
            "ACCESS_MODE": "open",
            "ROOM_HISTORY_SIZE": str(HISTORY_SIZE),
            "STREAM_SHARDS": str(STREAM_SHARDS),
            "WS_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        })
        worker = WorkerGroup(stack.env, stack.workdir / "worker.log", threads=WORKER_THREADS)
        try:
            worker.start()
            for n in range(GATEWAYS):
                stack.add_gateway(instance_id=f"chaos-gw-{n}")
            yield ChaosStack(stack, worker)
        finally:
            stack.stop()
            worker.stop()


def wait_worker_ready(backend: Backend, store: redis.Redis) -> None:
    """One event through the worker proves it consumes (it starts in the background)."""
    room = room_name(ROOMS + 100)  # a room no client joins
    key = backend.event(EVENT_TYPE, room, {"project_id": 1, "changes": {}, "probe": True})
    deadline = time.monotonic() + WORKER_READY_DEADLINE
    while not store.exists(keys.dedupe(key, room, STREAM_SHARDS)):
        if time.monotonic() > deadline:
            raise TimeoutError("worker did not append the probe event")
        time.sleep(0.05)  # poll with a deadline


# -- members in processes of their own, frozen now and then ---------------------------
@dataclass
class Pauser:
    index: int
    rooms: tuple[str, ...]
    out: Path
    process: asyncio.subprocess.Process
    pauses: int = 0


async def start_pausers(stack: Stack, workdir: Path) -> list[Pauser]:
    urls = [g.url for g in stack.gateways]
    pausers = []
    for n in range(PAUSERS):
        index = CLIENTS + n
        rooms = rooms_of(index)
        out = workdir / f"pauser-{n}.json"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.pauser", str(out),
            make_token(USER_BASE + index, f"pauser{n}"), ",".join(rooms),
            *urls[n % len(urls):], *urls[:n % len(urls)],
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        pausers.append(Pauser(index, rooms, out, process))
    for pauser in pausers:
        assert pauser.process.stdout is not None
        async with asyncio.timeout(CONNECT_DEADLINE):
            assert (await pauser.process.stdout.readline()).strip() == b"joined"
    return pausers


async def run_pauses(pausers: list[Pauser], started: float, duration: float) -> None:
    """Freeze one member after the other for PAUSE_SECONDS, every PAUSE_EVERY s."""
    k = 0
    while (due := started + PAUSE_EVERY / 2 + k * PAUSE_EVERY) < started + duration:
        await sleep_until(due)
        pauser = pausers[k % len(pausers)]
        pauser.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(PAUSE_SECONDS)  # how long it reads nothing: the scenario
        pauser.process.send_signal(signal.SIGCONT)
        pauser.pauses += 1
        k += 1


def pauser_caught_up(pauser: Pauser, expected: dict[str, int]) -> bool:
    try:
        arrivals = json.loads(pauser.out.read_text())["arrivals"]
    except (OSError, ValueError):
        return False
    return all(len(set(arrivals[room])) >= expected[room] for room in pauser.rooms)


async def stop_pausers(pausers: list[Pauser]) -> list[dict[str, Any]]:
    results = []
    for pauser in pausers:
        pauser.process.send_signal(signal.SIGCONT)
        pauser.process.terminate()
    for pauser in pausers:
        async with asyncio.timeout(CLOSE_DEADLINE):
            await pauser.process.wait()
        results.append(json.loads(pauser.out.read_text()))
    return results


async def run_worker_kills(worker: WorkerGroup, started: float) -> int:
    """SIGKILL the worker (the Dramatiq parent and its processes) at WORKER_KILLS."""
    kills = 0
    for at in WORKER_KILLS:
        if at >= DURATION:
            break
        await sleep_until(started + at)
        await asyncio.to_thread(worker.kill)
        worker.start()
        kills += 1
    return kills


def wait_presence_settled(store: redis.Redis, probes: list[Probe]) -> None:
    """Every member's user_joined is appended (the gateway appends it after the
    room_joined reply), so presence events of the connect phase end before the chaos."""
    members = Counter(room for p in probes for room in p.rooms)
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        with store.pipeline(transaction=False) as pipe:
            for room in members:
                pipe.xlen(keys.room_history(room, STREAM_SHARDS))
            lengths = pipe.execute()
        if all(n >= members[room] for room, n in zip(members, lengths, strict=True)):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("user_joined events of the connect phase never all appended")
        time.sleep(0.05)  # poll with a deadline


async def sleep_until(deadline: float) -> None:
    """Wait for a point of the chaos timeline (the scenario's clock)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def connect_all(probes: list[Probe]) -> float:
    """Connect and join in batches; returns the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(CONNECT_DEADLINE):
        for first in range(0, len(probes), CONNECT_BATCH):
            batch = probes[first:first + CONNECT_BATCH]
            joins = [p.client.join(room) for p in batch for room in p.rooms]
            for p in batch:
                p.client.connect()
            await asyncio.gather(*(p.client.wait_connected() for p in batch))
            await asyncio.gather(*joins)
    return time.monotonic() - started


@dataclass
class Kill:
    instance_id: str
    at: float  # seconds into the chaos window
    restart_seconds: float  # SIGKILL -> ready again


async def run_chaos(stack: Stack, started: float, duration: float) -> list[Kill]:
    """SIGKILL gateway k % GATEWAYS every KILL_EVERY s and restart it, same instance id."""
    kills: list[Kill] = []
    k = 0
    while (due := started + FIRST_KILL_AT + k * KILL_EVERY) < started + duration:
        await sleep_until(due)
        gateway = stack.gateways[k % len(stack.gateways)]
        killed_at = time.monotonic()
        await asyncio.to_thread(gateway.kill)
        await asyncio.to_thread(gateway.start, RESTART_DEADLINE)
        kills.append(Kill(gateway.instance_id, round(killed_at - started, 2),
                          time.monotonic() - killed_at))
        k += 1
    return kills


class DuplicateCounter(logging.Handler):
    """Counts room events the SDK itself dropped as duplicates: frames the server sent
    twice (or out of order) that the app never sees, so they are reported apart."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.task_failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("roomcast: dropped duplicate"):
            self.count += 1
        elif record.levelno >= logging.ERROR:
            self.task_failures += 1


def log_problems(stack: Stack) -> dict[str, int]:
    """Warnings and errors in the gateways' JSON logs and the worker's log, by message."""
    problems: Counter[str] = Counter()
    for gateway in stack.gateways:
        for line in gateway.log_text().splitlines():
            if '"level": "warning"' not in line and '"level": "error"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            problems[f"gateway {record.get('level')}: {record.get('msg')}"] += 1
    worker_log = stack.workdir / "worker.log"
    if worker_log.exists():
        for line in worker_log.read_text(errors="replace").splitlines():
            for level in ("[WARNING]", "[ERROR]", "[CRITICAL]"):
                if level in line:
                    message = line.split(level, 1)[1].strip()[:60]
                    problems[f"worker {level.strip('[]').lower()}: {message}"] += 1
    return dict(problems.most_common())


def check_paused(pausers: list[Pauser], results: list[dict[str, Any]],
                 published: dict[str, list[int]]) -> dict[str, int]:
    """Lost, duplicated and reordered events of the members that were frozen."""
    lost = duplicates = inversions = not_recovered = 0
    for pauser, result in zip(pausers, results, strict=True):
        not_recovered += int(result["not_recovered"])
        for room in pauser.rooms:
            got = result["arrivals"][room]
            duplicates += len(got) - len(set(got))
            inversions += sum(1 for a, b in itertools.pairwise(got) if b < a)
            lost += len(set(published[room]) - set(got))
    return {"paused_members": len(pausers), "pauses": sum(p.pauses for p in pausers),
            "paused_lost": lost, "paused_duplicates": duplicates,
            "paused_order_inversions": inversions, "paused_not_recovered": not_recovered}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


@pytest.mark.timeout(300)
async def test_gateways_and_worker_sigkilled_under_load_lose_nothing(
        chaos_stack: ChaosStack, tmp_path: Path) -> None:
    wall_started = time.monotonic()
    stack = chaos_stack.stack
    settings = Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                        STREAM_SHARDS=STREAM_SHARDS)
    backend = Backend(settings)
    store = redis.Redis.from_url(stack.redis_url)
    sdk_log = logging.getLogger("roomcast.client")
    counter = DuplicateCounter()
    old_level = sdk_log.level
    sdk_log.addHandler(counter)
    sdk_log.setLevel(logging.DEBUG)
    rng = random.Random(3)
    urls = [g.url for g in stack.gateways]
    probes: list[Probe] = []
    for i in range(CLIENTS):
        home = i % GATEWAYS
        others = [u for n, u in enumerate(urls) if n != home]
        rng.shuffle(others)  # failover targets spread: no herd onto the next victim
        sticky = i % STICKY_EVERY == 0
        user_id = USER_BASE + i
        client = RoomcastClient([urls[home]] if sticky else [urls[home], *others],
                                make_token(user_id, f"chaos{i}"),
                                rng=random.Random(i), connect_kwargs={"proxy": None})
        probes.append(Probe(i, rooms_of(i), client, sticky))
    publisher = Publisher(backend, [room_name(r) for r in range(ROOMS)], TOTAL_EVENTS,
                          EVENTS_PER_SECOND)
    pausers = await start_pausers(stack, tmp_path)
    try:
        await asyncio.to_thread(wait_worker_ready, backend, store)
        connect_seconds = await connect_all(probes)
        assert all(p.client.state is ConnectionState.OPEN for p in probes)
        await asyncio.to_thread(wait_presence_settled, store, probes)

        for p in probes:
            p.chaos_from_ms = time.time() * 1000
        chaos_started = time.monotonic()
        publisher.start()
        kills, worker_kills, _ = await asyncio.gather(
            run_chaos(stack, chaos_started, DURATION),
            run_worker_kills(chaos_stack.worker, chaos_started),
            run_pauses(pausers, chaos_started, DURATION))
        chaos_seconds = time.monotonic() - chaos_started
        await asyncio.to_thread(publisher.join, max(0.0, chaos_started + DURATION
                                                    + PUBLISH_GRACE - time.monotonic()))
        publisher.stop.set()
        assert not publisher.is_alive(), "publisher did not finish in time"
        if publisher.error is not None:
            raise publisher.error
        for gateway in stack.gateways:
            assert gateway.process is not None and gateway.process.poll() is None

        expected = {room: len(seqs) for room, seqs in publisher.published.items()}
        drain_started = time.monotonic()
        drain_deadline = drain_started + DRAIN_DEADLINE
        # every event arrived, and every client is back (a sticky client of the gateway
        # killed last waits for its restart)
        while not all(p.caught_up(expected) and p.outage_since is None
                      and p.client.state is ConnectionState.OPEN for p in probes):
            if time.monotonic() > drain_deadline:
                break
            await asyncio.sleep(POLL)  # poll with a deadline
        while not all(pauser_caught_up(pauser, expected) for pauser in pausers):
            if time.monotonic() > drain_deadline:
                break
            await asyncio.sleep(POLL)  # poll with a deadline (they write as they go)
        paused = await stop_pausers(pausers)
        drained_at = time.monotonic()
        drain_seconds = drained_at - drain_started
        states = Counter(p.client.state.value for p in probes)
        still_out = sum(1 for p in probes if p.outage_since is not None)
        presence_events = sum(p.presence_events for p in probes)  # before the closes add some
    finally:
        publisher.stop.set()
        for pauser in pausers:
            if pauser.process.returncode is None:
                pauser.process.send_signal(signal.SIGCONT)
                pauser.process.kill()
        async with asyncio.timeout(CLOSE_DEADLINE):
            await asyncio.gather(*(p.client.close() for p in probes), return_exceptions=True)
        sdk_log.removeHandler(counter)
        sdk_log.setLevel(old_level)
        backend.close()
        store.close()

    # -- the figures ----------------------------------------------------------------
    lost_examples: list[str] = []
    lost = 0
    for p in probes:
        for room in p.rooms:
            missing = set(publisher.published[room]) - p.distinct[room]
            lost += len(missing)
            if missing and len(lost_examples) < 10:
                lost_examples.append(f"client {p.index} {room}: {len(missing)} missing, "
                                     f"first seqs {sorted(missing)[:5]}")
    paused_figures = check_paused(pausers, paused, publisher.published)
    expected_deliveries = sum(expected[room] for p in probes for room in p.rooms)
    received = sum(len(a) for p in probes for a in p.arrivals.values())
    resume_times = [t for p in probes for t in p.resume_times]
    failover_resumes = [t for p in probes if not p.sticky for t in p.resume_times]
    sticky_resumes = [t for p in probes if p.sticky for t in p.resume_times]
    latencies = [t for p in probes for t in p.latencies]
    errors = [e for p in probes for e in p.errors]
    drop_codes: Counter[int] = Counter()
    attempt_codes: Counter[int] = Counter()
    for p in probes:
        drop_codes.update(p.drop_codes)
        attempt_codes.update(p.attempt_codes)
    publish_seconds = publisher.finished_at - publisher.started_at
    report: dict[str, Any] = {
        "duration_s": DURATION,
        "gateways": GATEWAYS,
        "clients": CLIENTS,
        "rooms": ROOMS,
        "events_published": publisher.count,
        "publish_seconds": round(publish_seconds, 2),
        "publish_events_per_s": round(publisher.count / publish_seconds, 1),
        "events_by_padding_bytes": dict(sorted(publisher.bytes_by_size.items())),
        "worker_kills": worker_kills,
        "kills": len(kills),
        "kill_schedule": [k.__dict__ for k in kills],
        "restart_p50_s": round(percentile([k.restart_seconds for k in kills], 50) or 0, 2),
        "restart_max_s": round(max((k.restart_seconds for k in kills), default=0), 2),
        "connect_seconds": round(connect_seconds, 2),
        "chaos_seconds": round(chaos_seconds, 2),
        "drain_seconds": round(drain_seconds, 2),
        "deliveries_expected": expected_deliveries,
        "deliveries_received": received,
        "delivered_per_s": round(received / (drained_at - chaos_started), 1),
        "lost": lost,
        "duplicates": sum(p.duplicates for p in probes),
        "stream_out_of_order": sum(p.stream_out_of_order for p in probes),
        "producer_order_inversions": sum(p.out_of_order for p in probes),
        **paused_figures,
        "not_recovered": sum(p.not_recovered for p in probes),
        "resync_required": sum(p.resyncs for p in probes),
        "sdk_filtered_duplicates": counter.count,
        "sdk_task_failures": counter.task_failures,
        "server_errors": len(errors),
        "rooms_left": sum(len(p.rooms_left) for p in probes),
        "presence_events_during_chaos": presence_events,
        "drops": sum(p.drops for p in probes),
        "drop_codes": {str(c): n for c, n in sorted(drop_codes.items())},
        "failed_attempts": sum(p.failed_attempts for p in probes),
        "failed_attempt_codes": {str(c): n for c, n in sorted(attempt_codes.items())},
        "reconnects": sum(p.reconnects for p in probes),
        "resumes": len(resume_times),
        "resume_p50_ms": _ms(percentile(resume_times, 50)),
        "resume_p99_ms": _ms(percentile(resume_times, 99)),
        "resume_max_ms": _ms(max(resume_times, default=None)),
        "failover_resumes": len(failover_resumes),
        "failover_resume_p50_ms": _ms(percentile(failover_resumes, 50)),
        "failover_resume_p99_ms": _ms(percentile(failover_resumes, 99)),
        "sticky_resumes": len(sticky_resumes),
        "sticky_resume_p50_ms": _ms(percentile(sticky_resumes, 50)),
        "sticky_resume_p99_ms": _ms(percentile(sticky_resumes, 99)),
        "latency_p50_ms": _ms(percentile(latencies, 50)),
        "latency_p99_ms": _ms(percentile(latencies, 99)),
        "latency_max_ms": _ms(max(latencies, default=None)),
        "clients_open_at_end": states.get(ConnectionState.OPEN.value, 0),
        "clients_still_resuming_at_end": still_out,
        "wall_seconds": round(time.monotonic() - wall_started, 1),
        "logs": str(stack.workdir),
        "log_problems": await asyncio.to_thread(log_problems, stack),
        "lost_examples": lost_examples,
        "error_examples": errors[:10],
    }
    print()
    for name, value in report.items():
        if name != "kill_schedule":
            print(f"CHAOS {name} = {value}")
    print("CHAOS kill_schedule = " + ", ".join(
        f"{k.instance_id}@{k.at}s/{k.restart_seconds:.2f}s" for k in kills))
    if path := os.environ.get("CHAOS_REPORT"):
        await asyncio.to_thread(Path(path).write_text, json.dumps(report, indent=2))

    assert publisher.count == TOTAL_EVENTS
    assert len(kills) == int((DURATION - FIRST_KILL_AT) // KILL_EVERY) + 1
    assert report["drops"] > 0, "no client ever lost its gateway: the chaos did not bite"
    assert lost == 0, f"{lost} events lost: {lost_examples}"
    assert worker_kills == len([at for at in WORKER_KILLS if at < DURATION])
    assert report["duplicates"] == 0
    assert report["stream_out_of_order"] == 0
    assert report["producer_order_inversions"] == 0
    assert (report["paused_lost"], report["paused_duplicates"],
            report["paused_order_inversions"], report["paused_not_recovered"]) == (0, 0, 0, 0)
    assert report["pauses"] > 0
    assert report["not_recovered"] == 0
    assert report["resync_required"] == 0
    assert report["rooms_left"] == 0
    assert errors == [], errors[:10]
    assert counter.task_failures == 0
    assert still_out == 0 and report["clients_open_at_end"] == CLIENTS
    p99 = percentile(failover_resumes, 99)
    assert p99 is not None and p99 < RESUME_P99_LIMIT, f"failover resume p99 {p99}s"
    p99 = percentile(sticky_resumes, 99)
    limit = max(k.restart_seconds for k in kills) + STICKY_BACKOFF_CAP + RESUME_P99_LIMIT
    assert p99 is not None and p99 < limit, f"sticky resume p99 {p99}s (limit {limit:.1f}s)"
