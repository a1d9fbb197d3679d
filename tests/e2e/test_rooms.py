"""Rooms on both engines (two gateways on Redis, one on memory): join/leave,
presence, chat through the worker."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.delivery import eventually
from tests.support.engine_stack import EngineStack
from tests.support.ws import WsClient
from workers.api import Backend


@pytest.fixture(scope="module")
def stack(engine_stack: EngineStack) -> EngineStack:
    return engine_stack


@pytest.fixture
def backend(stack: EngineStack) -> Backend:
    return stack.backend


async def _connect(stack: EngineStack, gateway: int, user_id: int, name: str) -> WsClient:
    client = await WsClient.open(stack.gateway(gateway).url, stack.token(user_id, name))
    await client.wait_for(lambda f: f["type"] == "connected")
    return client


async def test_connected_frame_and_own_room(stack: EngineStack, backend: Backend,
                                           unique_id: Callable[[], int]) -> None:
    uid = unique_id()
    client = await _connect(stack, 0, uid, "alice")
    hello = client.frames[0]
    assert hello["type"] == "connected"
    assert set(hello) == {"type", "data", "timestamp"}
    data = hello["data"]
    assert data["message"] == "Connected successfully"
    assert data["user_id"] == uid and data["username"] == "alice"
    assert data["heartbeat_interval"] == 1 and data["rooms"] == [f"user:{uid}"]
    assert data["connection_id"]
    backend.notify(uid, title="hello", body="x")
    event = (await client.wait_events(f"user:{uid}", 1))[0]
    assert event["type"] == "notification.new" and event["data"]["title"] == "hello"
    await client.close()


async def test_ping_and_ref_echo(stack: EngineStack, unique_id: Callable[[], int]) -> None:
    client = await _connect(stack, 0, unique_id(), "bob")
    await client.send({"type": "ping", "ref": "abc"})
    pong = await client.wait_for(lambda f: f["type"] == "pong")
    assert pong["ref"] == "abc" and "id" not in pong
    reply = await client.request("ping")
    assert reply["type"] == "pong" and isinstance(reply["ref"], int)
    await client.close()


async def test_presence_events_only_on_first_and_last_connection(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    watcher_id, carol = unique_id(), unique_id()
    backend.grant_access(watcher_id, room)
    backend.grant_access(carol, room)
    watcher = await _connect(stack, 0, watcher_id, "watcher")
    await watcher.join_when_granted(room)
    first = await _connect(stack, 0, carol, "carol")
    second = await _connect(stack, 1, carol, "carol")
    await first.join_when_granted(room)
    joined = await watcher.wait_for(
        lambda f: f["type"] == "user_joined" and f["data"]["user_id"] == carol)
    assert joined["data"] == {"user_id": carol, "username": "carol"}
    assert joined["room"] == room and joined["sender"] == "carol" and joined["id"]
    await second.join(room)
    again = await second.join(room)  # joining twice is answered again
    assert again["type"] == "room_joined"
    presence = await watcher.request("presence", room)
    users = presence["data"]["users"]
    assert {"user_id": carol, "username": "carol"} in users
    assert {"user_id": watcher_id, "username": "watcher"} in users

    left = await first.request("leave_room", room)
    assert left["type"] == "room_left" and left["room"] == room
    assert (await first.request("leave_room", room))["type"] == "room_left"  # idempotent
    await second.close()  # the last connection of carol leaves by disconnecting
    await watcher.wait_for(lambda f: f["type"] == "user_left" and f["data"]["user_id"] == carol)
    # exactly one joined and one left for carol, however many connections she had
    carols = [e["type"] for e in watcher.events(room) if e["data"].get("user_id") == carol]
    assert carols == ["user_joined", "user_left"]
    presence = await watcher.request("presence", room)
    assert [u["user_id"] for u in presence["data"]["users"]] == [watcher_id]
    await first.close()
    await watcher.close()


async def test_an_event_published_once_connected_arrives_reaches_the_client(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    """The welcome is sent once the connection is in its own room: a notification
    published the moment `connected` arrives is never before the join point."""
    for _ in range(10):
        uid = unique_id()
        client = await _connect(stack, 0, uid, "quick")
        backend.notify(uid, title="right away")
        (got,) = await client.wait_events(f"user:{uid}", 1, type_="notification.new")
        assert got["data"]["title"] == "right away"
        await client.close()


async def test_send_message_is_acked_and_published_to_the_room(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    room = f"channel:{unique_id()}"
    alice_id, bob_id = unique_id(), unique_id()
    for uid in (alice_id, bob_id):
        backend.grant_access(uid, room)
    alice = await _connect(stack, 0, alice_id, "alice")
    bob = await _connect(stack, 1, bob_id, "bob")
    await alice.join_when_granted(room)
    await bob.join_when_granted(room)
    ack = await alice.request("send_message", room, {"content": "héllo 👋"})
    assert ack["type"] == "ack" and ack["data"]["key"]
    for client in (alice, bob):  # the sender gets its own message too
        message = (await client.wait_events(room, 1, type_="message"))[0]
        assert message["data"]["content"] == "héllo 👋"
        assert message["data"]["user_id"] == alice_id
        assert message["data"]["message_id"] == ack["data"]["message_id"]
        assert message["sender"] == "alice"
    denied = await bob.request("send_message", f"channel:{unique_id()}", {"content": "x"})
    assert denied["type"] == "error" and denied["data"]["code"] == 4403
    await alice.close()
    await bob.close()


async def test_send_message_with_the_same_key_publishes_once_per_user(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int]) -> None:
    """A resend after a reconnect carries the same `data.key`: one message. The key is
    scoped to the user, so another user's message with the same key still goes out."""
    room = f"channel:{unique_id()}"
    alice_id, bob_id = unique_id(), unique_id()
    for uid in (alice_id, bob_id):
        backend.grant_access(uid, room)
    alice = await _connect(stack, 0, alice_id, "alice")
    await alice.join_when_granted(room)
    first = await alice.request("send_message", room, {"content": "once", "key": "m-1"})
    assert first["type"] == "ack" and first["data"]["key"] == "m-1"
    await alice.close()
    alice = await _connect(stack, 1, alice_id, "alice")  # reconnect elsewhere, resend
    await alice.join_when_granted(room)
    again = await alice.request("send_message", room, {"content": "once", "key": "m-1"})
    assert again["type"] == "ack" and again["data"]["key"] == "m-1"
    bob = await _connect(stack, 0, bob_id, "bob")
    await bob.join_when_granted(room)
    await bob.request("send_message", room, {"content": "bob's", "key": "m-1"})
    await eventually(lambda: stack.jobs_outstanding() == 0, timeout=20, what="every job done")
    history = [event for _, event in stack.history(room)]
    messages = sorted((e["data"]["user_id"], e["data"]["content"]) for e in history
                      if e["type"] == "message")
    assert messages == [(alice_id, "once"), (bob_id, "bob's")]
    await alice.close()
    await bob.close()


