"""The taskboard's own event type, registered with roomcast.

Importing this module makes `comment.added` publishable here, and checked like
the built-in types. Workers and gateways import it too: the runner puts it in
EVENT_MODULES, so they validate it and list it in /api/v1/events/schema.
"""

from __future__ import annotations

from shared.events import EventData
from shared.rooms import RoomKind
from workers.api import register_event_type


class CommentAdded(EventData):
    """A comment on a task (sent to the task's project room)."""

    comment_id: int
    task_id: int
    project_id: int
    user_id: int
    body: str


register_event_type(
    "comment.added", CommentAdded,
    example={"comment_id": 3, "task_id": 7, "project_id": 1, "user_id": 42,
             "body": "Done in the staging branch"},
    rooms=[RoomKind.PROJECT])
