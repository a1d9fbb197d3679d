"""PRESENCE_EVENTS_MAX_USERS on both engines: past the bound, joins and leaves of a
room are not announced (no user_joined / user_left), and the room still answers
`presence`. Without it every join of a room of n sends n frames: n^2 as it fills."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.ws import WsClient

MAX_USERS = 2


@pytest.fixture(scope="module")
def stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    return engine_stacks_of_module.start(PRESENCE_EVENTS_MAX_USERS=str(MAX_USERS))


async def _member(stack: EngineStack, gateway: int, user_id: int, room: str) -> WsClient:
    stack.backend.grant_access(user_id, room)
    client = await WsClient.open(stack.gateway(gateway).url, stack.token(user_id, f"u{user_id}"))
    await client.wait_for(lambda f: f["type"] == "connected")
    await client.join_when_granted(room)
    # commands of one connection run in order: once this answers, the join's presence
    # step (and its user_joined, if any) is done
    await client.request("ping")
    return client


async def _marker(stack: EngineStack, watcher: WsClient, room: str, label: str) -> None:
    """An event published after everything before it: once the watcher has it, any
    presence event appended earlier has reached the watcher too."""
    project_id = int(room.split(":")[1])
    stack.backend.project_updated(room, project_id=project_id, changes={"marker": label})
    await watcher.wait_for(lambda f: f["type"] == "project.updated"
                           and f["data"]["changes"].get("marker") == label)


def _presence_of(watcher: WsClient, room: str, me: int) -> list[tuple[str, int]]:
    """The presence events the watcher got about others (its own join comes too)."""
    return [(f["type"], f["data"]["user_id"]) for f in watcher.events(room)
            if f["type"] in ("user_joined", "user_left") and f["data"]["user_id"] != me]


async def _presence_settles(watcher: WsClient, room: str, users: int) -> None:
    """Ask `presence` (each answer is a round trip; bounded) until `users` are present."""
    for _ in range(500):
        reply = await watcher.request("presence", room)
        if len(reply["data"]["users"]) == users:
            return
    raise AssertionError(f"presence of {room} never came down to {users}")


async def test_joins_and_leaves_past_the_bound_are_not_announced(
        stack: EngineStack, unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    first, second, third = unique_id(), unique_id(), unique_id()
    watcher = await _member(stack, 0, first, room)
    b = await _member(stack, 1, second, room)  # 2 present: at the bound, announced
    c = await _member(stack, 0, third, room)  # 3 present: past it, not announced
    await _marker(stack, watcher, room, "joined")
    assert _presence_of(watcher, room, first) == [("user_joined", second)]

    presence = await watcher.request("presence", room)
    assert sorted(u["user_id"] for u in presence["data"]["users"]) == sorted(
        [first, second, third])

    await c.close()  # 3 present counting the one leaving: not announced
    await _presence_settles(watcher, room, 2)
    await b.close()  # 2 counting the one leaving: announced
    await watcher.wait_for(lambda f: f["type"] == "user_left" and f["data"]["user_id"] == second)
    await _marker(stack, watcher, room, "left")
    assert _presence_of(watcher, room, first) == [("user_joined", second), ("user_left", second)]
    await watcher.close()

