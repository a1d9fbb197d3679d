"""Room access over real sockets, on both engines: grants, links, private user
rooms and live revocation, through the worker actors (ACCESS_MODE=acl; on Redis a
worker and two gateways), plus a gateway in ACCESS_MODE=open."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.engine_stack import EngineStack
from tests.support.gateways import start_all
from tests.support.stack import Gateway
from tests.support.tokens import make_token
from tests.support.ws import Frame, WsClient
from workers.api import Backend

# SPEC §5: every connection leaves within 1 s. The mechanism takes one shard read
# and one access check per connection (milliseconds: the test prints the figure).
# The bound asserted is wider, so that the scheduling delays of a loaded 2-core CI
# machine do not fail it; a revocation that is not pushed to the gateways at all
# (acted on only at the client's next join or reconnect) fails it, as it never comes.
REVOCATION_DEADLINE = 1.0
REVOCATION_ASSERTED = REVOCATION_DEADLINE * 3
WORKER_DEADLINE = 10.0


@pytest.fixture(scope="module")
def stack(engine_stack: EngineStack) -> EngineStack:
    return engine_stack


@pytest.fixture
def backend(stack: EngineStack) -> Backend:
    return stack.backend


@pytest.fixture(scope="module")
def open_gateway(stack: EngineStack) -> Gateway:
    (gateway,) = start_all([stack.extra_gateway("open", {"ACCESS_MODE": "open"})])
    return gateway


async def _connect(gateway: Gateway, user_id: int) -> WsClient:
    client = await WsClient.open(gateway.url, make_token(user_id, f"u{user_id}"))
    await client.wait_for(lambda f: f["type"] == "connected")
    return client


def _without_timestamp(frame: Frame, room: str) -> dict[str, Any]:
    """The frame with its timestamp dropped and the room name replaced by a placeholder."""
    text = json.dumps({k: v for k, v in frame.items() if k != "timestamp"})
    neutral: dict[str, Any] = json.loads(text.replace(json.dumps(room), '"<room>"'))
    return neutral


async def _until(predicate: Callable[[], Any], timeout: float = WORKER_DEADLINE) -> float:
    """Poll an async predicate with a deadline; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)  # poll interval
    return time.monotonic()


# -- acl --------------------------------------------------------------------------------

