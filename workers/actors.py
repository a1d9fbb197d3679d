"""Thin Dramatiq actors: publish an event, change room access.

Backends normally go through `workers.api`, whose ordered job queue the worker
consumes beside these actors (shared/engines/job_runner.py). The actors are the same
operations as Dramatiq jobs, for code that sends Dramatiq messages itself
(another service, another language): each applies its change directly, from
inside the job.

Transient failures (Redis unreachable) raise and are retried with backoff; a
payload that can never succeed is declared in `throws=` and goes straight to the
dead-letter queue instead of being retried. A retried `publish_event` appends
its event once: the key is the event's own, or derived from the message id.
"""

from __future__ import annotations

import functools
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from shared.engines import Engine, build_engine
from shared.events import InvalidEvent, UnknownEventType
from shared.publishing import event_from_payload, grant_job, link_job, revoke_job
from shared.settings import Settings, load_settings
from workers.broker import QUEUE_NAME, install_broker

settings: Settings = load_settings()
broker = install_broker(settings)

RETRY_OPTIONS: dict[str, Any] = {
    "queue_name": QUEUE_NAME,
    "max_retries": 20,
    "min_backoff": 100,
    "max_backoff": 30_000,
    "throws": (InvalidEvent, UnknownEventType, ValueError),
}


@functools.cache
def engine() -> Engine:
    # One per worker process, made on first use (after Dramatiq forks).
    return build_engine(settings)


@dramatiq.actor(actor_name="publish_event", **RETRY_OPTIONS)
def publish_event(event: dict[str, Any]) -> None:
    # Returns nothing: without a results backend Dramatiq discards a return value
    # and logs a warning for every job that has one.
    if "key" not in event:
        message = CurrentMessage.get_current_message()
        event = {**event, "key": f"job:{message.message_id}" if message else None}
    engine().writer.append([event_from_payload(settings, event)])


@dramatiq.actor(actor_name="grant_access", **RETRY_OPTIONS)
def grant_access(user_id: int, room: str) -> None:
    job = grant_job(int(user_id), room)
    engine().access_store.grant(job.user_id, job.room)


@dramatiq.actor(actor_name="revoke_access", **RETRY_OPTIONS)
def revoke_access(user_id: int, room: str) -> None:
    job = revoke_job(int(user_id), room)
    engine().access_store.revoke(job.user_id, job.room)


@dramatiq.actor(actor_name="link_room", **RETRY_OPTIONS)
def link_room(room: str, project_room: str) -> None:
    job = link_job(room, project_room)
    engine().access_store.link(job.room, job.project_room)
