"""A backend's own event type, end to end: `comment.added` (tests/support/
custom_events.py, with a nested model) registered without touching shared/, a
worker and a gateway started with EVENT_MODULES naming it, and every way a
backend publishes (workers.api's generic publish and its async twin, a remote
Backend, a raw POST /api/v1/events, `roomcast publish --url`) reaching a member
of the room with the right type, data and sender.

A bad payload and a bad type name are each one clear error where they are made
(an exception, a 422, one CLI line) and nothing is appended: a later event of
the same producer arrives alone, and nothing reached the worker's dead letters.
What slips past the call site is caught by the worker, which checks the
registered type again because EVENT_MODULES made it known there too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis

from shared import keys
from shared.codec import encode_event
from shared.engines.redis.engine import RedisEngine
from shared.engines.roles import EventJob, PendingEvent
from shared.events import InvalidEvent, UnknownEventType, register_event_type
from shared.rooms import shard_of
from shared.settings import Settings
from tests.support.cli import one_line_error
from tests.support.delivery import connect
from tests.support.event_registry import registered
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from tests.support.ws import WsClient
from workers.api import AsyncBackend, Backend

CUSTOM = "tests.support.custom_events"
TYPE = "comment.added"
API_KEY = "custom-events-test-key-0123"
PRESENCE = {"user_joined", "user_left"}


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    s = Stack(redis_server.url, env_overrides={"EVENT_MODULES": CUSTOM, "ACCESS_MODE": "open",
                                                "EVENTS_API_KEY": API_KEY})
    s.start_worker(threads=2)
    s.add_gateway()
    yield s
    s.stop()


@pytest.fixture
def custom() -> Iterator[ModuleType]:
    """The type registered in this process too, as a backend importing its module."""
    with registered(CUSTOM):
        import tests.support.custom_events as module

        yield module


@pytest.fixture
def settings(stack: Stack) -> Settings:
    return Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET, STREAM_SHARDS=SHARDS)


@pytest.fixture
def backend(settings: Settings) -> Iterator[Backend]:
    b = Backend(settings)
    yield b
    b.close()


def _data(comment_id: int, **extra: Any) -> dict[str, Any]:
    return {"comment_id": comment_id, "task_id": 7,
            "author": {"user_id": 42, "username": "alice"}, "body": f"comment {comment_id}",
            **extra}


async def _member(stack: Stack, room: str, user_id: int) -> WsClient:
    client = await connect(stack.gateways[0].url, user_id)
    assert (await client.join(room))["type"] == "room_joined"
    return client


def _room_events(client: WsClient, room: str) -> list[dict[str, Any]]:
    return [f for f in client.events(room) if f["type"] not in PRESENCE]


def _history_types(db: redis.Redis, room: str) -> list[str]:
    return [json.loads(fields[b"e"])["type"]
            for _, fields in db.xrange(keys.room_history(room, SHARDS))]


def _dead_letters(db: redis.Redis, room: str) -> list[str]:
    stream = keys.dead_letters(shard_of(room, SHARDS))
    return [fields[b"reason"].decode() for _, fields in db.xrange(stream)]


async def test_every_publisher_reaches_the_room_with_type_data_and_sender(
        stack: Stack, custom: ModuleType, backend: Backend, settings: Settings,
        unique_id: Callable[[], int]) -> None:
    room = f"task:{unique_id()}"
    client = await _member(stack, room, unique_id())
    # workers.api: the generic publish, its one-event form, the async twin
    backend.publish({"type": TYPE, "room": room, "data": _data(1, mentions=[7]),
                     "sender": "alice"})
    backend.event(TYPE, room, _data(2), sender="alice")
    aio = AsyncBackend(settings)
    await aio.publish({"type": TYPE, "room": room, "data": _data(3), "sender": "alice"})
    await aio.aclose()
    # through the gateway's backend API: a remote Backend, a raw request, the CLI
    remote = Backend.remote(stack.gateways[0].http, API_KEY)
    await asyncio.to_thread(remote.publish, {"type": TYPE, "room": room, "data": _data(4),
                                             "sender": "alice"})
    status, body = await asyncio.to_thread(
        stack.gateways[0].post_events,
        {"type": TYPE, "room": room, "data": _data(5), "sender": "alice"}, API_KEY)
    assert status == 202 and body["key"], body
    result = await stack.acli("publish", TYPE, "--room", room, "--data", json.dumps(_data(6)),
                              "--sender", "alice", "--url", stack.gateways[0].http)
    assert result.stdout.strip(), result.stderr  # the event's key
    await client.wait_events(room, 6, type_=TYPE, timeout=20)
    events = sorted(_room_events(client, room), key=lambda e: e["data"]["comment_id"])
    assert [(e["type"], e["room"], e["sender"]) for e in events] == [(TYPE, room, "alice")] * 6
    assert [e["data"] for e in events] == [_data(1, mentions=[7]), *map(_data, range(2, 7))]
    assert all(e["id"] and e["timestamp"] for e in events)
    await client.close()


async def test_a_bad_payload_and_a_bad_type_name_are_one_clear_error_and_append_nothing(
        stack: Stack, custom: ModuleType, backend: Backend, db: redis.Redis,
        unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    client = await _member(stack, room, unique_id())
    bad_data = {"type": TYPE, "room": room,
                "data": _data(1, author={"user_id": "42", "username": "alice"})}
    bad_name = {"type": "Comment.Added", "room": room, "data": _data(1)}
    expected_data = ("invalid 'comment.added' event: data.author.user_id: Input should be "
                     "a valid integer")
    # at the call site: an exception, one line
    with pytest.raises(InvalidEvent) as refused:
        backend.publish(bad_data)
    assert str(refused.value) == expected_data
    with pytest.raises(UnknownEventType) as unknown:
        backend.publish(bad_name)
    expected_name = str(unknown.value)
    assert expected_name.startswith("unknown event type 'Comment.Added'; known: ")
    assert TYPE in expected_name.split("known: ")[1].split(", ")  # the registered one too
    # over HTTP: 422, the same line
    for event, line in ((bad_data, expected_data), (bad_name, expected_name)):
        status, body = await asyncio.to_thread(stack.gateways[0].post_events, event, API_KEY)
        assert (status, body) == (422, {"detail": line})
    # the CLI: one line, exit 2
    for event in (bad_data, bad_name):
        result = await stack.acli("publish", event["type"], "--room", room, "--data",
                                  json.dumps(event["data"]), "--url", stack.gateways[0].http,
                                  check=False)
        assert result.returncode == 2
        assert one_line_error(result).startswith(("roomcast: invalid 'comment.added' event",
                                                  "roomcast: unknown event type"))
    # registering under a name that breaks the pattern
    with pytest.raises(ValueError, match=r"must look like 'comment\.added'"):
        register_event_type("Comment.Added", custom.CommentAdded)
    # nothing was queued: the same producer's next event arrives alone
    dead_before = _dead_letters(db, room)
    backend.publish({"type": TYPE, "room": room, "data": _data(2)})
    await client.wait_events(room, 1, type_=TYPE)
    assert [e["data"]["comment_id"] for e in _room_events(client, room)] == [2]
    assert [t for t in _history_types(db, room) if t not in PRESENCE] == [TYPE]
    assert _dead_letters(db, room) == dead_before
    await client.close()


async def test_the_worker_checks_the_registered_type_again(
        stack: Stack, custom: ModuleType, backend: Backend, settings: Settings,
        db: redis.Redis, unique_id: Callable[[], int]) -> None:
    """An event queued without the call-site check (another producer's bug): the
    worker knows comment.added from EVENT_MODULES, sets it aside, and goes on."""
    room = f"task:{unique_id()}"
    client = await _member(stack, room, unique_id())
    dead_before = len(_dead_letters(db, room))
    unchecked = encode_event(TYPE, room, _data(1, author={"user_id": "42"}), "buggy")
    engine = RedisEngine(settings)
    try:
        engine.sync_jobs.enqueue([EventJob((PendingEvent(uuid.uuid4().hex, room, unchecked),))])
    finally:
        engine.close()
    backend.publish({"type": TYPE, "room": room, "data": _data(2)})  # the same producer
    await client.wait_events(room, 1, type_=TYPE)
    assert [e["data"]["comment_id"] for e in _room_events(client, room)] == [2]
    reasons = _dead_letters(db, room)[dead_before:]
    assert len(reasons) == 1 and reasons[0].startswith(
        "invalid 'comment.added' event: data.author.user_id: Input should be a valid integer")
    await client.close()
