"""Typed results of requests, parsed from the server's direct replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Joined:
    """A `room_joined` reply. `recovered` is None for a join without `since`."""

    room: str
    last_id: str | None
    recovered: bool | None
    replayed: int | None


@dataclass(frozen=True, slots=True)
class PresenceUser:
    user_id: int
    username: str


def frame_data(frame: Frame) -> dict[str, Any]:
    data = frame.get("data")
    return data if isinstance(data, dict) else {}


def frame_room(frame: Frame) -> str | None:
    """The room of a frame: top level, else inside `data` (both forms are in SPEC)."""
    room = frame.get("room")
    if isinstance(room, str):
        return room
    room = frame_data(frame).get("room")
    return room if isinstance(room, str) else None


def parse_joined(frame: Frame) -> Joined:
    data = frame_data(frame)
    last_id = data.get("last_id")
    recovered = data.get("recovered")
    replayed = data.get("replayed")
    return Joined(
        room=frame_room(frame) or "",
        last_id=last_id if isinstance(last_id, str) else None,
        recovered=recovered if isinstance(recovered, bool) else None,
        replayed=replayed if isinstance(replayed, int) else None,
    )


def parse_ack_key(frame: Frame) -> str:
    key = frame_data(frame).get("key")
    return key if isinstance(key, str) else ""


def parse_presence(frame: Frame) -> list[PresenceUser]:
    users = frame_data(frame).get("users")
    if not isinstance(users, list):
        return []
    return [
        PresenceUser(user_id=u["user_id"], username=u["username"])
        for u in users
        if isinstance(u, dict)
        and isinstance(u.get("user_id"), int)
        and isinstance(u.get("username"), str)
    ]


def parse_nothing(frame: Frame) -> None:
    return None


def parse_raw(frame: Frame) -> Frame:
    return frame


def parse_error(frame: Frame) -> tuple[int, str]:
    data = frame_data(frame)
    code = data.get("code")
    message = data.get("error")
    return (
        code if isinstance(code, int) else 0,
        message if isinstance(message, str) else "unknown error",
    )
