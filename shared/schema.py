"""JSON Schema of the events a backend may publish, generated from the models in
the registry (built-in and registered types), as served at /api/v1/events/schema.

One document: a `oneOf` with one branch per type, each holding its `data` model
inline. Models nested in a `data` model (a registered type's `author: Author`)
are in the document's own `$defs`, where their `$ref`s point: a schema generated
per model would carry its `$defs` inside `data`, and its `#/$defs/...` references
would then point at nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.events import MAX_KEY_LENGTH, MAX_SENDER_LENGTH, EventType, event_types
from shared.rooms import ROOM_PATTERN

REF_PREFIX = "#/$defs/"


def _room_pattern(spec: EventType) -> str:
    if spec.rooms is None:
        return ROOM_PATTERN.pattern
    kinds = "|".join(sorted(k.value for k in spec.rooms))
    return f"^({kinds}):[1-9][0-9]{{0,18}}$"


def event_schema(spec: EventType, data: dict[str, Any]) -> dict[str, Any]:
    """One type's branch; `data` is its model's schema (see `events_schema`)."""
    return {
        "title": spec.name,
        "description": spec.description,
        "type": "object",
        "required": ["type", "room", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": spec.name},
            "room": {"type": "string", "pattern": _room_pattern(spec)},
            "data": data,
            "sender": {"type": "string", "minLength": 1, "maxLength": MAX_SENDER_LENGTH,
                       "default": "system"},
            "key": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                    "description": "idempotency key: the same key appends once"},
        },
        "examples": [{"type": spec.name, "room": example_room(spec), "data": spec.example}],
    }


def example_room(spec: EventType) -> str:
    kind = sorted(k.value for k in spec.rooms)[0] if spec.rooms else "project"
    return f"{kind}:1"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def data_schemas(specs: Sequence[EventType]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each type's `data` schema, in the order of `specs`, and the definitions of
    the models nested in them (referenced as `#/$defs/<name>`)."""
    keyed, top = models_json_schema([(s.model, "validation") for s in specs],
                                    ref_template=REF_PREFIX + "{model}")
    defs: dict[str, Any] = top.get("$defs", {})
    schemas = []
    for spec in specs:
        ref = keyed[(spec.model, "validation")].get("$ref", "")
        schemas.append(copy.deepcopy(defs[ref.removeprefix(REF_PREFIX)]) if ref else {})
    # keep the definitions something still points at (nested models), transitively
    kept: dict[str, Any] = {}
    pending = [r.removeprefix(REF_PREFIX) for r in _refs(schemas)]
    while pending:
        name = pending.pop()
        if name in kept or name not in defs:
            continue
        kept[name] = defs[name]
        pending.extend(r.removeprefix(REF_PREFIX) for r in _refs(defs[name]))
    return schemas, dict(sorted(kept.items()))


def events_schema(specs: Iterable[EventType] | None = None) -> dict[str, Any]:
    """The document for `specs` (default: every type a backend may publish)."""
    publishable: Sequence[EventType] = [s for s in (event_types() if specs is None else specs)
                                        if s.from_backends]
    schemas, defs = data_schemas(publishable)
    document: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "roomcast events",
        "oneOf": [event_schema(spec, data) for spec, data in zip(publishable, schemas,
                                                                 strict=True)],
    }
    if defs:
        document["$defs"] = defs
    return document
