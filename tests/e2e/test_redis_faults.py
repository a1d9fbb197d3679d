"""Redis faults under a running stack (SPEC §4, §8): a crash with AOF
`appendfsync always` loses no acknowledged publish; a restart without data makes
gateways recreate their groups and send `resync_required`; `/readyz` is 503
while Redis is down; a dropped connection is retried and nothing is lost."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from roomcast.cli.embedded_redis import EmbeddedRedis
from shared import keys
from shared.engines.jobs import from_fields
from shared.engines.roles import EventJob
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.delivery import (
    SHARDS,
    connect,
    direct_writer,
    eventually,
    history_ids,
    id_key,
    publish_direct,
    stack_on,
    wait_sync,
)
from tests.support.jobs import jobs_outstanding
from tests.support.redis_fixture import RedisUnderTest, running_redis
from tests.support.stack import JWT_SECRET, Gateway, Stack
from tests.support.ws import WsClient
from workers.api import Backend


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisUnderTest]:
    with running_redis(appendonly=True, fsync="always", prefer_process=True) as server:
        yield server


@pytest.fixture(scope="module")
def server(redis_server: RedisUnderTest) -> EmbeddedRedis:
    assert isinstance(redis_server, EmbeddedRedis)
    return redis_server


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=2, ACCESS_MODE="open") as s:
        yield s


@pytest.fixture
def backend(stack: Stack) -> Iterator[Backend]:
    b = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                      STREAM_SHARDS=SHARDS))
    yield b
    b.close()


# -- what Redis says ---------------------------------------------------------------------
def history_messages(db: redis.Redis, room: str) -> list[str]:
    """message_id of every `message` in the room's history (the tests use the key)."""
    out = []
    for _, fields in db.xrange(keys.room_history(room, SHARDS)):
        event = json.loads(fields[b"e"])
        if event["type"] == "message":
            out.append(event["data"]["message_id"])
    return out


def _join_queue(db: redis.Redis, stack: Stack) -> None:
    """Every job done; on a timeout, say where the unfinished ones are."""
    try:
        wait_sync(lambda: jobs_outstanding(db) == 0, timeout=60, interval=0.1,
                  what="every job done")
    except AssertionError:
        leases = {s: db.get(keys.inbox_lease(s)) for s in range(SHARDS)}
        raise AssertionError(f"jobs unfinished: {jobs_outstanding(db)} queued, leases "
                             f"{leases}, workers {db.zrange(keys.workers(), 0, -1)}\n"
                             f"{stack.workdir}") from None


def unfinished_keys(db: redis.Redis) -> set[str]:
    """Event keys of the jobs still in the queue (queued, or taken and not completed)."""
    found = set()
    for shard in range(SHARDS):
        for _, fields in db.xrange(keys.inbox(shard)):
            job = from_fields(fields)
            if isinstance(job, EventJob):
                found.update(event.key for event in job.events)
    return found


class Enqueuer(threading.Thread):
    """A backend job enqueueing `message` events at a steady pace, keyed by message_id."""

    def __init__(self, backend: Backend, rooms: list[str], count: int,
                 pause: float = 0.004) -> None:
        super().__init__(daemon=True)
        self.backend, self.rooms, self.count, self.pause = backend, rooms, count, pause
        self.enqueued: list[str] = []
        self.failed: list[str] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            for n in range(self.count):
                key = uuid.uuid4().hex
                room = self.rooms[n % len(self.rooms)]
                try:
                    self.backend.message(room, message_id=key, content=f"n{n}", user_id=1,
                                         key=key)
                    self.enqueued.append(key)
                except RedisConnectionError:
                    self.failed.append(key)  # not acknowledged to the backend
                time.sleep(self.pause)  # publishing pace, not a synchronisation
        except BaseException as exc:
            self.errors.append(exc)

    def finish(self) -> list[str]:
        self.join(120)
        assert not self.is_alive() and not self.errors, self.errors
        return self.enqueued


