"""From what a backend asks for to jobs for the queue, checked at the call site.

Used by `workers.api` (backends, in-process) and by the gateway's HTTP API, so a
bad event raises (or is answered 422) where it was made and never reaches the
queue: an unknown type, data that fails its model, a bad room, an event over
EVENT_MAX_BYTES, a bad user id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from shared.engines.access import check_link
from shared.engines.roles import AccessJob, PendingEvent
from shared.events import InvalidEvent, check_key, encode_checked
from shared.rooms import InvalidRoom, Room
from shared.settings import Settings

EVENT_FIELDS = frozenset({"type", "room", "data", "sender", "key"})
DEFAULT_SENDER = "system"


def new_key() -> str:
    return uuid.uuid4().hex


def pending_event(settings: Settings, type_: str, room: str, data: Any, *,
                  sender: str = DEFAULT_SENDER, key: str | None = None) -> PendingEvent:
    encoded = encode_checked(type_, room, data, sender, settings.EVENT_MAX_BYTES)
    return PendingEvent(check_key(key) if key is not None else new_key(), room, encoded)


def event_from_payload(settings: Settings, payload: Mapping[str, Any]) -> PendingEvent:
    """`{"type", "room", "data", "sender"?, "key"?}` as a backend sends it."""
    if not isinstance(payload, Mapping):
        raise InvalidEvent("an event must be an object")
    unknown = set(payload) - EVENT_FIELDS
    if unknown:
        raise InvalidEvent(f"unknown field {sorted(unknown)[0][:40]!r}; an event has "
                           f"{', '.join(sorted(EVENT_FIELDS))}")
    type_, room = payload.get("type"), payload.get("room")
    if not isinstance(type_, str) or not isinstance(room, str):
        raise InvalidEvent("an event needs a string 'type' and 'room'")
    return pending_event(settings, type_, room, payload.get("data"),
                         sender=payload.get("sender", DEFAULT_SENDER), key=payload.get("key"))


def user_id_of(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("user_id must be a positive integer")
    return value


def room_name(value: object) -> str:
    try:
        return str(Room.parse(value))
    except InvalidRoom as exc:
        raise ValueError(str(exc)) from None


def grant_job(user_id: object, room: object) -> AccessJob:
    return AccessJob("grant", room_name(room), user_id_of(user_id))


def revoke_job(user_id: object, room: object) -> AccessJob:
    return AccessJob("revoke", room_name(room), user_id_of(user_id))


def link_job(room: object, project_room: object) -> AccessJob:
    name, project = room_name(room), room_name(project_room)
    check_link(Room.parse(name), Room.parse(project))
    return AccessJob("link", name, project_room=project)
