"""The role contract (shared/engines/roles.py), one suite over both engines.

Each test takes the `engine` fixture, parametrized over a Redis engine on the
tests' own Redis and a memory engine, and checks a guarantee a role states: the
same assertions, whatever is behind the role."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from shared.codec import encode_event
from shared.engines import Engine
from shared.engines.memory.engine import MemoryEngine
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import (
    AccessJob,
    EventJob,
    LogEntry,
    PendingEvent,
    QueueFull,
)
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.redis_fixture import RedisUnderTest

_ids = itertools.count(1)
SHARDS = 4


def _settings(redis_url: str, **overrides: object) -> Settings:
    return Settings(REDIS_URL=redis_url, JWT_SECRET="x" * 40, STREAM_SHARDS=SHARDS,
                    ACCESS_MODE="acl", **overrides)  # type: ignore[arg-type]


@pytest.fixture(params=["redis", "memory"])
async def engine(request: pytest.FixtureRequest, redis_server: RedisUnderTest
                 ) -> AsyncIterator[Engine]:
    settings = _settings(redis_server.url, ROOM_HISTORY_SIZE=5, PUBLISH_QUEUE_MAX=3,
                         PUBLISH_QUEUE_TIMEOUT=0.1)
    made: Engine = RedisEngine(settings) if request.param == "redis" else MemoryEngine(settings)
    yield made
    await made.aclose()
    made.close()


def room(kind: str = "project") -> str:
    return f"{kind}:{900_000 + next(_ids)}"


def event(room_: str, n: int, key: str | None = None) -> PendingEvent:
    return PendingEvent(key or f"k{next(_ids)}", room_, encode_event(
        "task.deleted", room_, {"task_id": n, "project_id": 1}, "t"))


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


# -- EventLog ----------------------------------------------------------------------------
async def test_append_keeps_call_order_and_dedupes_by_key(engine: Engine) -> None:
    r = room()
    first = await engine.event_log.append([event(r, 1, "a"), event(r, 2, "b")])
    again = await engine.event_log.append([event(r, 1, "a"), event(r, 3, "c")])
    assert [x.appended for x in first + again] == [True, True, False, True]
    assert again[0].id == first[0].id  # the first append's id comes back
    ids = [id_key(x.id) for x in (first[0], first[1], again[1])]
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_the_writer_and_the_log_append_to_the_same_room(engine: Engine) -> None:
    r = room()
    (from_worker,) = await asyncio.to_thread(engine.writer.append, [event(r, 1, "w")])
    (from_gateway,) = await engine.event_log.append([event(r, 1, "w")])
    assert (from_worker.appended, from_gateway.appended) == (True, False)
    assert from_gateway.id == from_worker.id


class Collector:
    """A LogSink that records what the reader hands it."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, LogEntry]] = []
        self.gaps: list[int] = []
        self.flushes = 0
        self.arrived = asyncio.Event()

    def on_entry(self, shard: int, entry: LogEntry) -> None:
        self.entries.append((shard, entry))
        self.arrived.set()

    async def on_gap(self, shard: int) -> None:
        self.gaps.append(shard)

    def on_flush(self) -> None:
        self.flushes += 1

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


async def test_a_reader_sees_every_entry_after_its_start_in_log_order(engine: Engine) -> None:
    sink = Collector()
    reader = engine.event_log.reader(f"contract-{next(_ids)}", sink)
    r = room()
    await engine.event_log.append([event(r, 0)])  # before the reader's start: not seen
    await reader.start()
    running = asyncio.create_task(reader.run())
    try:
        appended = await engine.event_log.append([event(r, n) for n in range(1, 6)])
        shard = shard_of(r, SHARDS)
        await engine.event_log.append_control(shard, b'{"type":"_heartbeat","gw":"x"}',
                                              "_heartbeat")
        await sink.until(lambda: sum(1 for _, e in sink.entries if e.is_control) >= 1)
        rooms_entries = [e for _, e in sink.entries if e.room == r]
        assert [e.id for e in rooms_entries] == [a.id for a in appended]
        seqs = [e.seq for s, e in sink.entries if s == shard]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # +1 per entry
        assert sink.flushes >= 1 and sink.gaps == [] and reader.healthy
    finally:
        await reader.close(forget=True)
        running.cancel()


# -- History -----------------------------------------------------------------------------
async def test_join_point_and_replay_in_pages(engine: Engine) -> None:
    r = room()
    empty = await engine.history.join_point(r, "0-0")
    assert (empty.last_id, empty.recovered, empty.replayed) == ("0-0", True, 0)
    ids = [a.id for a in await engine.event_log.append([event(r, n) for n in range(4)])]
    point = await engine.history.join_point(r, ids[0])
    assert (point.last_id, point.recovered, point.replayed) == (ids[-1], True, 3)
    assert point.replay is not None
    replayed = []
    while page := await point.replay.next_page():
        replayed += [f"{k[0]}-{k[1]}" for k, _ in page]
    assert replayed == ids[1:] and not point.replay.broken
    latest = await engine.history.join_point(r, ids[-1])
    assert (latest.recovered, latest.replayed, latest.replay) == (True, 0, None)


async def test_a_since_the_history_no_longer_holds_is_not_recovered(engine: Engine) -> None:
    r = room()  # ROOM_HISTORY_SIZE = 5 in these settings
    ids = [a.id for a in await engine.event_log.append([event(r, n) for n in range(8)])]
    trimmed = await engine.history.join_point(r, ids[0])
    assert (trimmed.recovered, trimmed.replayed) == (False, 0)
    whole = await engine.history.join_point(r, "0-0")
    assert whole.recovered is False  # something was trimmed since the start
    held = await engine.history.join_point(r, ids[3])  # the oldest held is ids[3]
    assert (held.recovered, held.replayed) == (True, 4)
    future = await engine.history.join_point(r, "99999999999999-0")
    assert future.recovered is False
    malformed = await engine.history.join_point(r, "invalid")
    assert malformed.recovered is False and malformed.last_id == ids[-1]


