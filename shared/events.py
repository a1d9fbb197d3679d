"""Typed room events: the registry of event types, one pydantic model per type's
`data`, and the checks every event passes at enqueue and again in the worker.

Required fields are checked; further fields are kept and passed on
(extra="allow"). A backend registers its own types with `register_event_type`
(a dotted lower-case name and a model of its `data`); they get the same checks,
the same generic `publish`, and a place in the reference (docs/events.md) and in
the JSON Schema served at /api/v1/events/schema.

On the wire and in the log an event is one JSON object, encoded once:
`{"type", "room", "data", "sender", "timestamp"}` (the gateway adds the stream
`id`). Its size is capped by EVENT_MAX_BYTES.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from shared.codec import encode_event
from shared.rooms import InvalidRoom, Room, RoomKind

TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_SENDER_LENGTH = 128
MAX_KEY_LENGTH = 128


class EventData(BaseModel):
    """Base of every event's `data` model: required fields checked, extra ones kept."""

    model_config = ConfigDict(extra="allow", strict=True)


# Field descriptions go into the JSON Schema and the event reference (docs/events.md).
class MessageData(EventData):
    message_id: str = Field(description="The message's id; for a client's send_message, "
                                        "`u<user_id>.<key>`")
    content: str = Field(description="The message's text")
    user_id: StrictInt = Field(description="The author's user id")


class MessageEditedData(EventData):
    message_id: str = Field(description="The id of the edited message")
    content: str = Field(description="Its new text")


class MessageDeletedData(EventData):
    message_id: str = Field(description="The id of the deleted message")


class TaskRef(EventData):
    task_id: StrictInt = Field(description="The task's id")
    project_id: StrictInt = Field(description="The id of the task's project")


class TaskCreatedData(TaskRef):
    title: str = Field(description="The new task's title")


class TaskUpdatedData(TaskRef):
    changes: dict[str, Any] = Field(description="The changed fields and their new values")


class TaskStatusChangedData(TaskRef):
    old_status: str = Field(description="The status before")
    new_status: str = Field(description="The status now")


class TaskAssignedData(TaskRef):
    assignee_id: StrictInt | None = Field(description="The assignee's user id; null: nobody")


class TaskDeletedData(TaskRef):
    pass


class ProjectUpdatedData(EventData):
    project_id: StrictInt = Field(description="The project's id")
    changes: dict[str, Any] = Field(description="The changed fields and their new values")


class ProjectArchivedData(EventData):
    project_id: StrictInt = Field(description="The project's id")


class NotificationData(EventData):
    title: str = Field(description="What the user is told")


class PresenceChangeData(EventData):
    user_id: StrictInt = Field(description="The user's id")
    username: str = Field(description="The user's name, from their token")


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    model: type[EventData]
    description: str
    example: dict[str, Any]
    rooms: frozenset[RoomKind] | None = None  # None: any room kind
    from_backends: bool = True  # False: made by gateways only (presence)
    builtin: bool = False


