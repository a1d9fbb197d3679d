"""Worker faults (SPEC §4, §6): a retried job never publishes twice, a worker
SIGKILLed again and again loses and duplicates nothing, and a backend's enqueue
rides over a short Redis restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import redis

from roomcast.cli.embedded_redis import EmbeddedRedis
from shared import keys
from shared.settings import Settings
from tests.support.delivery import (
    SHARDS,
    WorkerGroup,
    connect,
    eventually,
    history_ids,
    shard_ids_of_room,
    stack_on,
)
from tests.support.jobs import jobs_outstanding
from tests.support.redis_fixture import RedisUnderTest, running_redis
from tests.support.stack import JWT_SECRET, Stack
from workers.api import Backend
from workers.broker import HEARTBEAT_TIMEOUT_MS, NAMESPACE, QUEUE_NAME, build_broker


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisUnderTest]:
    # restarted by a test: AOF keeps the stack's queues and groups across it
    with running_redis(appendonly=True, fsync="everysec", prefer_process=True) as server:
        yield server


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    """One gateway; the worker is the `worker` fixture, which tests kill."""
    with stack_on(redis_server.url, gateways=1, worker=False, ACCESS_MODE="open") as s:
        yield s


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[WorkerGroup]:
    group = WorkerGroup(stack.env, stack.workdir / "killed-worker.log").start()
    yield group
    group.stop()


@pytest.fixture
def backend(stack: Stack) -> Iterator[Backend]:
    b = Backend(build_broker(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                      STREAM_SHARDS=SHARDS)))
    yield b
    b.broker.close()


def _message_ids(db: redis.Redis, room: str) -> list[str]:
    return [json.loads(fields[b"e"])["data"]["message_id"]
            for _, fields in db.xrange(keys.room_history(room, SHARDS))]


def _queue_drained(db: redis.Redis) -> bool:
    return jobs_outstanding(db) == 0


async def test_the_same_key_published_twice_appends_once(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    key = uuid.uuid4().hex
    for _ in range(2):  # two publish_event jobs, processed concurrently by two threads
        backend.message(room, message_id=key, content="once", user_id=1, key=key)
    await eventually(lambda: _queue_drained(db), timeout=20, what="both jobs done")
    backend.message(room, message_id=key, content="once", user_id=1, key=key)  # later retry
    await eventually(lambda: _queue_drained(db), timeout=20, what="the third job done")
    assert db.xlen(keys.room_history(room, SHARDS)) == 1
    assert len(shard_ids_of_room(db, room)) == 1
    other = backend.message(room, message_id="other", content="other", user_id=1)
    await eventually(lambda: db.xlen(keys.room_history(room, SHARDS)) == 2,
                     what="a different key appends")
    assert _message_ids(db, room) == [key, "other"] and other


async def test_worker_sigkilled_repeatedly_loses_and_duplicates_nothing(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    rooms = [f"channel:{unique_id()}" for _ in range(4)]
    total = 1600
    keys_by_room: dict[str, list[str]] = {room: [] for room in rooms}

    def enqueue_all() -> None:
        for n in range(total):
            key = uuid.uuid4().hex
            room = rooms[n % len(rooms)]
            backend.message(room, message_id=key, content=f"n{n}", user_id=1, key=key)
            keys_by_room[room].append(key)

    def appended() -> int:
        return sum(int(db.xlen(keys.room_history(room, SHARDS))) for room in rooms)

    await asyncio.to_thread(worker.stop)  # the whole batch is queued before work starts
    await asyncio.to_thread(enqueue_all)
    worker.start()
    kills, stranded = 0, []
    for checkpoint in (200, 500, 800):
        dead = set(db.scan_iter(f"{NAMESPACE}:__acks__.*"))

        def in_flight(c: int = checkpoint, dead: set[bytes] = dead) -> bool:
            """Past the checkpoint, with jobs fetched by the live worker and not done."""
            return appended() >= c and any(
                db.scard(k) for k in db.scan_iter(f"{NAMESPACE}:__acks__.*") if k not in dead)

        await eventually(in_flight, timeout=30, interval=0.005,
                         what=f"{checkpoint} jobs done and more in flight ({appended()})")
        await asyncio.to_thread(worker.kill)  # the Dramatiq parent and its workers at once
        kills += 1
        stranded.append(sum(int(db.scard(k)) for k in db.scan_iter(f"{NAMESPACE}:__acks__.*")
                            if k not in dead))
        worker.start()
    assert appended() < total, "the worker finished before the last kill"
    last_kill = time.monotonic()
    await eventually(lambda: _queue_drained(db), timeout=HEARTBEAT_TIMEOUT_MS / 1000 + 40,
                     interval=0.2, what="every job done, stranded ones requeued")
    drained = time.monotonic() - last_kill
    lost = duplicated = 0
    for room in rooms:
        got = _message_ids(db, room)
        duplicated += len(got) - len(set(got))
        lost += len(set(keys_by_room[room]) - set(got))
        assert len(shard_ids_of_room(db, room)) == len(got)
    print(f"\nworker SIGKILLed {kills} times; jobs stranded in dead workers' ack sets: "
          f"{stranded}; all {total} done {drained:.1f} s after the last kill; "
          f"lost {lost}, duplicated {duplicated}")
    # (a job may finish between the look and the kill: not every kill strands one)
    assert sum(stranded) > 0, "no kill stranded a fetched job: the test proved nothing"
    assert (lost, duplicated) == (0, 0)
    assert appended() == total


async def test_enqueue_during_a_short_redis_restart_succeeds_and_arrives(
        stack: Stack, worker: WorkerGroup, redis_server: RedisUnderTest, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    assert isinstance(redis_server, EmbeddedRedis)
    server = redis_server
    room = f"task:{unique_id()}"
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)
    probe = redis.Redis.from_url(stack.redis_url, socket_connect_timeout=0.5)

    def redis_down() -> bool:
        try:
            probe.ping()
            return False
        except redis.ConnectionError:
            return True

    await asyncio.to_thread(server.stop)  # graceful: the AOF keeps everything
    assert redis_down()
    calling = threading.Event()
    outcome: dict[str, Any] = {}

    def enqueue() -> None:
        calling.set()
        outcome["started"] = time.monotonic()
        try:
            outcome["key"] = backend.message(room, message_id="during-outage",
                                             content="x", user_id=1)
        except BaseException as exc:  # reported below
            outcome["error"] = exc
        outcome["returned"] = time.monotonic()

    thread = threading.Thread(target=enqueue, daemon=True)
    thread.start()
    await asyncio.to_thread(calling.wait, 5)
    spawned = time.monotonic()
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(thread.join, 30)
    assert "error" not in outcome, outcome
    assert isinstance(outcome["started"], float) and outcome["started"] < spawned
    got = await client.wait_for(lambda f: f.get("room") == room and f["type"] == "message",
                                timeout=20)
    arrived = time.monotonic() - spawned
    print(f"\nenqueue during a Redis restart: returned "
          f"{float(outcome['returned']) - float(outcome['started']):.2f} s after the call "
          f"(Redis down at the call), event delivered {arrived:.2f} s after Redis came back")
    assert got["data"]["message_id"] == "during-outage"
    assert history_ids(probe, room)[-1] == got["id"]
    probe.close()
    await client.close()


async def test_jobs_of_a_fetch_whose_reply_was_lost_are_still_processed(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    """Redis ran a worker's fetch (the jobs moved to that worker's ack set) and the
    connection died before the reply arrived. Dramatiq requeues an ack set only when
    its worker stops heartbeating, which a live worker never does. Made exactly: the
    paused worker's fetch runs in its name; then, with writes paused in Redis, its next
    fetch is in flight when its connections are killed."""
    assert worker.process is not None
    room = f"project:{unique_id()}"
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)
    ours = backend.broker.broker_id
    beats = f"{NAMESPACE}:__heartbeats__"
    redis_port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])

    def polling() -> list[str]:
        """Identities that dispatched within the last second: the live worker polls."""
        now_ms = time.time() * 1000
        return [m.decode() for m, score in db.zrange(beats, 0, -1, withscores=True)
                if m.decode() != ours and score > now_ms - 1000]

    def worker_fetch_in_flight() -> list[int]:
        """Redis client ids of the worker's connections holding a postponed script."""
        ports = {c.laddr.port for p in psutil.Process(worker.process.pid).children()  # type: ignore[union-attr]
                 for c in p.net_connections("tcp") if c.raddr and c.raddr.port == redis_port}
        return [int(c["id"]) for c in db.client_list()
                if int(c["addr"].rsplit(":", 1)[1]) in ports
                and "b" in c["flags"] and c["cmd"] == "evalsha"]

    await eventually(lambda: len(polling()) == 1, timeout=15, what="the worker polls")
    thief = build_broker(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                  STREAM_SHARDS=SHARDS))
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        live = polling()[0]
        backend.message(room, message_id="lost-reply", content="x", user_id=1)
        thief.broker_id = live  # the worker's own fetch, as Redis ran it
        assert thief.do_fetch(QUEUE_NAME, 1), "nothing fetched"
        db.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
        thief.close()
    try:
        in_flight = await eventually(worker_fetch_in_flight, timeout=5,
                                     what="a fetch of the worker waits in Redis")
        for client_id in in_flight:  # the connection dies with the reply unsent
            db.execute_command("CLIENT", "KILL", "ID", str(client_id))
    finally:
        db.execute_command("CLIENT", "UNPAUSE")
    lost_at = time.monotonic()
    got = await client.wait_for(lambda f: f.get("room") == room and f["type"] == "message",
                                timeout=HEARTBEAT_TIMEOUT_MS / 1000 + 20)
    took = time.monotonic() - lost_at
    print(f"\njob of a fetch whose reply was lost processed after {took:.1f} s "
          f"(worker heartbeat timeout {HEARTBEAT_TIMEOUT_MS / 1000:.0f} s)")
    assert got["data"]["message_id"] == "lost-reply"
    await eventually(lambda: _queue_drained(db), timeout=10, what="nothing left queued")
    await client.close()
