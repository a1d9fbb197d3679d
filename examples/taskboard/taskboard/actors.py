"""Dramatiq actors: the taskboard's domain changes, each publishing its events
from inside the job.

The web app only checks a request and enqueues one of these; the worker
(`roomcast worker taskboard.actors`) changes SQLite and publishes. Each
actor builds its change as a function of the open transaction and returns the
events describing it; `outbox.run_job` commits both together and relays the
events, once and in commit order.

A change that can never succeed (the task was deleted meanwhile) raises
`db.NotFound` (or builds an event roomcast refuses), declared in `throws=`: no
retry, straight to Dramatiq's dead-letter queue. Anything else (Redis
unreachable, a locked database) is retried with backoff.
"""

from __future__ import annotations

import sqlite3

import dramatiq

import workers.actors  # noqa: F401  installs roomcast's Dramatiq broker before ours are declared
from taskboard import db, events  # noqa: F401  events: registers comment.added here
from taskboard.outbox import Event, run_job
from workers.api import InvalidEvent, UnknownEventType

QUEUE = "taskboard"
OPTIONS = {"queue_name": QUEUE, "max_retries": 10, "min_backoff": 100, "max_backoff": 10_000,
           "throws": (db.NotFound, InvalidEvent, UnknownEventType)}


def _username(conn: sqlite3.Connection, user_id: int) -> str:
    user = db.user_by_id(conn, user_id)
    if user is None:
        raise db.NotFound(f"no user {user_id}")
    return str(user["username"])


@dramatiq.actor(**OPTIONS)
def create_task(project_id: int, title: str, user_id: int) -> None:
    def change(conn: sqlite3.Connection) -> list[Event]:
        db.project(conn, project_id)
        task_id = db.add_task(conn, project_id, title, user_id)
        return [{"type": "task.created", "room": f"project:{project_id}",
                 "sender": _username(conn, user_id),
                 "data": {"task_id": task_id, "project_id": project_id, "title": title,
                          "status": "todo", "created_by": user_id}}]

    run_job(change)


@dramatiq.actor(**OPTIONS)
def change_task_status(task_id: int, new_status: str, user_id: int) -> None:
    def change(conn: sqlite3.Connection) -> list[Event]:
        task = db.task(conn, task_id)
        old_status = str(task["status"])
        if old_status == new_status:
            return []  # nothing changed, nothing to tell
        db.set_status(conn, task_id, new_status)
        project_id = int(task["project_id"])
        return [{"type": "task.status_changed", "room": f"project:{project_id}",
                 "sender": _username(conn, user_id),
                 "data": {"task_id": task_id, "project_id": project_id,
                          "old_status": old_status, "new_status": new_status}}]

    run_job(change)


@dramatiq.actor(**OPTIONS)
def add_comment(task_id: int, body: str, user_id: int) -> None:
    def change(conn: sqlite3.Connection) -> list[Event]:
        task = db.task(conn, task_id)
        comment_id = db.add_comment(conn, task_id, user_id, body)
        project_id = int(task["project_id"])
        return [{"type": "comment.added", "room": f"project:{project_id}",  # our own type
                 "sender": _username(conn, user_id),
                 "data": {"comment_id": comment_id, "task_id": task_id,
                          "project_id": project_id, "user_id": user_id, "body": body}}]

    run_job(change)


@dramatiq.actor(**OPTIONS)
def post_message(project_id: int, content: str, user_id: int) -> None:
    def change(conn: sqlite3.Connection) -> list[Event]:
        db.project(conn, project_id)
        message_id = db.add_message(conn, project_id, user_id, content)
        # chat goes to the project's channel room, linked to the project room
        return [{"type": "message", "room": f"channel:{project_id}",
                 "sender": _username(conn, user_id),
                 "data": {"message_id": f"m{message_id}", "content": content,
                          "user_id": user_id}}]

    run_job(change)
