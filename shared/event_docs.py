"""The event reference (docs/events.md), generated from the models in the registry:
every type with its rooms, who publishes it, its `data` fields (name, type,
required, description) and an example, checked against the model.

    python -m shared.event_docs --write docs/events.md      # the built-in types
    python -m shared.event_docs --module myapp.events       # and a backend's own

A test regenerates docs/events.md and fails when the committed file differs, so
the reference and the models never drift apart. A backend that registers types
runs the second form for a reference of its own that lists them too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shared.codec import encode_event, frame_from_entry
from shared.events import EventType, event_types, import_event_modules
from shared.schema import REF_PREFIX, data_schemas, example_room

COMMAND = "python -m shared.event_docs --write docs/events.md"
EXAMPLE_TIMESTAMP = "2025-11-13T12:00:00.000000Z"
EXAMPLE_ID = "1731499200000-0"
MAX_DEPTH = 4  # nested models listed this deep (a recursive model stops here)

INTRO = """\
Every type of room event, generated from the models in `shared/events.py`.
The `data` fields listed are checked against the type's model when a backend
publishes (a bad payload raises at the call site and is never queued) and again
in the worker; further fields are kept and reach clients unchanged. The same
models give the JSON Schema a gateway serves at `/api/v1/events/schema`.

A client receives each event as one JSON object: the published `type`, `room`
and `data`, the `sender` (`"system"` unless the publisher named one), the
`timestamp` of the publish, and `id`, the event's stream id in its room (what a
client resumes from). For example:

```json
{received}
```

How a backend publishes these (`workers.api`, `POST /api/v1/events`, the CLI)
and registers types of its own is in [publishing.md](publishing.md). A backend
with its own types can generate a reference that lists them too:
`python -m shared.event_docs --module myapp.events`.
"""


def _anchor(name: str) -> str:
    """GitHub's anchor for a heading holding `name` in backticks."""
    return re.sub(r"[^\w\- ]", "", name.lower()).replace(" ", "-")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rooms(spec: EventType) -> str:
    if spec.rooms is None:
        return "any"
    return ", ".join(f"`{k.value}:<id>`" for k in sorted(spec.rooms, key=lambda k: k.value))


def _publisher(spec: EventType) -> str:
    return "backends" if spec.from_backends else "gateways only"


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.removeprefix(REF_PREFIX) if isinstance(ref, str) else None


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    name = _ref_name(schema)
    if name is not None:
        target = defs.get(name, {})
        return "object" if "properties" in target else _type(target, defs)
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return " or ".join(dict.fromkeys(_type(s, defs) for s in schema[combinator]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        items = schema.get("items")
        return f"array of {_type(items, defs)}" if isinstance(items, dict) else "array"
    if kind == "string" and "format" in schema:
        return f"string ({schema['format']})"
    return str(kind) if kind else "any"


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    if "minLength" in schema or "maxLength" in schema:
        parts.append(f"{schema.get('minLength', 0)}..{schema.get('maxLength', '')} characters")
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    return "; ".join(parts)


def _rows(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "",
          path: tuple[tuple[str, str], ...] = ()) -> Iterator[str]:
    """A row per field, then the fields of a model it holds as `field.sub` rows. A
    model already being listed above (a recursive one) is named, not listed again."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        nested = _nested(prop)
        seen = dict(path).get(nested or "")
        notes = [prop.get("description", ""), _bounds(prop)]
        if "default" in prop:
            notes.append(f"default `{json.dumps(prop['default'])}`")
        if seen is not None:
            notes.append(f"its fields are those of `{seen or 'data'}`")
        description = "; ".join(n for n in notes if n)
        yield (f"| `{prefix}{name}` | {_cell(_type(prop, defs))} | "
               f"{'yes' if name in required else 'no'} | {_cell(description)} |")
        if nested is not None and seen is None and "properties" in defs.get(nested, {}) \
                and len(path) < MAX_DEPTH:
            yield from _rows(defs[nested], defs, f"{prefix}{name}.",
                             (*path, (nested, f"{prefix}{name}")))


def _nested(prop: dict[str, Any]) -> str | None:
    """The name of the model a field holds: itself, or it or null, or the items of
    an array."""
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    if len(options) != 1:
        return None
    target = options[0].get("items") if options[0].get("type") == "array" else options[0]
    return _ref_name(target) if isinstance(target, dict) else None


def _example(spec: EventType) -> dict[str, Any]:
    room = example_room(spec)
    data = spec.model.model_validate(spec.example).model_dump(mode="json")  # raises if wrong
    if spec.from_backends:
        return {"type": spec.name, "room": room, "data": data}
    received = encode_event(spec.name, room, data, str(data.get("username", "system")),
                            EXAMPLE_TIMESTAMP)
    parsed: dict[str, Any] = json.loads(frame_from_entry(received, EXAMPLE_ID))
    return parsed


def _section(spec: EventType, data: dict[str, Any], defs: dict[str, Any]) -> str:
    lines = [f"## `{spec.name}`", "", spec.description or "(no description)", "",
             f"Rooms: {_rooms(spec)}. Published by: {_publisher(spec)}"
             + ("; a backend cannot publish it." if not spec.from_backends else "."), ""]
    rows = list(_rows(data, defs, path=((str(data.get("title", "")), ""),)))
    if rows:
        lines += ["| field | type | required | description |", "|---|---|---|---|", *rows, ""]
    else:
        lines += ["No required fields.", ""]
    how = "published" if spec.from_backends else "a client receives it"
    lines += [f"Example ({how}):", "", "```json", json.dumps(_example(spec)), "```", ""]
    return "\n".join(lines)


def render(specs: Sequence[EventType]) -> str:
    """The reference for `specs`, in their order."""
    schemas, defs = data_schemas(specs)
    publishable = [s for s in specs if s.from_backends]
    first = next((s for s in publishable if s.name == "task.created"), None) or next(
        iter(publishable), None)
    received = "{}"
    if first is not None:
        encoded = encode_event(first.name, example_room(first), first.example, "system",
                               EXAMPLE_TIMESTAMP)
        received = frame_from_entry(encoded, EXAMPLE_ID)
    out = ["# Event reference", "",
           f"<!-- Generated by `{COMMAND}` from the models; edit those, not this file. -->", "",
           INTRO.format(received=json.dumps(json.loads(received))), "## Types", "",
           "| type | rooms | published by | what |", "|---|---|---|---|"]
    out += [f"| [`{s.name}`](#{_anchor(s.name)}) | {_rooms(s)} | {_publisher(s)} | "
            f"{_cell(s.description)} |" for s in specs]
    out.append("")
    out += [_section(spec, data, defs) for spec, data in zip(specs, schemas, strict=True)]
    return "\n".join(out).rstrip("\n") + "\n"


def builtin_reference() -> str:
    """docs/events.md: the built-in types only, whatever this process registered."""
    return render([s for s in event_types() if s.builtin])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.event_docs",
                                     description="Print the event reference (Markdown).")
    parser.add_argument("--module", action="append", default=[], metavar="MODULE",
                        help="import MODULE first and list the types it registers too")
    parser.add_argument("--write", metavar="PATH", type=Path,
                        help="write the reference to PATH instead of printing it")
    args = parser.parse_args(argv)
    if "" not in sys.path:
        sys.path.insert(0, "")  # modules in the working directory, as `python -m` finds them
    try:
        import_event_modules(args.module)
    except ValueError as exc:
        parser.error(str(exc))
    text = render(event_types()) if args.module else builtin_reference()
    if args.write is not None:
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
