"""Thin Dramatiq actors: validate, then publish or change grants.

Transient failures (Redis unreachable) raise and are retried with backoff;
a payload that can never succeed is declared in `throws=` and goes straight
to the dead-letter queue instead of being retried.
"""

from __future__ import annotations

import functools
from typing import Any

import dramatiq
import redis
from pydantic import ValidationError

from shared.redis_client import sync_client
from shared.rooms import InvalidRoom, Room
from shared.settings import Settings, load_settings
from shared.stream_writer import StreamWriter
from workers import grants, publisher
from workers.broker import QUEUE_NAME, install_broker

settings: Settings = load_settings()
broker = install_broker(settings)

RETRY_OPTIONS: dict[str, Any] = {
    "queue_name": QUEUE_NAME,
    "max_retries": 20,
    "min_backoff": 100,
    "max_backoff": 30_000,
    "throws": (ValidationError, InvalidRoom, ValueError),
}


@functools.cache
def _redis() -> redis.Redis:
    # One client per worker process, created lazily (after Dramatiq forks).
    return sync_client(settings)


@functools.cache
def _writer() -> StreamWriter:
    return StreamWriter(_redis(), settings)


@dramatiq.actor(actor_name="publish_event", **RETRY_OPTIONS)
def publish_event(event: dict[str, Any]) -> None:
    # Returns nothing: without a results backend Dramatiq discards a return value
    # and logs a warning for every job that has one.
    publisher.publish(_writer(), event)


@dramatiq.actor(actor_name="grant_access", **RETRY_OPTIONS)
def grant_access(user_id: int, room: str) -> None:
    grants.grant(_redis(), int(user_id), Room.parse(room))


@dramatiq.actor(actor_name="revoke_access", **RETRY_OPTIONS)
def revoke_access(user_id: int, room: str) -> None:
    grants.revoke(_redis(), _writer(), settings, int(user_id), Room.parse(room))


@dramatiq.actor(actor_name="link_room", **RETRY_OPTIONS)
def link_room(room: str, project_room: str) -> None:
    grants.link(_redis(), Room.parse(room), Room.parse(project_room))