async def _members(stack: Stack, rooms: list[str],
                   unique_id: Callable[[], int]) -> list[tuple[WsClient, dict[str, str]]]:
    """One client per gateway in every room, with its join point per room."""
    out = []
    for gw in stack.gateways:
        client = await connect(gw.url, unique_id())
        points = {room: (await client.join(room))["data"]["last_id"] for room in rooms}
        out.append((client, points))
    return out


def _assert_complete(db: redis.Redis, member: tuple[WsClient, dict[str, str]],
                     rooms: list[str]) -> None:
    client, points = member
    for room in rooms:
        expected = [i for i in history_ids(db, room) if id_key(i) > id_key(points[room])]
        got = [f["id"] for f in client.events(room)]
        assert got == expected, f"{room}: {len(got)} received, {len(expected)} expected"


async def _wait_complete(db: redis.Redis, members: list[tuple[WsClient, dict[str, str]]],
                         rooms: list[str], timeout: float = 20) -> None:
    for client, points in members:
        for room in rooms:
            expected = [i for i in history_ids(db, room)
                        if id_key(i) > id_key(points[room])]
            await client.wait_events(room, len(expected), timeout=timeout)
        _assert_complete(db, (client, points), rooms)


async def _time_until_ready(gateways: list[Gateway], since: float,
                            timeout: float = 15) -> dict[int, float]:
    ready: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(ready) < len(gateways):
        for gw in gateways:
            if gw.port not in ready and await asyncio.to_thread(gw.status, "/readyz") == 200:
                ready[gw.port] = time.monotonic() - since
        assert time.monotonic() < deadline, f"not ready again within {timeout} s: {ready}"
        await asyncio.sleep(0.05)  # poll interval
    return ready


