"""What a backend imports to publish events and change room access.

Every helper validates its payload with the shared pydantic models before
enqueueing, so a bad payload raises here, at the call site, and no poison
message reaches the queue. Each returns the event key (idempotency key): a job
retried by Dramatiq keeps its key, so the event is appended once.

    from workers import api
    api.task_created(room="project:1", task_id=7, project_id=1, title="Ship it")

The module-level helpers use a broker built from the environment on first use;
`Backend(broker)` is the same API bound to an explicit broker.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.events import BackendEvent, parse_backend_event
from shared.rooms import Room
from shared.settings import load_settings
from workers.broker import QUEUE_NAME, build_broker

P = ParamSpec("P")
R = TypeVar("R")
ENQUEUE_ATTEMPTS = 6  # about 3 s of backoff: rides over a brief Redis blip


def new_key() -> str:
    return uuid.uuid4().hex


class Backend:
    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker

    # -- generic ---------------------------------------------------------------------
    def publish(self, event: dict[str, Any] | BackendEvent) -> str:
        payload = event if isinstance(event, dict) else event.model_dump(mode="json")
        payload = {"key": new_key(), **payload}
        validated = parse_backend_event(payload)
        self._enqueue("publish_event", validated.model_dump(mode="json"))
        return validated.key

    def event(self, type_: str, room: str, data: dict[str, Any], *, sender: str = "system",
              key: str | None = None) -> str:
        return self.publish({"type": type_, "room": room, "data": data, "sender": sender,
                             "key": key or new_key()})

    # -- typed helpers ------------------------------------------------------------------
    def message(self, /, room: str, *, message_id: str, content: str, user_id: int,
                sender: str = "system", key: str | None = None, **extra: Any) -> str:
        return self.event("message", room, {"message_id": message_id, "content": content,
                                             "user_id": user_id, **extra},
                          sender=sender, key=key)

    def message_edited(self, /, room: str, *, message_id: str, content: str,
                       sender: str = "system", key: str | None = None, **extra: Any) -> str:
        return self.event("message.edited", room,
                          {"message_id": message_id, "content": content, **extra},
                          sender=sender, key=key)

    def message_deleted(self, /, room: str, *, message_id: str, sender: str = "system",
                        key: str | None = None, **extra: Any) -> str:
        return self.event("message.deleted", room, {"message_id": message_id, **extra},
                          sender=sender, key=key)

    def task_created(self, /, room: str, *, task_id: int, project_id: int, title: str,
                     sender: str = "system", key: str | None = None, **extra: Any) -> str:
        return self.event("task.created", room, {"task_id": task_id, "project_id": project_id,
                                                 "title": title, **extra},
                          sender=sender, key=key)

    def task_updated(self, /, room: str, *, task_id: int, project_id: int,
                     changes: dict[str, Any], sender: str = "system", key: str | None = None,
                     **extra: Any) -> str:
        return self.event("task.updated", room, {"task_id": task_id, "project_id": project_id,
                                                 "changes": changes, **extra},
                          sender=sender, key=key)

    def task_status_changed(self, /, room: str, *, task_id: int, project_id: int,
                            old_status: str, new_status: str, sender: str = "system",
                            key: str | None = None, **extra: Any) -> str:
        return self.event("task.status_changed", room,
                          {"task_id": task_id, "project_id": project_id,
                           "old_status": old_status, "new_status": new_status, **extra},
                          sender=sender, key=key)

    def task_assigned(self, /, room: str, *, task_id: int, project_id: int,
                      assignee_id: int | None, sender: str = "system", key: str | None = None,
                      **extra: Any) -> str:
        return self.event("task.assigned", room,
                          {"task_id": task_id, "project_id": project_id,
                           "assignee_id": assignee_id, **extra}, sender=sender, key=key)

    def task_deleted(self, /, room: str, *, task_id: int, project_id: int,
                     sender: str = "system", key: str | None = None, **extra: Any) -> str:
        return self.event("task.deleted", room,
                          {"task_id": task_id, "project_id": project_id, **extra},
                          sender=sender, key=key)

    def project_updated(self, /, room: str, *, project_id: int, changes: dict[str, Any],
                        sender: str = "system", key: str | None = None, **extra: Any) -> str:
        return self.event("project.updated", room,
                          {"project_id": project_id, "changes": changes, **extra},
                          sender=sender, key=key)

    def project_archived(self, /, room: str, *, project_id: int, sender: str = "system",
                         key: str | None = None, **extra: Any) -> str:
        return self.event("project.archived", room, {"project_id": project_id, **extra},
                          sender=sender, key=key)

    def notify(self, /, user_id: int, *, title: str, sender: str = "system",
               key: str | None = None, **extra: Any) -> str:
        return self.event("notification.new", str(Room.user(user_id)),
                          {"title": title, **extra}, sender=sender, key=key)

    # -- access ---------------------------------------------------------------------------
    def grant_access(self, user_id: int, room: str) -> None:
        self._enqueue("grant_access", _user_id(user_id), str(Room.parse(room)))

    def revoke_access(self, user_id: int, room: str) -> None:
        self._enqueue("revoke_access", _user_id(user_id), str(Room.parse(room)))

    def link_room(self, room: str, project_room: str) -> None:
        self._enqueue("link_room", str(Room.parse(room)), str(Room.parse(project_room)))

    # -- plumbing -----------------------------------------------------------------------
    def _enqueue(self, actor_name: str, *args: Any) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=QUEUE_NAME, actor_name=actor_name, args=args, kwargs={}, options={})
        delay = 0.05
        for attempt in range(ENQUEUE_ATTEMPTS):
            try:
                self.broker.enqueue(message)
                return
            except RedisConnectionError:
                if attempt == ENQUEUE_ATTEMPTS - 1:
                    raise
                time.sleep(delay)  # backoff between reconnect attempts, not a sync guess
                delay = min(delay * 2, 1.0)


def _user_id(user_id: int) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise ValueError("user_id must be a positive integer")
    return user_id


@functools.cache
def default_backend() -> Backend:
    return Backend(build_broker(load_settings()))


def _delegate(method: Callable[Concatenate[Backend, P], R]) -> Callable[P, R]:
    """A module-level helper calling `method` on the default backend, fully typed."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_backend(), *args, **kwargs)

    return call


publish = _delegate(Backend.publish)
event = _delegate(Backend.event)
message = _delegate(Backend.message)
message_edited = _delegate(Backend.message_edited)
message_deleted = _delegate(Backend.message_deleted)
task_created = _delegate(Backend.task_created)
task_updated = _delegate(Backend.task_updated)
task_status_changed = _delegate(Backend.task_status_changed)
task_assigned = _delegate(Backend.task_assigned)
task_deleted = _delegate(Backend.task_deleted)
project_updated = _delegate(Backend.project_updated)
project_archived = _delegate(Backend.project_archived)
notify = _delegate(Backend.notify)
grant_access = _delegate(Backend.grant_access)
revoke_access = _delegate(Backend.revoke_access)
link_room = _delegate(Backend.link_room)