class UnknownEventType(ValueError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown event type {name[:60]!r}; known: {', '.join(sorted(known))}")


class InvalidEvent(ValueError):
    """An event that can never be published: wrong shape, data, room or size."""


_REGISTRY: dict[str, EventType] = {}


def _builtin(name: str, model: type[EventData], description: str, example: dict[str, Any],
             **options: Any) -> None:
    _REGISTRY[name] = EventType(name, model, description, example, builtin=True, **options)


_builtin("message", MessageData, "A chat message in a room: a client's send_message (published "
         "by the worker), or a backend's.",
         {"message_id": "u42.a1b2", "content": "Hello", "user_id": 42})
_builtin("message.edited", MessageEditedData, "A chat message was edited.",
         {"message_id": "u42.a1b2", "content": "Hello, all"})
_builtin("message.deleted", MessageDeletedData, "A chat message was deleted.",
         {"message_id": "u42.a1b2"})
_builtin("task.created", TaskCreatedData, "A task was created.",
         {"task_id": 7, "project_id": 1, "title": "Ship it"})
_builtin("task.updated", TaskUpdatedData, "Fields of a task changed.",
         {"task_id": 7, "project_id": 1, "changes": {"title": "Ship it today"}})
_builtin("task.status_changed", TaskStatusChangedData, "A task moved to another status.",
         {"task_id": 7, "project_id": 1, "old_status": "todo", "new_status": "doing"})
_builtin("task.assigned", TaskAssignedData, "A task was assigned (null: unassigned).",
         {"task_id": 7, "project_id": 1, "assignee_id": 42})
_builtin("task.deleted", TaskDeletedData, "A task was deleted.", {"task_id": 7, "project_id": 1})
_builtin("project.updated", ProjectUpdatedData, "Fields of a project changed.",
         {"project_id": 1, "changes": {"name": "Roomcast"}})
_builtin("project.archived", ProjectArchivedData, "A project was archived.", {"project_id": 1})
_builtin("notification.new", NotificationData, "A notification for one user.",
         {"title": "You were mentioned"}, rooms=frozenset({RoomKind.USER}))
_builtin("user_joined", PresenceChangeData, "A user's first connection entered the room.",
         {"user_id": 42, "username": "alice"}, from_backends=False)
_builtin("user_left", PresenceChangeData, "A user's last connection left the room.",
         {"user_id": 42, "username": "alice"}, from_backends=False)


def register_event_type(name: str, model: type[EventData], *, description: str = "",
                        example: dict[str, Any] | None = None,
                        rooms: Iterable[RoomKind] | None = None) -> EventType:
    """Make `name` publishable with `data` checked by `model`. Registering the same
    name with the same model again is a no-op; a built-in name is refused."""
    if not TYPE_NAME.fullmatch(name):
        raise ValueError(f"event type {name!r} must look like 'comment.added' "
                         "(lower-case words joined by dots)")
    if not (isinstance(model, type) and issubclass(model, EventData)):
        raise TypeError("the model of an event type must subclass shared.events.EventData")
    existing = _REGISTRY.get(name)
    if existing is not None:
        if existing.builtin or existing.model is not model:
            raise ValueError(f"event type {name!r} is already registered")
        return existing
    if example is not None:
        model.model_validate(example)  # a wrong example would mislead every reader
    spec = EventType(name, model, description or (model.__doc__ or "").strip(),
                     example or {}, frozenset(rooms) if rooms is not None else None)
    _REGISTRY[name] = spec
    return spec


def event_types() -> list[EventType]:
    return list(_REGISTRY.values())


def publishable_types() -> list[str]:
    return sorted(name for name, spec in _REGISTRY.items() if spec.from_backends)


def event_type(name: str) -> EventType:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UnknownEventType(name, publishable_types())
    return spec


def validate_event(type_: str, room: str, data: Any, *, from_backend: bool = True
                   ) -> dict[str, Any]:
    """The event's data as it will be sent; raises InvalidEvent or UnknownEventType."""
    spec = event_type(type_)
    if from_backend and not spec.from_backends:
        raise InvalidEvent(f"{type_!r} events are made by gateways only")
    try:
        parsed = Room.parse(room)
    except InvalidRoom as exc:
        raise InvalidEvent(str(exc)) from None
    if spec.rooms is not None and parsed.kind not in spec.rooms:
        kinds = ", ".join(sorted(k.value for k in spec.rooms))
        raise InvalidEvent(f"{type_!r} goes to {kinds}:<id> rooms only")
    try:
        return spec.model.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidEvent(_one_line(type_, exc)) from None


def encode_checked(type_: str, room: str, data: Any, sender: str, max_bytes: int, *,
                   timestamp: str | None = None) -> bytes:
    """Validate and encode an event for the log; raises InvalidEvent when it is too big."""
    if not isinstance(sender, str) or not 1 <= len(sender) <= MAX_SENDER_LENGTH:
        raise InvalidEvent(f"sender must be a string of 1..{MAX_SENDER_LENGTH} characters")
    encoded = encode_event(type_, room, validate_event(type_, room, data), sender, timestamp)
    if len(encoded) > max_bytes:
        raise InvalidEvent(f"event is {len(encoded)} bytes encoded; EVENT_MAX_BYTES is "
                           f"{max_bytes}")
    return encoded


def check_encoded(encoded: bytes, room: str, max_bytes: int) -> str:
    """The worker's second look at an event from the queue; raises InvalidEvent.

    Returns the type. A type this process does not know (registered by a backend, in
    a module the worker was not told to import: EVENT_MODULES) is checked for shape
    and size only: the producer checked its data against the model."""
    if len(encoded) > max_bytes:
        raise InvalidEvent(f"event is {len(encoded)} bytes; EVENT_MAX_BYTES is {max_bytes}")
    try:
        event = orjson.loads(encoded)
    except orjson.JSONDecodeError:
        raise InvalidEvent("event is not JSON") from None
    if not isinstance(event, dict) or event.get("room") != room:
        raise InvalidEvent("event is no object for its room")
    if not isinstance(event.get("sender"), str) or not isinstance(event.get("timestamp"), str):
        raise InvalidEvent("event lacks its sender or timestamp")
    type_ = event.get("type")
    if not isinstance(type_, str):
        raise InvalidEvent("event type must be a string")
    if type_ in _REGISTRY:
        validate_event(type_, room, event.get("data"))
    elif not TYPE_NAME.fullmatch(type_):
        raise InvalidEvent(f"{type_[:60]!r} is no event type name")
    return type_


def check_key(key: str) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidEvent(f"key must be a string of 1..{MAX_KEY_LENGTH} characters")
    return key


def _one_line(type_: str, exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "data"
        parts.append(f"data.{where}: {error['msg']}" if where != "data" else error["msg"])
    return f"invalid {type_!r} event: " + "; ".join(parts)


def import_event_modules(modules: Iterable[str]) -> None:
    """Import the backend modules that register event types (EVENT_MODULES), so this
    process (a worker, a gateway) checks those types like the built-in ones."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"EVENT_MODULES: cannot import {name!r}: {exc}") from None
        except (ValueError, TypeError) as exc:  # a registration it makes is refused
            raise ValueError(f"EVENT_MODULES: {name!r}: {exc}") from None
