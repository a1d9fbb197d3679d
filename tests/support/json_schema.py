"""Just enough JSON Schema (draft 2020-12) to check the event schema roomcast
serves, without a validator library (none is locked in uv.lock).

`check_document` checks the shape of a schema document: every keyword is one
this module knows, with a value of the right kind, every pattern compiles, and
every `$ref` points at a schema inside the document. `validate` checks an
instance against it. Both refuse a keyword they do not know rather than pass it
by, so a schema that grows a new keyword fails here loudly instead of being
checked by half.
"""

from __future__ import annotations

import operator
import re
from typing import Any

TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
ANNOTATIONS = {"$schema", "title", "description", "default", "examples", "format",
               "deprecated", "readOnly", "writeOnly", "$comment"}
SCHEMA_MAPS = {"properties", "$defs"}
SCHEMA_LISTS = {"oneOf", "anyOf", "allOf", "prefixItems"}
SCHEMAS = {"additionalProperties", "items", "not"}
COUNTS = {"minLength", "maxLength", "minItems"}
BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
OTHER = {"type", "required", "const", "enum", "pattern", "$ref"}
KNOWN = ANNOTATIONS | SCHEMA_MAPS | SCHEMA_LISTS | SCHEMAS | COUNTS | BOUNDS | OTHER


class SchemaProblem(AssertionError):
    pass


def resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise SchemaProblem(f"$ref {ref!r} leaves the document")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaProblem(f"$ref {ref!r} points at nothing")
        node = node[part]
    if not isinstance(node, (dict, bool)):
        raise SchemaProblem(f"$ref {ref!r} points at no schema")
    return node


def check_document(root: dict[str, Any]) -> None:
    _check(root, root, "#")


def _check(schema: Any, root: dict[str, Any], where: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaProblem(f"{where}: a schema is an object or a boolean")
    unknown = set(schema) - KNOWN
    if unknown:
        raise SchemaProblem(f"{where}: keywords this check does not know: {sorted(unknown)}")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or any(k not in TYPES for k in kinds):
            raise SchemaProblem(f"{where}: bad type {kind!r}")
    required = schema.get("required")
    if required is not None and (not isinstance(required, list) or len(set(required)) !=
                                 len(required) or not all(isinstance(r, str) for r in required)):
        raise SchemaProblem(f"{where}: required must list distinct names")
    for key in COUNTS & set(schema):
        if not isinstance(schema[key], int) or isinstance(schema[key], bool) or schema[key] < 0:
            raise SchemaProblem(f"{where}: {key} must be a non-negative integer")
    for key in BOUNDS & set(schema):
        if not isinstance(schema[key], (int, float)) or isinstance(schema[key], bool):
            raise SchemaProblem(f"{where}: {key} must be a number")
    if "pattern" in schema:
        re.compile(schema["pattern"])
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaProblem(f"{where}: enum must be a list")
    if "$ref" in schema:
        resolve(root, schema["$ref"])
    for key in SCHEMA_MAPS & set(schema):
        if not isinstance(schema[key], dict):
            raise SchemaProblem(f"{where}: {key} must be an object")
        for name, sub in schema[key].items():
            _check(sub, root, f"{where}/{key}/{name}")
    for key in SCHEMA_LISTS & set(schema):
        if not isinstance(schema[key], list) or not schema[key]:
            raise SchemaProblem(f"{where}: {key} must be a non-empty list")
        for n, sub in enumerate(schema[key]):
            _check(sub, root, f"{where}/{key}/{n}")
    for key in SCHEMAS & set(schema):
        _check(schema[key], root, f"{where}/{key}")


def _type_of(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number", "integer"} if value.is_integer() else {"number"}
    if isinstance(value, str):
        return {"string"}
    if isinstance(value, list):
        return {"array"}
    if isinstance(value, dict):
        return {"object"}
    raise SchemaProblem(f"{value!r} is no JSON value")


def errors(instance: Any, schema: Any, root: dict[str, Any], where: str = "") -> list[str]:
    """What is wrong with `instance` (empty: it validates)."""
    if schema is True:
        return []
    if schema is False:
        return [f"{where or '.'}: nothing is allowed here"]
    found: list[str] = []
    at = where or "."
    if "$ref" in schema:
        found += errors(instance, resolve(root, schema["$ref"]), root, where)
    kind = schema.get("type")
    if kind is not None:
        kinds = set(kind if isinstance(kind, list) else [kind])
        if not kinds & _type_of(instance):
            return [*found, f"{at}: expected {sorted(kinds)}, got {instance!r}"]
    if "const" in schema and instance != schema["const"]:
        found.append(f"{at}: expected {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        found.append(f"{at}: not one of {schema['enum']!r}")
    if isinstance(instance, str):
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            found.append(f"{at}: {instance!r} does not match {schema['pattern']!r}")
        if len(instance) < schema.get("minLength", 0):
            found.append(f"{at}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            found.append(f"{at}: longer than {schema['maxLength']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        checks = {"minimum": operator.ge, "maximum": operator.le,
                  "exclusiveMinimum": operator.gt, "exclusiveMaximum": operator.lt}
        for key, holds in checks.items():
            if key in schema and not holds(instance, schema[key]):
                found.append(f"{at}: {key} {schema[key]}")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                found.append(f"{at}: {name!r} is required")
        properties = schema.get("properties", {})
        for name, value in instance.items():
            if name in properties:
                found += errors(value, properties[name], root, f"{where}.{name}")
            elif "additionalProperties" in schema:
                found += errors(value, schema["additionalProperties"], root, f"{where}.{name}")
    if isinstance(instance, list):
        prefix = schema.get("prefixItems", [])
        for n, value in enumerate(instance):
            if n < len(prefix):
                found += errors(value, prefix[n], root, f"{where}[{n}]")
            elif "items" in schema:
                found += errors(value, schema["items"], root, f"{where}[{n}]")
        if len(instance) < schema.get("minItems", 0):
            found.append(f"{at}: fewer than {schema['minItems']} items")
    for sub in schema.get("allOf", []):
        found += errors(instance, sub, root, where)
    if "anyOf" in schema and all(errors(instance, s, root, where) for s in schema["anyOf"]):
        found.append(f"{at}: matches none of anyOf")
    if "oneOf" in schema:
        each: list[list[str]] = [errors(instance, s, root, where) for s in schema["oneOf"]]
        matching = sum(1 for e in each if not e)
        if matching != 1:
            found.append(f"{at}: matches {matching} branches of oneOf, not exactly one")
        if not matching:  # say why the nearest branch refused it
            nearest = sorted(each, key=len)[0]
            found.extend(nearest)
    if "not" in schema and not errors(instance, schema["not"], root, where):
        found.append(f"{at}: matches what `not` excludes")
    return found


def validate(instance: Any, root: dict[str, Any]) -> None:
    problems = errors(instance, root, root)
    if problems:
        raise SchemaProblem("; ".join(problems[:5]))
