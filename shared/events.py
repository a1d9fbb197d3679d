"""Typed room events: one pydantic model per event type's `data`, and the
envelope a backend publishes. Required fields are checked; further fields are
kept and passed on (extra="allow")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, model_validator

from shared.rooms import Room, RoomKind


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class MessageData(EventData):
    message_id: str
    content: str
    user_id: StrictInt


class MessageEditedData(EventData):
    message_id: str
    content: str


class MessageDeletedData(EventData):
    message_id: str


class TaskRef(EventData):
    task_id: StrictInt
    project_id: StrictInt


class TaskCreatedData(TaskRef):
    title: str


class TaskUpdatedData(TaskRef):
    changes: dict[str, Any]


class TaskStatusChangedData(TaskRef):
    old_status: str
    new_status: str


class TaskAssignedData(TaskRef):
    assignee_id: StrictInt | None


class TaskDeletedData(TaskRef):
    pass


class ProjectUpdatedData(EventData):
    project_id: StrictInt
    changes: dict[str, Any]


class ProjectArchivedData(EventData):
    project_id: StrictInt


class NotificationData(EventData):
    title: str


class PresenceChangeData(EventData):
    user_id: StrictInt
    username: str


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    room: str
    sender: str = Field(default="system", min_length=1, max_length=128)
    # Idempotency key: stable across retries of the same job.
    key: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _valid_room(self) -> _Event:
        Room.parse(self.room)
        return self


class MessageEvent(_Event):
    type: Literal["message"]
    data: MessageData


class MessageEditedEvent(_Event):
    type: Literal["message.edited"]
    data: MessageEditedData


class MessageDeletedEvent(_Event):
    type: Literal["message.deleted"]
    data: MessageDeletedData


class TaskCreatedEvent(_Event):
    type: Literal["task.created"]
    data: TaskCreatedData


class TaskUpdatedEvent(_Event):
    type: Literal["task.updated"]
    data: TaskUpdatedData


class TaskStatusChangedEvent(_Event):
    type: Literal["task.status_changed"]
    data: TaskStatusChangedData


class TaskAssignedEvent(_Event):
    type: Literal["task.assigned"]
    data: TaskAssignedData


class TaskDeletedEvent(_Event):
    type: Literal["task.deleted"]
    data: TaskDeletedData


class ProjectUpdatedEvent(_Event):
    type: Literal["project.updated"]
    data: ProjectUpdatedData


class ProjectArchivedEvent(_Event):
    type: Literal["project.archived"]
    data: ProjectArchivedData


class NotificationEvent(_Event):
    type: Literal["notification.new"]
    data: NotificationData

    @model_validator(mode="after")
    def _user_room_only(self) -> NotificationEvent:
        if Room.parse(self.room).kind is not RoomKind.USER:
            raise ValueError("notification.new goes to a user:<id> room only")
        return self


class UserJoinedEvent(_Event):
    type: Literal["user_joined"]
    data: PresenceChangeData


class UserLeftEvent(_Event):
    type: Literal["user_left"]
    data: PresenceChangeData


# What a backend may publish: presence changes are made by gateways only.
BackendEvent = Annotated[
    MessageEvent | MessageEditedEvent | MessageDeletedEvent | TaskCreatedEvent
    | TaskUpdatedEvent | TaskStatusChangedEvent | TaskAssignedEvent | TaskDeletedEvent
    | ProjectUpdatedEvent | ProjectArchivedEvent | NotificationEvent,
    Field(discriminator="type"),
]
GatewayEvent = Annotated[UserJoinedEvent | UserLeftEvent, Field(discriminator="type")]
AnyEvent = Annotated[
    MessageEvent | MessageEditedEvent | MessageDeletedEvent | TaskCreatedEvent
    | TaskUpdatedEvent | TaskStatusChangedEvent | TaskAssignedEvent | TaskDeletedEvent
    | ProjectUpdatedEvent | ProjectArchivedEvent | NotificationEvent
    | UserJoinedEvent | UserLeftEvent,
    Field(discriminator="type"),
]

backend_event_adapter: TypeAdapter[BackendEvent] = TypeAdapter(BackendEvent)
any_event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

BACKEND_EVENT_TYPES: frozenset[str] = frozenset(
    typ for cls in BackendEvent.__origin__.__args__  # type: ignore[attr-defined]
    for typ in cls.model_fields["type"].annotation.__args__
)


def parse_backend_event(payload: dict[str, Any]) -> BackendEvent:
    """Validate what a backend wants to publish; raises pydantic.ValidationError."""
    return backend_event_adapter.validate_python(payload)


def parse_any_event(payload: dict[str, Any]) -> AnyEvent:
    return any_event_adapter.validate_python(payload)
