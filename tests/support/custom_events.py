"""A backend's own event type, registered without touching shared/events.py.

Named in EVENT_MODULES (`EVENT_MODULES=tests.support.custom_events`), so workers,
gateways and the CLI import it and check `comment.added` like a built-in type.
Its model nests another, as real payloads do."""

from __future__ import annotations

from pydantic import Field

from shared.events import EventData
from shared.rooms import RoomKind
from workers.api import register_event_type

TYPE = "comment.added"


class Author(EventData):
    user_id: int = Field(description="who wrote the comment")
    username: str


class CommentAdded(EventData):
    """A comment on a task."""

    comment_id: int
    task_id: int
    author: Author
    body: str = Field(min_length=1, max_length=2000)


EXAMPLE = {"comment_id": 3, "task_id": 7, "author": {"user_id": 42, "username": "alice"},
           "body": "Looks good"}

register_event_type(TYPE, CommentAdded, example=EXAMPLE,
                    rooms=[RoomKind.PROJECT, RoomKind.TASK])
