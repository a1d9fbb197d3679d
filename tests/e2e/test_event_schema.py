"""`GET /api/v1/events/schema` from a real gateway process (ENGINE=memory: no Redis
needed to serve it) started with EVENT_MODULES naming a backend's own type.

The document is checked as JSON Schema (tests/support/json_schema.py: no
validator library is locked), lists every type a backend may publish, the
registered one included with its nested model, and agrees with the gateway's own
checks: each type's example validates against exactly its branch and is accepted
by `POST /api/v1/events`; an event the schema refuses is refused there too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomcast.cli.embedded_redis import free_port
from shared.events import event_types
from shared.schema import events_schema
from tests.support.event_registry import registered
from tests.support.json_schema import SchemaProblem, check_document, errors, validate
from tests.support.stack import Gateway, base_env

API_KEY = "schema-test-key-0123456789"
CUSTOM = "tests.support.custom_events"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # a port nothing listens on: the memory engine must not need Redis
    env = base_env(f"redis://127.0.0.1:{free_port()}/0", ENGINE="memory",
                   EVENT_MODULES=CUSTOM, EVENTS_API_KEY=API_KEY)
    port = free_port()
    g = Gateway(port=port, instance_id=f"schema-{port}", env=env,
                log_path=Path(tmp_path_factory.mktemp("schema")) / "gateway.log")
    g.start()
    yield g
    g.terminate()


@pytest.fixture(scope="module")
def schema(gateway: Gateway) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(gateway.get("/api/v1/events/schema"))
    return document


def test_the_document_is_json_schema_listing_every_type(schema: dict[str, Any]) -> None:
    check_document(schema)  # known keywords of the right kinds, every $ref resolves
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    titles = [branch["title"] for branch in schema["oneOf"]]
    builtin = [s.name for s in event_types() if s.builtin and s.from_backends]
    assert titles == [*builtin, "comment.added"]  # registered through EVENT_MODULES
    assert "user_joined" not in titles and "user_left" not in titles  # gateways' own
    comment = next(b for b in schema["oneOf"] if b["title"] == "comment.added")
    assert comment["properties"]["data"]["properties"]["author"] == {"$ref": "#/$defs/Author"}
    assert set(schema["$defs"]["Author"]["required"]) == {"user_id", "username"}
    with registered(CUSTOM):  # what this process generates, knowing the same types
        assert schema == json.loads(json.dumps(events_schema()))


def test_each_example_validates_against_its_own_branch_and_is_accepted(
        gateway: Gateway, schema: dict[str, Any]) -> None:
    for branch in schema["oneOf"]:
        (example,) = branch["examples"]
        validate(example, schema)
        assert [b["title"] for b in schema["oneOf"] if not errors(example, b, schema)] == [
            branch["title"]]
        status, body = gateway.post_events(example, API_KEY)
        assert status == 202, (branch["title"], body)


def test_what_the_schema_refuses_the_gateway_refuses(gateway: Gateway,
                                                     schema: dict[str, Any]) -> None:
    with registered(CUSTOM):
        from tests.support.custom_events import EXAMPLE as COMMENT_EXAMPLE
    event = {"type": "comment.added", "room": "task:7", "data": COMMENT_EXAMPLE,
             "sender": "alice", "key": "c-7"}
    validate(event, schema)
    wrong = [
        {**event, "data": {**COMMENT_EXAMPLE, "author": {"user_id": "42", "username": "a"}}},
        {**event, "data": {**COMMENT_EXAMPLE, "body": ""}},
        {**event, "room": "channel:7"},  # comment.added goes to project and task rooms
        {**event, "type": "Comment.Added"},
        {**event, "extra": 1},
    ]
    for bad in wrong:
        with pytest.raises(SchemaProblem):
            validate(bad, schema)
        status, body = gateway.post_events(bad, API_KEY)
        assert status == 422, (bad, body)
