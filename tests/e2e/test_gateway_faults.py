"""Gateway faults on real Redis and real processes (SPEC §4, §7): SIGKILL while
events flow, restart with the same instance id, SIGTERM drain, connection slots
of a crashed gateway, the pending list, and the janitor of abandoned groups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.delivery import (
    SHARDS,
    BackgroundPublisher,
    connect,
    direct_writer,
    eventually,
    group_names,
    history_ids,
    id_key,
    publish_direct,
    stack_on,
)
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Gateway, Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient

HEARTBEAT = 1.0  # WS_HEARTBEAT_INTERVAL of tests.support.stack.base_env
MAX_CONNECTIONS = 5


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=2, ACCESS_MODE="open",
                  WS_MAX_CONNECTIONS_PER_USER=str(MAX_CONNECTIONS),
                  WS_HEARTBEAT_INTERVAL=str(HEARTBEAT)) as s:
        yield s


def _group(gw: Gateway) -> str:
    return keys.gateway_group(gw.instance_id)


def _ids(client: WsClient, room: str) -> list[str]:
    return [f["id"] for f in client.events(room)]


async def test_sigkilled_gateway_loses_nothing_for_clients_that_resume(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    victim = stack.add_gateway()  # killed and restarted: its own instance id and port
    survivor = stack.gateways[0]
    rooms = [f"project:{unique_id()}", f"channel:{unique_id()}"]
    users = [unique_id() for _ in range(3)]
    writer, wdb = direct_writer(stack.redis_url)
    publishers = [BackgroundPublisher(writer, room, limit=100_000, pause=0.004)
                  for room in rooms]
    try:
        # clients on the victim; user i in room i % 2
        clients = [await connect(victim.url, u) for u in users]
        for i, client in enumerate(clients):
            await client.join(rooms[i % 2])
        observer = await connect(survivor.url, unique_id())
        observed = {room: (await observer.join(room))["data"]["last_id"] for room in rooms}
        for publisher in publishers:
            publisher.start()
        for i, client in enumerate(clients):
            await client.wait_events(rooms[i % 2], 20)

        await asyncio.to_thread(victim.kill)
        for client in clients:
            assert await client.wait_closed() == 1006  # no close frame: the process died
        resumed: list[WsClient] = []
        for i, client in enumerate(clients):
            room = rooms[i % 2]
            again = await connect(survivor.url, users[i])
            reply = await again.join(room, since=_ids(client, room)[-1])
            assert reply["data"]["recovered"] is True, reply
            resumed.append(again)
            join_point = id_key(reply["data"]["last_id"])
            # live events keep coming after the replay
            await eventually(lambda c=again, r=room, p=join_point: sum(  # type: ignore[misc]
                id_key(i) > p for i in _ids(c, r)) >= 20, what="live events after resume")
        for publisher in publishers:
            publisher.stop()

        for i, (client, again) in enumerate(zip(clients, resumed, strict=True)):
            room = rooms[i % 2]
            history = history_ids(db, room)
            first = _ids(client, room)[0]
            expected = [h for h in history if id_key(h) >= id_key(first)]
            await again.wait_events(room, len(expected) - len(_ids(client, room)))
            assert _ids(client, room) + _ids(again, room) == expected  # no gap, no dup
        for room in rooms:
            expected = [h for h in history_ids(db, room)
                        if id_key(h) > id_key(observed[room])]
            await observer.wait_events(room, len(expected))
            assert _ids(observer, room) == expected

        # restarted with the same instance id: the same group, and it serves again
        before = {s: group_names(db, s) for s in range(SHARDS)}
        await asyncio.to_thread(victim.start)
        for shard in range(SHARDS):
            names = group_names(db, shard)
            assert names.count(_group(victim)) == 1, names
            assert sorted(names) == sorted(before[shard]), (names, before[shard])
            consumers = db.xinfo_consumers(keys.shard_stream(shard), _group(victim))
            assert [c["name"].decode() for c in consumers] == [victim.instance_id]
        # what the killed run had read but not acknowledged is settled by the new run
        await eventually(lambda: all(
            db.xpending(keys.shard_stream(s), _group(victim))["pending"] <= 2
            and not db.xpending_range(keys.shard_stream(s), _group(victim), "-", "+", 10,
                                      idle=2000)
            for s in range(SHARDS)), what="the restarted gateway's pending lists settle")
        back = await connect(victim.url, users[0])
        await back.join(rooms[0])
        publish_direct(writer, rooms[0], 3)
        got = await back.wait_events(rooms[0], 3)
        assert [g["id"] for g in got] == history_ids(db, rooms[0])[-3:]
        for client in [*resumed, observer, back]:
            await client.close()
    finally:
        for publisher in publishers:
            if publisher.is_alive():
                publisher.stop()
        wdb.close()


async def test_sigterm_drains_with_1012_and_destroys_its_groups(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    draining = stack.add_gateway()
    room = f"task:{unique_id()}"
    clients = [await connect(draining.url, unique_id()) for _ in range(3)]
    for client in clients:
        await client.join(room)
    assert all(_group(draining) in group_names(db, s) for s in range(SHARDS))

    started = time.monotonic()
    returncode = await asyncio.to_thread(draining.terminate, 15)
    took = time.monotonic() - started
    print(f"\nSIGTERM drain: exit {returncode} after {took:.2f} s")
    assert took < 10
    for client in clients:
        assert await client.wait_closed() == 1012
        assert client.close_code == 1012
    for shard in range(SHARDS):
        assert _group(draining) not in group_names(db, shard)
    assert draining.status("/healthz") == 0  # nothing listens any more


async def test_slots_of_a_sigkilled_gateway_expire_within_three_heartbeats(
        stack: Stack, unique_id: Callable[[], int]) -> None:
    doomed = stack.add_gateway()
    other = stack.gateways[0]
    user = unique_id()
    token = make_token(user, "slots")

    held = [await connect(doomed.url, user) for _ in range(MAX_CONNECTIONS)]
    sixth = await WsClient.open(other.url, token)  # spread over two gateways
    assert await sixth.wait_closed() == 4429

    await asyncio.to_thread(doomed.kill)
    killed_at = time.monotonic()
    for client in held:
        await client.wait_closed()
    again: list[WsClient] = []
    while len(again) < MAX_CONNECTIONS:
        client = await WsClient.open(other.url, token)
        try:
            await client.wait_for(lambda f: f["type"] == "connected", timeout=5)
            again.append(client)
        except ConnectionError:
            assert client.close_code == 4429
            assert time.monotonic() - killed_at < 3 * HEARTBEAT, "slots did not free in time"
            await asyncio.sleep(0.05)  # poll interval
    freed = time.monotonic() - killed_at
    print(f"\nslots of the SIGKILLed gateway free after {freed:.2f} s "
          f"(limit {3 * HEARTBEAT:.1f} s)")
    assert freed < 3 * HEARTBEAT
    over = await WsClient.open(other.url, token)
    assert await over.wait_closed() == 4429
    for client in again:
        await client.close()


async def test_pending_lists_stay_near_empty_after_a_burst(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    rooms = [f"project:{unique_id()}" for _ in range(8)]
    members = [await connect(stack.gateways[i % 2].url, unique_id()) for i in range(4)]
    for i, member in enumerate(members):
        for room in rooms[i::4]:
            await member.join(room)
    writer, wdb = direct_writer(stack.redis_url)
    last: dict[int, str] = {}

    def burst() -> None:
        for n in range(250):
            for room in rooms:
                last[shard_of(room, SHARDS)] = publish_direct(writer, room, 1, start=n)[0]

    try:
        await asyncio.to_thread(burst)
    finally:
        wdb.close()
    live = [gw for gw in stack.gateways if gw.process is not None and gw.process.poll() is None]

    def caught_up() -> bool:
        for gw in live:
            for shard, newest in last.items():
                info = {g["name"].decode(): g for g in db.xinfo_groups(keys.shard_stream(shard))}
                done = info[_group(gw)]["last-delivered-id"].decode()
                if id_key(done) < id_key(newest):
                    return False
        return True

    await eventually(caught_up, timeout=20, what="every gateway read the burst")
    for gw in live:
        for shard in range(SHARDS):
            stream = keys.shard_stream(shard)
            summary = db.xpending(stream, _group(gw))
            assert summary["pending"] <= 2, (gw.instance_id, shard, summary)
            stale = db.xpending_range(stream, _group(gw), "-", "+", 10, idle=1000)
            assert stale == [], (gw.instance_id, shard, stale)
    for i, member in enumerate(members):
        for room in rooms[i::4]:
            await member.wait_events(room, 250, type_="message")
        await member.close()


async def test_janitor_removes_groups_idle_past_the_threshold(
        stack: Stack, db: redis.Redis) -> None:
    """The Redis event log's janitor run for real against the stack's Redis. Redis cannot
    fake a consumer's idle time, so it runs in-process with a small GATEWAY_JANITOR_IDLE
    and a consumer really idles past it."""
    threshold_ms = 2500  # above a live gateway's idle (its reads block for 1 s at most)
    stream = keys.shard_stream(0)
    made = ["gw:ghost", "gw:fresh", "gw:abandoned", "workers"]
    for group in made:
        db.xgroup_create(stream, group, id="$", mkstream=True)
    db.xgroup_createconsumer(stream, "gw:ghost", "ghost-1")
    db.xgroup_createconsumer(stream, "workers", "w-1")
    settings = Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                        STREAM_SHARDS=SHARDS, GATEWAY_JANITOR_IDLE=threshold_ms / 1000)
    engine = RedisEngine(settings)
    try:
        def ghost_idle() -> int:
            consumers = db.xinfo_consumers(stream, "gw:ghost")
            return int(consumers[0]["idle"])

        await eventually(lambda: ghost_idle() > threshold_ms + 200, timeout=10,
                         what="the ghost consumer idles past the threshold")
        db.xreadgroup("gw:fresh", "fresh-1", {stream: ">"}, count=1)  # active just now
        # a gateway starting right now: a group with no consumer yet, at the stream's tail
        db.xgroup_create(stream, "gw:starting", id="$")
        made.append("gw:starting")
        await engine.event_log.janitor("janitor-test", settings.GATEWAY_JANITOR_IDLE)
        names = group_names(db, 0)
        # gw:abandoned has no consumer and was last given an entry > threshold ago
        assert "gw:ghost" not in names and "gw:abandoned" not in names
        for kept in ("gw:fresh", "gw:starting", "workers"):
            assert kept in names, (kept, names)
        assert all(_group(gw) in names for gw in stack.gateways
                   if gw.process is not None and gw.process.poll() is None)
    finally:
        for group in made:
            if group in group_names(db, 0):
                db.xgroup_destroy(stream, group)
        await engine.aclose()


async def test_a_malformed_shard_entry_does_not_stop_the_gateway(
        stack: Stack, db: redis.Redis, unique_id: Callable[[], int]) -> None:
    """Whatever lands in a shard stream (a foreign writer, a half-migrated format),
    the reader skips it and keeps serving every room of that shard."""
    room = f"project:{unique_id()}"
    client = await connect(stack.gateways[0].url, unique_id())
    point = (await client.join(room))["data"]["last_id"]
    stream = keys.shard_stream(shard_of(room, SHARDS))
    db.xadd(stream, {"unexpected": "entry"})
    db.xadd(stream, {"r": room, "e": b"not json", "q": b"x"})
    writer, wdb = direct_writer(stack.redis_url)
    try:
        publish_direct(writer, room, 3)
    finally:
        wdb.close()
    expected = [i for i in history_ids(db, room) if id_key(i) > id_key(point)]
    got = await client.wait_events(room, len(expected))
    assert [f["id"] for f in got] == expected
    for gw in stack.gateways:
        if gw.process is not None and gw.process.poll() is None:
            # the ack follows the fan-out of its batch: poll, with a deadline
            await eventually(lambda gw=gw: db.xpending(stream, _group(gw))["pending"] <= 2,
                             what=f"{gw.instance_id} acknowledges the skipped entries")
    await client.close()
