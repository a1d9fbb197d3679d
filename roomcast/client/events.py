"""Typed events the client hands to the application.

Every event has a `type` string, so one `on("...")` call or one `match` on
the class covers it. Room events keep the server's type (`message`,
`task.created`, ...); the client's own events use names no room event has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeAlias


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """An event published to a room; `id` is its stream id in that room."""

    type: str
    room: str
    data: dict[str, Any]
    sender: Any
    timestamp: str | None
    id: str


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted the connection (first frame, `connected`)."""

    type: ClassVar[str] = "connected"
    user_id: int | None
    username: str | None
    connection_id: str | None
    heartbeat_interval: float
    rooms: tuple[str, ...]
    reconnect: bool  # False on the first connection of this client


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended; `will_reconnect` says whether the client retries."""

    type: ClassVar[str] = "disconnected"
    code: int
    reason: str
    will_reconnect: bool


@dataclass(frozen=True, slots=True)
class Recovered:
    """A room was resumed after a reconnect with no gap: nothing to refetch."""

    type: ClassVar[str] = "recovered"
    room: str


@dataclass(frozen=True, slots=True)
class NotRecovered:
    """A room could not be resumed (history trimmed): refetch its state."""

    type: ClassVar[str] = "not_recovered"
    room: str
    last_id: str | None


@dataclass(frozen=True, slots=True)
class ResyncRequired:
    """The server may have missed events for the room: refetch its state."""

    type: ClassVar[str] = "resync_required"
    room: str


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """The client is no longer in the room and will not rejoin it.

    `reason` is the server's (e.g. "access_revoked"), "rejoin_failed" when a
    rejoin after reconnect was refused, or None for a leave the app asked for.
    """

    type: ClassVar[str] = "room_left"
    room: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    """An `error` frame that answers no pending request."""

    type: ClassVar[str] = "error"
    code: int
    message: str
    room: str | None


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """Any other frame without a stream id the client does not interpret."""

    type: str
    room: str | None
    data: dict[str, Any] = field(default_factory=dict)


ClientEvent: TypeAlias = (
    RoomEvent
    | Connected
    | Disconnected
    | Recovered
    | NotRecovered
    | ResyncRequired
    | RoomLeft
    | ServerError
    | ServerMessage
)

EVENT_CLASSES: tuple[type[ClientEvent], ...] = (
    RoomEvent,
    Connected,
    Disconnected,
    Recovered,
    NotRecovered,
    ResyncRequired,
    RoomLeft,
    ServerError,
    ServerMessage,
)


def event_to_dict(event: ClientEvent) -> dict[str, Any]:
    """A JSON-ready dict with `type` first (for logs and the terminal client)."""
    out: dict[str, Any] = {"type": event.type}
    for f in fields(event):
        if f.name != "type":
            value = getattr(event, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