# -- Presence ----------------------------------------------------------------------------
async def test_slots_and_first_and_last_presence(engine: Engine) -> None:
    presence = engine.presence(f"contract-{next(_ids)}")
    user, r = 700_000 + next(_ids), room()
    assert await presence.claim_slot(user, "c1", 2)
    assert await presence.claim_slot(user, "c1", 2)  # the same connection: still its slot
    assert await presence.claim_slot(user, "c2", 2)
    assert not await presence.claim_slot(user, "c3", 2)
    await presence.release_slot(user, "c1")
    assert await presence.claim_slot(user, "c3", 2)
    assert await presence.enter(r, user, "ann", "c2") is True  # first connection in
    assert await presence.enter(r, user, "ann", "c3") is False
    assert [(m.user_id, m.username) for m in await presence.members(r)] == [(user, "ann")]
    assert await presence.leave(r, user, "c2") is False
    assert await presence.leave(r, user, "c3") is True  # last one out
    assert await presence.members(r) == []


async def test_size_counts_users_not_connections(engine: Engine) -> None:
    presence = engine.presence(f"contract-{next(_ids)}")
    r = room()
    ann, bo = 710_000 + next(_ids), 710_000 + next(_ids)
    assert await presence.size(r) == 0
    await presence.enter(r, ann, "ann", "c1")
    await presence.enter(r, ann, "ann", "c2")
    await presence.enter(r, bo, "bo", "c3")
    assert await presence.size(r) == 2
    await presence.leave(r, ann, "c1")
    assert await presence.size(r) == 2  # ann is still in through c2
    await presence.leave(r, ann, "c2")
    assert await presence.size(r) == 1


# -- Access ------------------------------------------------------------------------------
async def test_grants_links_and_revocations(engine: Engine) -> None:
    user, project, channel = 800_000 + next(_ids), room("project"), room("channel")
    store = engine.access_store
    assert not await engine.access.allowed(user, project)
    await asyncio.to_thread(store.grant, user, project)
    await asyncio.to_thread(store.link, channel, project)
    assert await engine.access.allowed(user, project)
    assert await engine.access.allowed(user, channel)  # through the project
    assert store.granted(user, channel)
    assert await engine.access.allowed(user, f"user:{user}")
    assert not await engine.access.allowed(user, f"user:{user + 1}")
    await asyncio.to_thread(store.revoke, user, project)
    assert not await engine.access.allowed(user, channel)
    with pytest.raises(ValueError):
        store.link(project, channel)


# -- JobQueue and JobSource ---------------------------------------------------------------
async def test_jobs_come_out_in_queue_order_and_complete_atomically(engine: Engine) -> None:
    r = room()
    shard = shard_of(r, SHARDS)
    events = [event(r, n) for n in range(3)]
    await engine.jobs.enqueue([EventJob((events[0],)), AccessJob("grant", r, 5),
                               EventJob(tuple(events[1:]))])
    source = engine.job_source(shard, "contract-worker")
    assert source.hold()
    fetched = await asyncio.to_thread(source.fetch, 10, 100)
    jobs = [f.job for f in fetched]
    assert [type(j).__name__ for j in jobs] == ["EventJob", "AccessJob", "EventJob"]
    assert isinstance(jobs[2], EventJob) and list(jobs[2].events) == events[1:]
    results = source.complete([f.ref for f in fetched], events)
    assert [x.appended for x in results] == [True, True, True]
    again = source.complete([f.ref for f in fetched], events)  # a redo appends nothing
    assert [x.appended for x in again] == [False, False, False]
    assert await asyncio.to_thread(source.fetch, 10, 50) == []
    source.release()


async def test_a_full_shard_pushes_back_and_keeps_what_it_queued(engine: Engine) -> None:
    r = room()  # PUBLISH_QUEUE_MAX = 3, PUBLISH_QUEUE_TIMEOUT = 0.1 s
    shard = shard_of(r, SHARDS)
    source = engine.job_source(shard, "contract-drain")
    assert source.hold()
    while fetched := await asyncio.to_thread(source.fetch, 100, 50):  # start empty
        source.complete([f.ref for f in fetched], [])
    for n in range(3):
        await engine.jobs.enqueue([EventJob((event(r, n),))])
    with pytest.raises(QueueFull):
        await engine.jobs.enqueue([EventJob((event(r, 9),))])
    with pytest.raises(QueueFull):
        await asyncio.to_thread(engine.sync_jobs.enqueue, [EventJob((event(r, 9),))])
    fetched = await asyncio.to_thread(source.fetch, 10, 100)
    assert len(fetched) == 3
    source.complete([f.ref for f in fetched], [])
    await engine.jobs.enqueue([EventJob((event(r, 10),))])  # room again
    source.release()


async def test_a_retried_presence_call_answers_the_same(engine: Engine) -> None:
    """A call redone after a lost reply must not turn a first entry into a second one
    (no user_joined) or a last exit into a middle one (no user_left)."""
    presence = engine.presence(f"contract-{next(_ids)}")
    user, r = 700_000 + next(_ids), room()
    assert await presence.enter(r, user, "bo", "c1") is True
    assert await presence.enter(r, user, "bo", "c1") is True  # the same call, again
    assert await presence.leave(r, user, "c1") is True
    assert await presence.leave(r, user, "c1") is True