async def test_join_without_grant_is_forbidden_whether_the_room_exists_or_not(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    existing, missing = f"project:{unique_id()}", f"project:{unique_id()}"
    member_id = unique_id()
    member = await _connect(stack.gateway(1), member_id)
    backend.grant_access(member_id, existing)
    await member.join_when_granted(existing)  # the room has a member ...
    backend.task_created(existing, task_id=1, project_id=1, title="t")
    await member.wait_events(existing, 1, type_="task.created")  # ... and history
    outsider = await _connect(stack.gateway(0), unique_id())

    answers = [await outsider.join(existing), await outsider.join(missing)]
    for answer, room in zip(answers, (existing, missing), strict=True):
        assert answer["type"] == "error", answer
        assert answer["room"] == room and answer["data"] == {"error": "Forbidden", "code": 4403}
    assert (_without_timestamp(answers[0], existing) | {"ref": 0}
            == _without_timestamp(answers[1], missing) | {"ref": 0})
    await _still_serving(outsider)
    await outsider.close()
    await member.close()


async def test_grant_admits_and_events_follow(stack: EngineStack, backend: Backend,
                                              unique_id: Callable[[], int]) -> None:
    room, user = f"channel:{unique_id()}", unique_id()
    client = await _connect(stack.gateway(0), user)
    assert (await client.join(room))["data"]["code"] == 4403
    backend.grant_access(user, room)
    joined = await client.join_when_granted(room)
    assert joined["room"] == room and joined["data"]["last_id"] == "0-0"
    backend.message_edited(room, message_id="m", content="after the grant")
    event = (await client.wait_events(room, 1, type_="message.edited"))[0]
    assert event["data"]["content"] == "after the grant"
    await client.close()


async def test_project_grant_admits_linked_channel_and_task_only(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    project, other_project = f"project:{unique_id()}", f"project:{unique_id()}"
    channel, task = f"channel:{unique_id()}", f"task:{unique_id()}"
    unlinked, elsewhere = f"channel:{unique_id()}", f"task:{unique_id()}"
    user = unique_id()
    backend.link_room(channel, project)
    backend.link_room(task, project)
    backend.link_room(elsewhere, other_project)
    backend.grant_access(user, project)
    client = await _connect(stack.gateway(1), user)
    for room in (project, channel, task):
        assert (await client.join_when_granted(room))["room"] == room
    # the same worker queue handled the links above: these answers are final
    for room in (unlinked, elsewhere, other_project):
        answer = await client.join(room)
        assert answer["data"] == {"error": "Forbidden", "code": 4403}, (room, answer)
    await client.close()


async def test_user_rooms_belong_to_their_owner_even_with_a_grant(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    owner, intruder = unique_id(), unique_id()
    backend.grant_access(intruder, f"user:{owner}")  # a grant cannot open someone's room
    await _until(lambda: asyncio.to_thread(lambda: stack.jobs_outstanding() == 0))
    client = await _connect(stack.gateway(0), intruder)
    answer = await client.join(f"user:{owner}")
    assert answer["type"] == "error" and answer["room"] == f"user:{owner}"
    assert answer["data"] == {"error": "Forbidden", "code": 4403}
    own = await client.join(f"user:{intruder}")  # already in it; answered again
    assert own["type"] == "room_joined" and own["room"] == f"user:{intruder}"
    backend.notify(owner, title="private")
    owner_client = await _connect(stack.gateway(1), owner)
    backend.notify(owner, title="also private")
    await owner_client.wait_events(f"user:{owner}", 1, type_="notification.new")
    await _still_serving(client)
    assert client.events(f"user:{owner}") == []
    await client.close()
    await owner_client.close()


# -- live revocation --------------------------------------------------------------------

async def _still_serving(client: WsClient) -> None:
    """A pong: every frame queued for the client before it has arrived (one FIFO queue)."""
    assert (await client.request("ping"))["type"] == "pong"
    assert not client.closed.is_set()


async def _members(stack: EngineStack, backend: Backend, user: int, rooms: list[str],
                   gateways: list[int]) -> list[WsClient]:
    clients = []
    for index in gateways:
        client = await _connect(stack.gateway(index), user)
        for room in rooms:
            await client.join_when_granted(room)
        clients.append(client)
    return clients


def _is_left(room: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "room_left" and f.get("room") == room


def _left(client: WsClient, room: str) -> list[Frame]:
    return [f for f in client.frames if f["type"] == "room_left" and f.get("room") == room]


async def test_revocation_is_live_on_every_gateway(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    room, user, witness = f"project:{unique_id()}", unique_id(), unique_id()
    backend.grant_access(user, room)
    backend.grant_access(witness, room)
    # the user on both gateways (two connections on the first), a witness on each
    conns = await _members(stack, backend, user, [room], [0, 0, 1])
    witnesses = await _members(stack, backend, witness, [room], [0, 1])

    called = time.monotonic()
    backend.revoke_access(user, room)
    removed = await _until(lambda: _not(stack.agranted(user, room)))
    waits = [c.wait_for(_is_left(room), timeout=WORKER_DEADLINE) for c in conns]
    lefts = await asyncio.gather(*waits)
    all_left = time.monotonic()
    print(f"revocation: actor ran -> all left {all_left - removed:.3f} s; "
          f"revoke_access() -> all left {all_left - called:.3f} s")
    # the actor ran at `removed`; every connection on both gateways left soon after
    assert all_left - removed <= REVOCATION_ASSERTED, all_left - removed
    assert all_left - called < WORKER_DEADLINE
    for frame in lefts:
        assert set(frame) == {"type", "room", "data", "timestamp"}, frame
        assert frame["data"] == {"reason": "access_revoked"}

    backend.task_created(room, task_id=2, project_id=1, title="after the revocation")
    for w in witnesses:  # both gateways fanned the event out ...
        await w.wait_events(room, 1, type_="task.created")
    for c in conns:  # ... and none of it was queued for the revoked connections
        await _still_serving(c)
        assert [f for f in c.events(room) if f["type"] == "task.created"] == []
        assert len(_left(c, room)) == 1
        answer = await c.join(room)
        assert answer["data"] == {"error": "Forbidden", "code": 4403}
    for w in witnesses:
        assert _left(w, room) == []
        await _still_serving(w)

    logged = [record for g in stack.gateways for line in g.log_text().splitlines()
              if '"access revoked"' in line
              and (record := json.loads(line))["user_id"] in (user, witness)]
    assert sorted(r["connection_id"] for r in logged) == sorted(
        c.frames[0]["data"]["connection_id"] for c in conns)  # one record per connection
    assert {(r["user_id"], r["room"]) for r in logged} == {(user, room)}
    for c in conns + witnesses:
        await c.close()


async def _not(awaitable: Any) -> bool:
    return not await awaitable


async def test_revoking_a_project_removes_its_linked_rooms_too(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    project, channel, task = f"project:{unique_id()}", f"channel:{unique_id()}", \
        f"task:{unique_id()}"
    kept = f"channel:{unique_id()}"  # linked as well, but also granted directly
    user = unique_id()
    for room in (channel, task, kept):
        backend.link_room(room, project)
    backend.grant_access(user, project)
    backend.grant_access(user, kept)
    conns = await _members(stack, backend, user, [project, channel, task, kept], [0, 1])

    backend.revoke_access(user, project)
    for c in conns:
        for room in (project, channel, task):
            frame = await c.wait_for(_is_left(room), timeout=WORKER_DEADLINE)
            assert frame["data"] == {"reason": "access_revoked"}
    backend.message_edited(kept, message_id="k", content="still here")
    for c in conns:
        assert (await c.wait_events(kept, 1, type_="message.edited"))[0]["room"] == kept
        assert _left(c, kept) == []
        await c.close()


# -- open mode --------------------------------------------------------------------------

async def test_open_mode_admits_any_well_formed_room_but_not_other_users_rooms(
        open_gateway: Gateway, unique_id: Callable[[], int]) -> None:
    user, other = unique_id(), unique_id()
    client = await _connect(open_gateway, user)
    for room in (f"project:{unique_id()}", f"channel:{unique_id()}", f"task:{unique_id()}"):
        reply = await client.join(room)
        assert reply["type"] == "room_joined" and reply["room"] == room, reply
    foreign = await client.join(f"user:{other}")
    assert foreign["room"] == f"user:{other}"
    assert foreign["data"] == {"error": "Forbidden", "code": 4403}
    malformed = await client.join("project:007")
    assert malformed["data"] == {"error": "Invalid room format", "code": 4403}
    await _still_serving(client)
    await client.close()
