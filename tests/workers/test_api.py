"""The backend API and the append on a real Redis: what is checked at the call site,
what reaches the queue, and how an append dedupes and caps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared import keys
from shared.codec import encode_event
from shared.engines.jobs import from_fields
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import EventJob, PendingEvent
from shared.events import InvalidEvent, UnknownEventType
from shared.rooms import shard_of
from shared.settings import Settings
from workers.api import Backend


@pytest.fixture
def backend(settings: Settings) -> Iterator[Backend]:
    b = Backend(settings)
    yield b
    b.close()


def queued(db: redis.Redis, shards: int) -> int:
    return sum(int(db.xlen(keys.inbox(s))) for s in range(shards))


def queued_jobs(db: redis.Redis, room: str, shards: int) -> list[Any]:
    return [from_fields(f) for _, f in db.xrange(keys.inbox(shard_of(room, shards)))]


def test_same_key_appends_once_with_the_same_id(redis_client: redis.Redis,
                                                 settings: Settings) -> None:
    engine = RedisEngine(settings)
    room = "project:901"
    event = PendingEvent("k-901", room, encode_event("project.archived", room,
                                                     {"project_id": 901}, "t"))
    first, second = engine.writer.append([event, event])
    assert first.appended and not second.appended and first.id == second.id
    assert redis_client.xlen(keys.room_history(room, settings.STREAM_SHARDS)) == 1
    shard = keys.shard_stream(shard_of(room, settings.STREAM_SHARDS))
    assert sum(1 for e in redis_client.xrange(shard) if e[1][b"r"] == room.encode()) == 1
    engine.close()


def test_history_and_shard_share_ids_and_history_is_capped(redis_client: redis.Redis,
                                                           settings: Settings) -> None:
    small = settings.model_copy(update={"ROOM_HISTORY_SIZE": 3})
    engine = RedisEngine(small)
    room = "task:77"
    shards = small.STREAM_SHARDS
    events = [PendingEvent(f"cap-{i}", room, encode_event(
        "task.deleted", room, {"task_id": 77, "project_id": 1}, "t")) for i in range(5)]
    ids = [r.id for r in engine.writer.append(events)]
    history = [(i.decode(), int(f[b"n"])) for i, f in
               redis_client.xrange(keys.room_history(room, shards))]
    assert history == list(zip(ids[-3:], [3, 4, 5], strict=True))
    meta = redis_client.hgetall(keys.room_meta(room, shards))
    assert meta[b"first"].decode() == ids[0] and meta[b"last"].decode() == ids[-1]
    assert int(meta[b"n"]) == 5
    shard_ids = [i.decode() for i, f in
                 redis_client.xrange(keys.shard_stream(shard_of(room, shards)))
                 if f[b"r"] == room.encode()]
    assert shard_ids == ids
    engine.close()


@pytest.mark.parametrize(("bad", "error"), [
    ({"type": "task.created", "room": "project:1",
      "data": {"task_id": "7", "project_id": 1, "title": "x"}}, InvalidEvent),
    ({"type": "task.created", "room": "project:1", "data": {"project_id": 1, "title": "x"}},
     InvalidEvent),
    ({"type": "notification.new", "room": "project:1", "data": {"title": "x"}}, InvalidEvent),
    ({"type": "user_joined", "room": "project:1", "data": {"user_id": 1, "username": "a"}},
     InvalidEvent),
    ({"type": "no.such", "room": "project:1", "data": {}}, UnknownEventType),
    ({"type": "message", "room": "project:007",
      "data": {"message_id": "m", "content": "c", "user_id": 1}}, InvalidEvent),
    ({"type": "project.archived", "room": "project:1", "data": {"project_id": 1},
      "colour": "red"}, InvalidEvent),
])
def test_a_bad_event_raises_at_the_call_site_and_queues_nothing(
        backend: Backend, redis_client: redis.Redis, settings: Settings,
        bad: dict[str, object], error: type[Exception]) -> None:
    before = queued(redis_client, settings.STREAM_SHARDS)
    with pytest.raises(error):
        backend.publish(bad)
    assert queued(redis_client, settings.STREAM_SHARDS) == before


def test_an_unknown_type_lists_the_known_ones(backend: Backend) -> None:
    with pytest.raises(UnknownEventType, match=r"'task_created'; known: .*task\.created"):
        backend.event("task_created", "project:1", {})


def test_an_event_over_event_max_bytes_raises_at_the_call_site(
        redis_client: redis.Redis, settings: Settings) -> None:
    small = settings.model_copy(update={"EVENT_MAX_BYTES": 2048})
    backend = Backend(small)
    before = queued(redis_client, small.STREAM_SHARDS)
    backend.message("channel:5", message_id="m", content="x" * 1900, user_id=1)  # fits
    with pytest.raises(InvalidEvent, match="EVENT_MAX_BYTES is 2048"):
        backend.message("channel:5", message_id="m", content="x" * 2100, user_id=1)
    assert queued(redis_client, small.STREAM_SHARDS) == before + 1
    backend.close()


def test_typed_helpers_queue_and_return_the_key(backend: Backend, redis_client: redis.Redis,
                                                settings: Settings) -> None:
    key = backend.task_status_changed("project:5", task_id=1, project_id=5, old_status="todo",
                                      new_status="done", key="stable-key")
    assert key == "stable-key"
    (job,) = [j for j in queued_jobs(redis_client, "project:5", settings.STREAM_SHARDS)
              if isinstance(j, EventJob) and j.events[0].key == "stable-key"]
    assert job.events[0].room == "project:5"
    with pytest.raises(InvalidEvent):
        backend.notify(1, title=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        backend.grant_access(0, "project:1")
    with pytest.raises(ValueError, match="linked"):
        backend.link_room("project:2", "project:1")


def test_a_batch_is_one_job_per_shard_in_call_order(backend: Backend, redis_client: redis.Redis,
                                                    settings: Settings) -> None:
    room = "project:6"
    with backend.batch() as batch:
        keys_ = [batch.task_updated(room, task_id=n, project_id=6, changes={"n": n})
                 for n in range(5)]
    jobs = [j for j in queued_jobs(redis_client, room, settings.STREAM_SHARDS)
            if isinstance(j, EventJob) and j.events[0].key in keys_]
    assert len(jobs) == 1 and [e.key for e in jobs[0].events] == keys_
    many = backend.publish_many([{"type": "project.archived", "room": room,
                                  "data": {"project_id": 6}, "key": f"many-{n}"}
                                 for n in range(3)])
    assert many == ["many-0", "many-1", "many-2"]
    jobs = [j for j in queued_jobs(redis_client, room, settings.STREAM_SHARDS)
            if isinstance(j, EventJob) and j.events[0].key == "many-0"]
    assert len(jobs) == 1 and [e.key for e in jobs[0].events] == many


def test_a_batch_that_raises_queues_nothing(backend: Backend, redis_client: redis.Redis,
                                            settings: Settings) -> None:
    before = queued(redis_client, settings.STREAM_SHARDS)
    with pytest.raises(RuntimeError), backend.batch() as batch:
        batch.notify(7, title="never sent")
        raise RuntimeError("the domain change failed")
    assert queued(redis_client, settings.STREAM_SHARDS) == before


def test_module_helpers_use_settings_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, redis_client: redis.Redis) -> None:
    from workers import api

    monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
    monkeypatch.setenv("STREAM_SHARDS", str(settings.STREAM_SHARDS))
    api.default_backend.cache_clear()
    before = queued(redis_client, settings.STREAM_SHARDS)
    try:
        key = api.notify(42, title="hi")
        assert queued(redis_client, settings.STREAM_SHARDS) == before + 1 and len(key) == 32
    finally:
        api.default_backend().close()
        api.default_backend.cache_clear()


def test_a_producer_on_another_shard_count_is_refused_with_one_line(
        settings: Settings) -> None:
    first = Backend(settings)
    first.notify(1, title="fixes the count")
    first.close()
    other = Backend(settings.model_copy(update={"STREAM_SHARDS": settings.STREAM_SHARDS + 1}))
    with pytest.raises(Exception, match=r"STREAM_SHARDS: \d+ here, but this Redis serves"):
        other.notify(1, title="x")
    other.close()


def test_an_enqueue_works_after_redis_forgot_its_scripts(
        backend: Backend, redis_client: redis.Redis, settings: Settings) -> None:
    """A restarted Redis has no scripts cached: the producer loads its script again."""
    backend.notify(3, title="before")
    before = queued(redis_client, settings.STREAM_SHARDS)
    redis_client.script_flush()
    backend.notify(3, title="after the flush")
    assert queued(redis_client, settings.STREAM_SHARDS) == before + 1


def test_a_full_queue_pushes_back_then_raises_queue_full(
        redis_client: redis.Redis, settings: Settings) -> None:
    """No worker here: past PUBLISH_QUEUE_MAX jobs in a shard the enqueue waits up to
    PUBLISH_QUEUE_TIMEOUT, then raises; what was queued before stays queued."""
    from shared.engines.roles import QueueFull

    room = "task:404"
    shard = shard_of(room, settings.STREAM_SHARDS)
    redis_client.delete(keys.inbox(shard))
    tight = settings.model_copy(update={"PUBLISH_QUEUE_MAX": 2, "PUBLISH_QUEUE_TIMEOUT": 0.2})
    backend = Backend(tight)
    for n in range(2):
        backend.task_deleted(room, task_id=n, project_id=1)
    with pytest.raises(QueueFull, match="PUBLISH_QUEUE_MAX"):
        backend.task_deleted(room, task_id=2, project_id=1)
    assert redis_client.xlen(keys.inbox(shard)) == 2
    backend.close()
