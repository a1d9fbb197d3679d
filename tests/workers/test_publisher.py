"""The publish script and the backend API on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from pydantic import ValidationError

from shared import keys
from shared.codec import encode_event
from shared.rooms import shard_of
from shared.settings import Settings
from shared.stream_writer import StreamWriter
from workers.api import Backend
from workers.broker import NAMESPACE, QUEUE_NAME, build_broker
from workers.publisher import publish


@pytest.fixture
def writer(redis_client: redis.Redis, settings: Settings) -> StreamWriter:
    return StreamWriter(redis_client, settings)


@pytest.fixture
def backend(settings: Settings) -> Iterator[Backend]:
    b = Backend(build_broker(settings))
    yield b
    b.broker.close()


def test_same_key_appends_once_with_the_same_id(writer: StreamWriter,
                                                 redis_client: redis.Redis,
                                                 settings: Settings) -> None:
    room = "project:901"
    payload = {"type": "project.archived", "room": room, "key": "k-901",
               "data": {"project_id": 901}}
    first = publish(writer, payload)
    second = publish(writer, payload)
    assert first.appended and not second.appended and first.id == second.id
    assert redis_client.xlen(keys.room_history(room, settings.STREAM_SHARDS)) == 1
    shard = keys.shard_stream(shard_of(room, settings.STREAM_SHARDS))
    assert [e for e in redis_client.xrange(shard) if e[1][b"r"] == room.encode()] != []
    assert sum(1 for e in redis_client.xrange(shard) if e[1][b"r"] == room.encode()) == 1


def test_history_and_shard_share_ids_and_history_is_capped(
        redis_client: redis.Redis) -> None:
    small = Settings(REDIS_URL="redis://unused", ROOM_HISTORY_SIZE=3, STREAM_SHARDS=2)
    writer = StreamWriter(redis_client, small)
    room = "task:77"
    ids = [writer.append_event(room, encode_event("task.deleted", room,
                                                  {"task_id": 77, "project_id": 1}, "t"),
                               key=f"cap-{i}").id for i in range(5)]
    history = [i.decode() for i, _ in redis_client.xrange(keys.room_history(room, 2))]
    assert history == ids[-3:]
    meta = redis_client.hgetall(keys.room_meta(room, 2))
    assert meta[b"first"].decode() == ids[0] and meta[b"last"].decode() == ids[-1]
    shard_ids = [i.decode() for i, f in redis_client.xrange(keys.shard_stream(shard_of(room, 2)))
                 if f[b"r"] == room.encode()]
    assert shard_ids == ids


@pytest.mark.parametrize("bad", [
    {"type": "task.created", "room": "project:1", "data": {"task_id": "7", "project_id": 1,
                                                            "title": "x"}},
    {"type": "task.created", "room": "project:1", "data": {"project_id": 1, "title": "x"}},
    {"type": "notification.new", "room": "project:1", "data": {"title": "x"}},
    {"type": "user_joined", "room": "project:1", "data": {"user_id": 1, "username": "a"}},
    {"type": "no.such", "room": "project:1", "data": {}},
    {"type": "message", "room": "project:007", "data": {"message_id": "m", "content": "c",
                                                        "user_id": 1}},
])
def test_bad_payload_raises_at_the_call_site_and_enqueues_nothing(
        backend: Backend, redis_client: redis.Redis, bad: dict[str, object]) -> None:
    queue_key = f"{NAMESPACE}:{QUEUE_NAME}"
    before = redis_client.llen(queue_key)
    with pytest.raises(ValidationError):
        backend.publish(bad)
    assert redis_client.llen(queue_key) == before


def test_typed_helpers_enqueue_and_return_the_key(backend: Backend,
                                                   redis_client: redis.Redis) -> None:
    queue_key = f"{NAMESPACE}:{QUEUE_NAME}"
    before = redis_client.llen(queue_key)
    key = backend.task_status_changed("project:5", task_id=1, project_id=5, old_status="todo",
                                      new_status="done", key="stable-key")
    assert key == "stable-key"
    assert redis_client.llen(queue_key) == before + 1
    with pytest.raises(ValidationError):
        backend.notify(1, title=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        backend.grant_access(0, "project:1")


def test_module_helpers_use_a_broker_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, settings: Settings, redis_client: redis.Redis) -> None:
    from workers import api

    monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
    api.default_backend.cache_clear()
    queue_key = f"{NAMESPACE}:{QUEUE_NAME}"
    before = redis_client.llen(queue_key)
    try:
        key = api.notify(42, title="hi")
        assert redis_client.llen(queue_key) == before + 1 and len(key) == 32
    finally:
        api.default_backend().broker.close()
        api.default_backend.cache_clear()