async def _wait_not_ready(gateways: list[Gateway], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for gw in gateways:
        # in a thread: /readyz may take its 2 s Redis timeout, and the event loop must
        # keep answering the gateways' keepalive pings meanwhile
        while await asyncio.to_thread(gw.status, "/readyz") != 503:
            assert time.monotonic() < deadline, f"/readyz never 503 on {gw.port}"
            await asyncio.sleep(0.05)  # poll interval


# -- crash with AOF appendfsync always ---------------------------------------------------
async def test_redis_crash_with_aof_always_loses_no_acknowledged_publish(
        stack: Stack, server: EmbeddedRedis, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    rooms = [f"project:{unique_id()}", f"channel:{unique_id()}"]
    members = await _members(stack, rooms, unique_id)
    enqueuer = Enqueuer(backend, rooms, count=400)
    enqueuer.start()
    await eventually(lambda: sum(len(history_messages(db, r)) for r in rooms) >= 100,
                     what="100 events published before the crash")
    finished = set(enqueuer.enqueued) - unfinished_keys(db)  # acked by the worker

    killed = time.monotonic()
    await asyncio.to_thread(server.kill)
    await _wait_not_ready(stack.gateways)
    restarted = time.monotonic()  # redis-server is being started (AOF replayed) from here
    await asyncio.to_thread(server.start)
    after_restart = {k for r in rooms for k in history_messages(db, r)}
    lost = finished - after_restart
    assert not lost, f"{len(lost)} acknowledged publishes lost"
    held = max((id_key(i) for r in rooms for i in history_ids(db, r)), default=(0, 0))

    async def first_new_event(client: WsClient) -> float:
        """Seconds from the restart until an event appended after it reaches `client`."""
        await client.wait_for(lambda f: "id" in f and id_key(f["id"]) > held, timeout=20)
        return time.monotonic() - restarted

    ready, flowing = await asyncio.gather(
        _time_until_ready(stack.gateways, restarted),
        asyncio.gather(*(first_new_event(c) for c, _ in members)))
    print(f"\nRedis SIGKILL (down {restarted - killed:.2f} s) + restart (AOF always): "
          "/readyz back after " + ", ".join(f"{t:.2f} s" for t in ready.values())
          + ", new events at every client after "
          + ", ".join(f"{t:.2f} s" for t in flowing) + " from the start of redis-server")

    keys = await asyncio.to_thread(enqueuer.finish)
    await asyncio.to_thread(_join_queue, db, stack)
    published = [k for r in rooms for k in history_messages(db, r)]
    assert len(published) == len(set(published)), "a publish was appended twice"
    assert set(keys) <= set(published), f"{len(set(keys) - set(published))} jobs lost"
    print(f"acknowledged before the crash: {len(finished)}; enqueued: {len(keys)}; "
          f"enqueue failed while down: {len(enqueuer.failed)}")
    await _wait_complete(db, members, rooms)
    for client, _ in members:
        assert [f for f in client.frames if f["type"] == "resync_required"] == []
        await client.close()


async def test_dropped_redis_connections_are_retried_and_nothing_is_lost(
        stack: Stack, db: redis.Redis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    rooms = [f"task:{unique_id()}", f"project:{unique_id()}"]
    members = await _members(stack, rooms, unique_id)
    enqueuer = Enqueuer(backend, rooms, count=300)
    enqueuer.start()
    killed = 0
    for round_ in range(3):
        target = 60 * (round_ + 1)
        await eventually(lambda t=target: sum(  # type: ignore[misc]
            len(history_messages(db, r)) for r in rooms) >= t, timeout=20,
            what=f"{target} events published")
        killed += int(db.execute_command("CLIENT", "KILL", "TYPE", "normal"))
    keys = await asyncio.to_thread(enqueuer.finish)
    assert killed >= 3 * 4, f"only {killed} connections dropped"
    await asyncio.to_thread(_join_queue, db, stack)
    published = [k for r in rooms for k in history_messages(db, r)]
    assert len(published) == len(set(published))
    assert set(keys) <= set(published)
    await _wait_complete(db, members, rooms)
    for client, _ in members:
        assert [f for f in client.frames if f["type"] == "resync_required"] == []
        await client.close()


async def test_entries_read_by_a_connection_that_died_are_still_delivered(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    """The narrow case of a dropped connection: Redis handed entries to the gateway's
    consumer (they are in its pending list) but the reply died with the connection.
    Made exactly: the gateway is paused, the entries are read in its name, its
    connections are killed, and it resumes."""
    gw = stack.gateways[0]
    room = f"channel:{unique_id()}"
    client = await connect(gw.url, unique_id())
    point = (await client.join(room))["data"]["last_id"]
    await client.wait_events(room, 1, type_="user_joined")  # appended before the pause
    stream = keys.shard_stream(shard_of(room, SHARDS))
    group = keys.gateway_group(gw.instance_id)
    writer, wdb = direct_writer(stack.redis_url)
    assert gw.process is not None
    try:
        gw.process.send_signal(signal.SIGSTOP)
        try:
            publish_direct(writer, room, 5)
            taken = db.xreadgroup(group, gw.instance_id, {stream: ">"}, count=10_000)
            assert taken, "nothing to take"
            db.execute_command("CLIENT", "KILL", "TYPE", "normal")
        finally:
            gw.process.send_signal(signal.SIGCONT)
        publish_direct(writer, room, 2, start=5)
    finally:
        wdb.close()
    expected = [i for i in history_ids(db, room) if id_key(i) > id_key(point)]
    try:
        got = await client.wait_events(room, len(expected), timeout=15)
    except TimeoutError:
        raise AssertionError(f"got {[f['id'] for f in client.events(room)]}, "
                             f"expected {expected}\n{gw.log_tail()}") from None
    assert [f["id"] for f in got] == expected
    assert [f for f in client.frames if f["type"] == "resync_required"] == []
    await eventually(lambda: db.xpending(stream, group)["pending"] == 0,
                     what="the pending list of the gateway emptied")
    await client.close()



# -- SIGTERM while Redis is down ------------------------------------------------------------
DRAINED_CLIENTS = 60


async def test_sigterm_during_a_redis_outage_drains_quietly(
        stack: Stack, server: EmbeddedRedis, unique_id: Callable[[], int]) -> None:
    """A redeploy while Redis is away: every client still gets 1012 and the gateway
    exits within SPEC's 10 s. The releases it cannot make in Redis (presence, slots)
    expire there on their own, so they must not hold the drain up or fill the log
    with a traceback per connection."""
    draining = stack.add_gateway()
    room = f"project:{unique_id()}"
    clients, users = [], [unique_id() for _ in range(DRAINED_CLIENTS)]
    for user in users:
        client = await connect(draining.url, user)
        await client.join(room)
        clients.append(client)
    # the last join's user_joined is appended (a join replies first): no command is
    # left in flight when Redis goes
    await clients[0].wait_for(lambda f: f["type"] == "user_joined"
                              and f["data"]["user_id"] == users[-1])
    try:
        await asyncio.to_thread(server.kill)
        started = time.monotonic()
        returncode = await asyncio.to_thread(draining.terminate, 15)
        took = time.monotonic() - started
        codes = [await c.wait_closed() for c in clients]
    finally:
        stack.gateways.remove(draining)
        await asyncio.to_thread(server.restart)
    log = draining.log_text()
    print(f"\nSIGTERM with Redis down: exit {returncode} after {took:.2f} s, "
          f"{log.count('Traceback')} tracebacks in the log")
    assert codes == [1012] * DRAINED_CLIENTS
    assert returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert took < 10
    assert "Traceback" not in log


# -- restart without data (last: it wipes the module's Redis) ----------------------------
async def test_redis_restart_without_data_sends_resync_and_events_flow_again(
        stack: Stack, server: EmbeddedRedis, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    rooms = [f"project:{unique_id()}", f"channel:{unique_id()}", f"task:{unique_id()}"]
    members = await _members(stack, rooms, unique_id)
    for room in rooms:
        backend.message(room, message_id="before", content="before", user_id=1)
    for client, _ in members:
        for room in rooms:
            await client.wait_events(room, 1, type_="message")

    await asyncio.to_thread(server.kill)
    await _wait_not_ready(stack.gateways)
    restarted = time.monotonic()  # an empty redis-server is being started from here
    await asyncio.to_thread(server.restart, wipe=True)
    resynced: dict[tuple[int, str], float] = {}

    async def resync_of(client: WsClient, index: int, room: str) -> None:
        await client.wait_for(lambda f: f["type"] == "resync_required"
                              and f.get("room") == room, timeout=15)
        resynced[(index, room)] = time.monotonic() - restarted

    await asyncio.gather(*(resync_of(c, i, r) for i, (c, _) in enumerate(members)
                           for r in rooms))
    ready = await _time_until_ready(stack.gateways, restarted)

    marker: dict[str, Any] = {}
    flowing: dict[tuple[int, str], float] = {}

    def publish_after() -> None:
        for room in rooms:
            marker[room] = backend.message(room, message_id="after", content="after",
                                           user_id=1)

    await asyncio.to_thread(publish_after)

    async def arrival(client: WsClient, index: int, room: str) -> None:
        await client.wait_for(lambda f: f.get("room") == room and f["type"] == "message"
                              and f["data"]["message_id"] == "after", timeout=15)
        flowing[(index, room)] = time.monotonic() - restarted

    await asyncio.gather(*(arrival(c, i, r) for i, (c, _) in enumerate(members)
                           for r in rooms))
    print(f"\nRedis restart without data: resync_required to every member after "
          f"{max(resynced.values()):.2f} s, /readyz back after "
          + ", ".join(f"{t:.2f} s" for t in ready.values())
          + f", new events delivered after {max(flowing.values()):.2f} s")
    assert max(resynced.values()) < 5
    assert max(flowing.values()) < 10
    for client, _ in members:
        before = [f for f in client.events() if f["data"].get("message_id") == "before"]
        after = [f for f in client.events() if f["data"].get("message_id") == "after"]
        assert len(before) == len(after) == len(rooms)  # nothing twice
        await client.close()

