"""docs/events.md is generated from the event models (shared/event_docs.py) and
kept in sync: regenerated here, it must equal the committed file. Every built-in
type has its section, every field of its model a row, and every example in it
passes the type's own checks. A backend's own types, nested models included, get
the same reference with `--module`."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
from pydantic import Field

from shared import event_docs
from shared.events import EventData, EventType, event_types, validate_event
from tests.support.event_registry import registered

ROOT = Path(__file__).resolve().parents[2]
EVENTS_MD = ROOT / "docs" / "events.md"
BUILTIN = [s for s in event_types() if s.builtin]


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## `([^`]+)`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_committed_reference_is_what_the_models_generate() -> None:
    committed = EVENTS_MD.read_text()
    generated = event_docs.builtin_reference()
    if committed != generated:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), generated.splitlines(keepends=True),
            "docs/events.md (committed)", "generated from the models"))[:40])
        pytest.fail(f"docs/events.md is out of date; regenerate it with\n\n"
                    f"    {event_docs.COMMAND}\n\n{diff}")


def test_every_builtin_type_has_its_fields_and_a_valid_example() -> None:
    sections = _sections(EVENTS_MD.read_text())
    assert list(sections) == [s.name for s in BUILTIN]
    for spec in BUILTIN:
        section = sections[spec.name]
        for name, field in spec.model.model_fields.items():
            required = "yes" if field.is_required() else "no"
            description = re.escape(str(field.description))
            row = rf"^\| `{name}` \| [^|]+ \| {required} \| {description} \|$"
            assert re.search(row, section, re.M), (spec.name, name)
        (example,) = re.findall(r"```json\n(.*?)\n```", section, re.S)
        event = json.loads(example)
        assert event["type"] == spec.name
        validate_event(spec.name, event["room"], event["data"], from_backend=spec.from_backends)
        assert ("a backend cannot publish it" in section) is not spec.from_backends


def test_a_registered_type_is_listed_with_its_nested_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    with registered("tests.support.custom_events"):  # what --module does, undone after
        assert event_docs.main(["--module", "tests.support.custom_events"]) == 0
    text = capsys.readouterr().out
    sections = _sections(text)
    assert list(sections)[:len(BUILTIN)] == [s.name for s in BUILTIN]
    comment = sections["comment.added"]
    assert "Rooms: `project:<id>`, `task:<id>`. Published by: backends." in comment
    assert "| `author.user_id` | integer | yes | who wrote the comment |" in comment
    assert "| `body` | string | yes | 1..2000 characters |" in comment
    assert "[`comment.added`](#commentadded)" in text


class Author(EventData):
    user_id: int = Field(description="who wrote the comment")
    username: str


class Thread(EventData):
    """A comment with its replies, which are comments with replies."""

    comment_id: int
    task_id: int
    author: Author
    body: str = Field(min_length=1, max_length=2000)
    replies: list[Thread] = []
    parent: Parent | None = None


class Parent(EventData):
    comment_id: int
    thread: Thread | None = None


Thread.model_rebuild()


def test_a_recursive_model_is_named_not_listed_again() -> None:
    example = {"comment_id": 1, "task_id": 1, "body": "x",
               "author": {"user_id": 1, "username": "a"}}
    text = event_docs.render([EventType("thread.grown", Thread, "A thread grew.", example)])
    rows = [line.split(" | ")[0].strip("|` ") for line in text.splitlines()
            if line.startswith("| `")]
    assert rows == ["comment_id", "task_id", "author", "author.user_id", "author.username",
                    "body", "replies", "parent", "parent.comment_id", "parent.thread"]
    assert ("| `replies` | array of object | no | default `[]`; its fields are those of "
            "`data` |") in text
    assert "| `parent.thread` | object or null | no | default `null`; its fields are those " \
           "of `data` |" in text
