"""Room names: parse, validate, format, and the stable shard of a room."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from enum import StrEnum

# No leading zeros ("project:007" is invalid) and at most 19 digits (fits int64 ids).
ROOM_PATTERN = re.compile(r"^(project|channel|task|user):([1-9][0-9]{0,18})$")


class RoomKind(StrEnum):
    PROJECT = "project"
    CHANNEL = "channel"
    TASK = "task"
    USER = "user"


class InvalidRoom(ValueError):
    """The text is not a room name of the form kind:positive-id."""


@dataclass(frozen=True, slots=True)
class Room:
    kind: RoomKind
    id: int

    @classmethod
    def parse(cls, text: object) -> Room:
        if not isinstance(text, str):
            raise InvalidRoom("room must be a string")
        match = ROOM_PATTERN.fullmatch(text)
        if match is None:
            raise InvalidRoom(f"invalid room: {text[:80]!r}")
        return cls(RoomKind(match.group(1)), int(match.group(2)))

    @classmethod
    def user(cls, user_id: int) -> Room:
        return cls(RoomKind.USER, user_id)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


def shard_of(room: str, shards: int) -> int:
    """A stable shard for a room: the same on every process and every Python run."""
    return zlib.crc32(room.encode()) % shards
