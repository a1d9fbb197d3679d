"""Worker faults (SPEC §4, §6): a job queued twice publishes once; a worker
SIGKILLed again and again loses, duplicates and reorders nothing; a backend's
enqueue rides over a short Redis restart; a job whose read reply never reached
the worker is still applied."""

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

import pytest
import redis

from roomcast.cli.embedded_redis import EmbeddedRedis
from shared import keys
from shared.engines.redis.job_source import LEASE_TTL_MS, STRAY_SWEEP_SECONDS
from shared.rooms import shard_of
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
    b = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                      STREAM_SHARDS=SHARDS))
    yield b
    b.close()


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
    for _ in range(2):  # the same event queued twice (a producer retrying, say)
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


async def test_worker_sigkilled_repeatedly_loses_duplicates_and_reorders_nothing(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    """One producer queues 1,600 messages over 4 rooms; the worker is SIGKILLed three
    times while it holds fetched, unfinished jobs. Every message is appended once, and
    each room's messages in the order they were queued."""
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

    def taken_not_done() -> int:
        """Jobs a worker read and has not completed (its pending list in the inbox)."""
        return sum(int(db.xpending(keys.inbox(s), keys.inbox_group())["pending"])
                   for s in range(SHARDS) if db.exists(keys.inbox(s)))

    async def kill_holding_jobs(checkpoint: int) -> int:
        """Freeze the worker where it is, look, and kill it (the Dramatiq parent and its
        workers at once) only once it is past `checkpoint` and holds jobs it has read
        and not completed; else let it run a moment and look again."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            worker.pause()
            held = taken_not_done()
            if appended() >= checkpoint and held:
                await asyncio.to_thread(worker.kill)
                return held
            worker.resume()
            await asyncio.sleep(0.005)  # let it work between two looks
        raise AssertionError(f"never past {checkpoint} with jobs in hand ({appended()})")

    await asyncio.to_thread(worker.stop)  # the whole batch is queued before work starts
    await asyncio.to_thread(enqueue_all)
    worker.start()
    kills, stranded = 0, []
    for checkpoint in (200, 500, 800):
        stranded.append(await kill_holding_jobs(checkpoint))
        kills += 1
        worker.start()
    assert appended() < total, "the worker finished before the last kill"
    last_kill = time.monotonic()
    await eventually(lambda: _queue_drained(db), timeout=LEASE_TTL_MS / 1000 + 40,
                     interval=0.2, what="every job done, the stranded ones redone")
    drained = time.monotonic() - last_kill
    lost = duplicated = reordered = 0
    for room in rooms:
        got = _message_ids(db, room)
        duplicated += len(got) - len(set(got))
        lost += len(set(keys_by_room[room]) - set(got))
        reordered += got != keys_by_room[room]
        assert len(shard_ids_of_room(db, room)) == len(got)
    print(f"\nworker SIGKILLed {kills} times; jobs taken and unfinished at each kill: "
          f"{stranded}; all {total} done {drained:.1f} s after the last kill; "
          f"lost {lost}, duplicated {duplicated}, rooms out of queue order {reordered}")
    # (a batch may finish between the look and the kill: not every kill strands one)
    assert sum(stranded) > 0, "no kill stranded a fetched job: the test proved nothing"
    assert (lost, duplicated, reordered) == (0, 0, 0)
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


async def test_jobs_of_a_read_whose_reply_was_lost_are_still_applied(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    """Redis ran a worker's read (the job is in the worker's pending list) and the reply
    never reached it. Made exactly: the worker is paused, its blocked reads are ended
    empty (CLIENT UNBLOCK: it will see an idle read, not an error), and the job is read
    in its name (the consumer it holds the shard's lease as), the reply thrown away."""
    assert worker.process is not None
    room = f"project:{unique_id()}"
    shard = shard_of(room, SHARDS)
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)

    def holder() -> str:
        value = db.get(keys.inbox_lease(shard))
        return value.decode().rsplit(":", 1)[0] if value else ""

    await eventually(holder, timeout=15, what="the worker holds the room's shard")
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        for entry in db.client_list():
            if entry["cmd"] == "xreadgroup" and "b" in entry["flags"]:
                db.execute_command("CLIENT", "UNBLOCK", entry["id"])
        backend.message(room, message_id="lost-reply", content="x", user_id=1)
        taken = db.xreadgroup(keys.inbox_group(), holder(), {keys.inbox(shard): ">"},
                              count=10)
        assert taken, "nothing taken"
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    lost_at = time.monotonic()
    got = await client.wait_for(lambda f: f.get("room") == room and f["type"] == "message",
                                timeout=STRAY_SWEEP_SECONDS * 2 + 10)
    took = time.monotonic() - lost_at
    print(f"\njob of a read whose reply was lost applied after {took:.1f} s "
          f"(idle workers look for such jobs every {STRAY_SWEEP_SECONDS:.0f} s)")
    assert got["data"]["message_id"] == "lost-reply"
    await eventually(lambda: _queue_drained(db), timeout=10, what="nothing left queued")
    await client.close()



async def test_a_read_that_redis_refuses_never_ends_the_workers_consumer(
        stack: Stack, worker: WorkerGroup, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    """The inbox is replaced under the worker by a key of another type (an operator's
    mistake; Redis 7 likewise ends a blocked read with an error when its key is
    deleted, by FLUSHALL or an eviction). The read is refused. The worker must go on
    consuming once the key is back, never stop while its heartbeat still counts it
    as alive: other workers leave it its share of the shards."""
    room = f"project:{unique_id()}"
    shard = shard_of(room, SHARDS)
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)
    await eventually(lambda: db.get(keys.inbox_lease(shard)), timeout=15,
                     what="the worker holding the room's shard")
    logged_before = len(worker.log_tail(100_000))
    with db.pipeline() as pipe:  # atomically: no enqueue lands on a missing inbox
        pipe.delete(keys.inbox(shard))
        pipe.set(keys.inbox(shard), "not a stream")
        pipe.execute()
    await eventually(lambda: "WRONGTYPE" in worker.log_tail(100_000)[logged_before:],
                     timeout=15, what="the worker's read refused")
    db.delete(keys.inbox(shard))
    backend.message(room, message_id="after-refusal", content="x", user_id=1)
    got = await client.wait_for(lambda f: f.get("room") == room and f["type"] == "message",
                                timeout=15)
    assert got["data"]["message_id"] == "after-refusal"
    assert "Exception in thread" not in worker.log_tail(100_000)
    await client.close()
