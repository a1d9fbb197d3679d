"""From a backend job to every member of the room, on both engines (on Redis the
members sit on two gateways)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.engine_stack import EngineStack
from tests.support.ws import WsClient
from workers.api import Backend


@pytest.fixture(scope="module")
def stack(engine_stack: EngineStack) -> EngineStack:
    return engine_stack


@pytest.fixture
def backend(stack: EngineStack) -> Backend:
    return stack.backend


async def _member(stack: EngineStack, backend: Backend, gateway: int, user_id: int,
                  room: str) -> WsClient:
    backend.grant_access(user_id, room)
    client = await WsClient.open(stack.gateway(gateway).url, stack.token(user_id, f"u{user_id}"))
    await client.wait_for(lambda f: f["type"] == "connected")
    await client.join_when_granted(room)
    return client


async def test_api_event_reaches_every_member_and_nobody_else(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    a = await _member(stack, backend, 0, unique_id(), room)
    b = await _member(stack, backend, 1, unique_id(), room)
    outsider = await WsClient.open(stack.gateway(0).url, stack.token(unique_id()))
    await outsider.wait_for(lambda f: f["type"] == "connected")

    key = backend.task_created(room, task_id=7, project_id=1, title="Ship it")
    got_a = (await a.wait_events(room, 1, type_="task.created"))[0]
    got_b = (await b.wait_events(room, 1, type_="task.created"))[0]

    assert got_a["id"] == got_b["id"]
    assert got_a["data"] == {"task_id": 7, "project_id": 1, "title": "Ship it"}
    assert got_a["sender"] == "system" and got_a["timestamp"].endswith("Z")
    assert set(got_a) == {"type", "room", "data", "sender", "timestamp", "id"}
    assert key
    # a later event on the outsider's own room proves it is alive and saw nothing else
    backend.notify(outsider_id := int(outsider.frames[0]["data"]["user_id"]), title="ping")
    await outsider.wait_events(f"user:{outsider_id}", 1)
    assert outsider.events(room) == []
    for c in (a, b, outsider):
        await c.close()


async def test_cli_publish_reaches_members(stack: EngineStack, backend: Backend,
                                           unique_id: Callable[[], int]) -> None:
    room = f"channel:{unique_id()}"
    a = await _member(stack, backend, 0, unique_id(), room)
    b = await _member(stack, backend, 1, unique_id(), room)
    data = {"message_id": "m1", "content": "edited", "extra": [1, 2]}
    result = await stack.acli("publish", "message.edited", "--room", room, "--data",
                              json.dumps(data), "--sender", "cli")
    assert result.stdout.strip()
    got_a = (await a.wait_events(room, 1, type_="message.edited"))[0]
    got_b = (await b.wait_events(room, 1, type_="message.edited"))[0]
    assert got_a["id"] == got_b["id"] and got_a["data"] == data and got_a["sender"] == "cli"
    await a.close()
    await b.close()
