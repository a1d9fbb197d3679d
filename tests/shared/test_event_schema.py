"""The JSON Schema document of every event (shared/schema.py), in process: a
registered type whose model nests another keeps valid references, and every
type's example validates against its branch only. The document as served by a
gateway process is tested in tests/e2e/test_event_schema.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import events
from shared.events import EventData, EventType, event_types
from shared.schema import events_schema
from tests.support.json_schema import SchemaProblem, check_document, errors, validate


class Reviewer(EventData):
    user_id: int
    username: str


class ReviewRequested(EventData):
    """A review was asked of someone."""

    task_id: int
    reviewer: Reviewer
    also: list[Reviewer] = []


EXAMPLE = {"task_id": 7, "reviewer": {"user_id": 42, "username": "alice"}}


@pytest.fixture
def nested_type(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventType]:
    """A registered type with nested models, in the registry for this test only."""
    spec = EventType("review.requested", ReviewRequested, "A review was asked.", EXAMPLE)
    monkeypatch.setitem(events._REGISTRY, spec.name, spec)
    yield spec


def test_nested_models_are_referenced_where_the_references_point(nested_type: EventType
                                                                 ) -> None:
    document = events_schema()
    check_document(document)  # before the fix: '#/$defs/Reviewer' pointed at nothing
    assert "Reviewer" in document["$defs"]
    event = {"type": "review.requested", "room": "task:7", "data": EXAMPLE}
    validate(event, document)
    wrong = {**event, "data": {**EXAMPLE, "reviewer": {"user_id": "42", "username": "a"}}}
    with pytest.raises(SchemaProblem, match=r"reviewer\.user_id"):
        validate(wrong, document)


def test_every_example_matches_its_own_branch_and_no_other() -> None:
    document = events_schema()
    check_document(document)
    branches = {b["title"]: b for b in document["oneOf"]}
    publishable = [s for s in event_types() if s.from_backends]
    assert set(branches) == {s.name for s in publishable}
    assert {"user_joined", "user_left"}.isdisjoint(branches)  # made by gateways only
    for spec in publishable:
        (example,) = branches[spec.name]["examples"]
        validate(example, document)
        matching = [t for t, b in branches.items() if not errors(example, b, document)]
        assert matching == [spec.name]


def test_room_kinds_and_required_fields_are_in_the_schema() -> None:
    document = events_schema()
    notification = {"type": "notification.new", "room": "project:1", "data": {"title": "x"}}
    with pytest.raises(SchemaProblem, match="does not match"):
        validate(notification, document)
    validate({**notification, "room": "user:1"}, document)
    with pytest.raises(SchemaProblem, match="'title' is required"):
        validate({"type": "task.created", "room": "project:1",
                  "data": {"task_id": 1, "project_id": 1}}, document)
    with pytest.raises(SchemaProblem):
        validate({"type": "task.created", "room": "project:1", "data": {}, "extra": 1}, document)
