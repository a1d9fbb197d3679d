"""The typed event helpers, written once for every publisher (a backend, a batch,
the async twin, a job publishing from inside itself): each builds the event's
data and hands it to the publisher's `event`, whose return it returns."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from shared.publishing import DEFAULT_SENDER
from shared.rooms import Room

R = TypeVar("R")


class EventHelpers(Generic[R]):
    def event(self, type_: str, room: str, data: dict[str, Any], *,
              sender: str = DEFAULT_SENDER, key: str | None = None) -> R:
        raise NotImplementedError

    def message(self, /, room: str, *, message_id: str, content: str, user_id: int,
                sender: str = DEFAULT_SENDER, key: str | None = None, **extra: Any) -> R:
        return self.event("message", room, {"message_id": message_id, "content": content,
                                             "user_id": user_id, **extra},
                          sender=sender, key=key)

    def message_edited(self, /, room: str, *, message_id: str, content: str,
                       sender: str = DEFAULT_SENDER, key: str | None = None, **extra: Any) -> R:
        return self.event("message.edited", room,
                          {"message_id": message_id, "content": content, **extra},
                          sender=sender, key=key)

    def message_deleted(self, /, room: str, *, message_id: str, sender: str = DEFAULT_SENDER,
                        key: str | None = None, **extra: Any) -> R:
        return self.event("message.deleted", room, {"message_id": message_id, **extra},
                          sender=sender, key=key)

    def task_created(self, /, room: str, *, task_id: int, project_id: int, title: str,
                     sender: str = DEFAULT_SENDER, key: str | None = None, **extra: Any) -> R:
        return self.event("task.created", room, {"task_id": task_id, "project_id": project_id,
                                                 "title": title, **extra},
                          sender=sender, key=key)

    def task_updated(self, /, room: str, *, task_id: int, project_id: int,
                     changes: dict[str, Any], sender: str = DEFAULT_SENDER,
                     key: str | None = None, **extra: Any) -> R:
        return self.event("task.updated", room, {"task_id": task_id, "project_id": project_id,
                                                 "changes": changes, **extra},
                          sender=sender, key=key)

    def task_status_changed(self, /, room: str, *, task_id: int, project_id: int,
                            old_status: str, new_status: str, sender: str = DEFAULT_SENDER,
                            key: str | None = None, **extra: Any) -> R:
        return self.event("task.status_changed", room,
                          {"task_id": task_id, "project_id": project_id,
                           "old_status": old_status, "new_status": new_status, **extra},
                          sender=sender, key=key)

    def task_assigned(self, /, room: str, *, task_id: int, project_id: int,
                      assignee_id: int | None, sender: str = DEFAULT_SENDER,
                      key: str | None = None, **extra: Any) -> R:
        return self.event("task.assigned", room,
                          {"task_id": task_id, "project_id": project_id,
                           "assignee_id": assignee_id, **extra}, sender=sender, key=key)

    def task_deleted(self, /, room: str, *, task_id: int, project_id: int,
                     sender: str = DEFAULT_SENDER, key: str | None = None, **extra: Any) -> R:
        return self.event("task.deleted", room,
                          {"task_id": task_id, "project_id": project_id, **extra},
                          sender=sender, key=key)

    def project_updated(self, /, room: str, *, project_id: int, changes: dict[str, Any],
                        sender: str = DEFAULT_SENDER, key: str | None = None, **extra: Any) -> R:
        return self.event("project.updated", room,
                          {"project_id": project_id, "changes": changes, **extra},
                          sender=sender, key=key)

    def project_archived(self, /, room: str, *, project_id: int, sender: str = DEFAULT_SENDER,
                         key: str | None = None, **extra: Any) -> R:
        return self.event("project.archived", room, {"project_id": project_id, **extra},
                          sender=sender, key=key)

    def notify(self, /, user_id: int, *, title: str, sender: str = DEFAULT_SENDER,
               key: str | None = None, **extra: Any) -> R:
        return self.event("notification.new", str(Room.user(user_id)),
                          {"title": title, **extra}, sender=sender, key=key)
