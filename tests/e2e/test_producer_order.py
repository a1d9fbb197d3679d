"""Producer order (SPEC §4): events enqueued for one room by one producer are
appended, and so delivered, in the order enqueued, whatever the number of worker
processes and threads.

Randomised but seeded: several producer threads publish into several rooms with
random interleavings (single events, batches, pauses), while two worker processes
of four threads each consume the queue; one WebSocket connection also sends
chat messages into two of the rooms. Every client must see, for each (producer,
room), the producer's sequence numbers strictly increasing, and none missing."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
import redis

from shared import keys
from shared.settings import Settings
from tests.support.delivery import SHARDS, connect, stack_on, wait_sync
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Stack
from tests.support.ws import WsClient
from workers.api import Backend

PRODUCERS = 4
ROOMS = 6
EVENTS_PER_PRODUCER = 300
CHAT_MESSAGES = 60
SEED = 20261129


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    # a chatty connection: its sends go past the default rate limit's burst
    with stack_on(redis_server.url, gateways=2, worker=False, ACCESS_MODE="open",
                  WS_RATE_LIMIT="1000", WS_RATE_BURST="1000") as s:
        s.start_worker(threads=4, processes=2)
        db = redis.Redis.from_url(s.redis_url)
        wait_sync(lambda: db.zcount(keys.workers(), time.time(), "+inf") == 2, timeout=60,
                  what="both worker processes consuming")
        db.close()
        yield s


def _produce(backend: Backend, producer: int, rooms: list[str], rng: random.Random,
             sent: dict[tuple[int, str], int]) -> None:
    seq = defaultdict(int)
    remaining = EVENTS_PER_PRODUCER
    while remaining:
        size = min(remaining, rng.choice([1, 1, 1, 2, 5, 17]))
        events = []
        for _ in range(size):
            room = rng.choice(rooms)
            events.append({"type": "project.updated", "room": room,
                           "data": {"project_id": 1, "changes": {},
                                    "producer": producer, "seq": seq[room]}})
            seq[room] += 1
        if size == 1:
            backend.publish(events[0])
        else:
            backend.publish_many(events)
        remaining -= size
        if rng.random() < 0.1:
            time.sleep(rng.uniform(0, 0.01))  # the producer's own pace, not a sync
    for room, count in seq.items():
        sent[(producer, room)] = count


def _check(client: WsClient, rooms: list[str], sent: dict[tuple[int, str], int]) -> None:
    seen: dict[tuple[int, str], list[int]] = defaultdict(list)
    for frame in client.events():
        if frame["type"] == "project.updated":
            seen[(frame["data"]["producer"], frame["room"])].append(frame["data"]["seq"])
    for key, count in sent.items():
        assert seen[key] == list(range(count)), f"producer {key[0]} in {key[1]}"


async def test_each_producers_events_arrive_in_enqueue_order(
        stack: Stack, unique_id: Callable[[], int]) -> None:
    rooms = [f"project:{unique_id()}" for _ in range(ROOMS)]
    clients = [await connect(gw.url, unique_id()) for gw in stack.gateways]
    chatter = await connect(stack.gateways[0].url, unique_id())
    for client in (*clients, chatter):
        for room in rooms:
            await client.join(room)
    backend = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                               STREAM_SHARDS=SHARDS))
    sent: dict[tuple[int, str], int] = {}
    rng = random.Random(SEED)
    threads = [threading.Thread(target=_produce, args=(backend, p, rooms,
                                                       random.Random(rng.random()), sent))
               for p in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    # one connection's send_message stream is a producer too (no ack awaited between)
    for n in range(CHAT_MESSAGES):
        await chatter.send({"type": "send_message", "room": rooms[n % 2],
                            "data": {"content": f"{n}"}, "ref": n})
    await asyncio.to_thread(lambda: [t.join(60) for t in threads])
    total = sum(sent.values())
    for client in clients:
        await client.wait_events_total(total + CHAT_MESSAGES, timeout=60,
                                       match=lambda f: f["type"] in ("project.updated",
                                                                     "message"))
        _check(client, rooms, sent)
        for k, room in enumerate(rooms[:2]):  # per room: the order they were sent in
            chat = [int(f["data"]["content"]) for f in client.events(room, "message")]
            assert chat == list(range(k, CHAT_MESSAGES, 2)), "a connection's messages reordered"
    backend.close()
    for client in (*clients, chatter):
        await client.close()