async def test_room_order_and_last_id(stack: EngineStack, backend: Backend,
                                      unique_id: Callable[[], int]) -> None:
    room = f"task:{unique_id()}"
    uid = unique_id()
    backend.grant_access(uid, room)
    client = await _connect(stack, 1, uid, "dora")
    joined = await client.join_when_granted(room)
    assert joined["data"]["last_id"] == "0-0"
    for seq in range(50):
        backend.task_updated(room, task_id=1, project_id=2, changes={"seq": seq})
    events = await client.wait_events(room, 50, type_="task.updated")
    # worker threads append concurrently: the promise is stream order, each once
    assert sorted(e["data"]["changes"]["seq"] for e in events) == list(range(50))
    ids = [tuple(map(int, e["id"].split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 50
    late = await _connect(stack, 0, uid, "dora")
    rejoined = await late.join(room)
    assert rejoined["data"]["last_id"] == client.events(room)[-1]["id"]
    await client.close()
    await late.close()


async def test_cli_grant_link_and_revoke(stack: EngineStack, unique_id: Callable[[], int]) -> None:
    uid, project, channel = unique_id(), f"project:{unique_id()}", f"channel:{unique_id()}"
    client = await _connect(stack, 1, uid, "erin")
    denied = await client.join(project)
    assert denied["type"] == "error" and denied["data"]["code"] == 4403
    await stack.acli("grant", str(uid), project)
    await stack.acli("link", channel, project)
    await client.join_when_granted(project)
    await client.join_when_granted(channel)  # admitted through the project grant
    await stack.acli("revoke", str(uid), project)
    for room in (project, channel):
        left = await client.wait_for(lambda f, room=room: f["type"] == "room_left"
                                     and f.get("room") == room)
        assert left["data"] == {"reason": "access_revoked"}
    bad = await stack.acli("grant", str(uid), "project:007", check=False)
    assert bad.returncode == 2 and "project:007" in bad.stderr
    await client.close()
