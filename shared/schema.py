"""JSON Schema of the events a backend may publish, generated from the models in
the registry (built-in and registered types), as served at /api/v1/events/schema."""

from __future__ import annotations

from typing import Any

from shared.events import MAX_KEY_LENGTH, MAX_SENDER_LENGTH, EventType, event_types
from shared.rooms import ROOM_PATTERN


def _room_pattern(spec: EventType) -> str:
    if spec.rooms is None:
        return ROOM_PATTERN.pattern
    kinds = "|".join(sorted(k.value for k in spec.rooms))
    return f"^({kinds}):[1-9][0-9]{{0,18}}$"


def event_schema(spec: EventType) -> dict[str, Any]:
    return {
        "title": spec.name,
        "description": spec.description,
        "type": "object",
        "required": ["type", "room", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": spec.name},
            "room": {"type": "string", "pattern": _room_pattern(spec)},
            "data": spec.model.model_json_schema(),
            "sender": {"type": "string", "minLength": 1, "maxLength": MAX_SENDER_LENGTH,
                       "default": "system"},
            "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                    "description": "idempotency key: the same key appends once"},
        },
        "examples": [{"type": spec.name, "room": _example_room(spec), "data": spec.example}],
    }


def _example_room(spec: EventType) -> str:
    kind = sorted(k.value for k in spec.rooms)[0] if spec.rooms else "project"
    return f"{kind}:1"


def events_schema() -> dict[str, Any]:
    publishable = [spec for spec in event_types() if spec.from_backends]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "roomcast events",
        "oneOf": [event_schema(spec) for spec in publishable],
    }
