"""The resume table (SPEC §4), each case through real gateways on both engines.

`join_room` with `data.since` replays every event after it and continues live,
with no gap and no duplicate (`recovered: true`), while the room's history still
holds the `since` event; otherwise `recovered: false` and no replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.delivery import (
    BackgroundPublisher,
    connect,
    events_after,
    eventually,
    id_key,
    publish_direct,
)
from tests.support.engine_stack import EngineStack, EngineStacks, only_on_redis
from tests.support.ws import WsClient
from workers.api import Backend

MAIN_HISTORY = 3000  # > WS_SEND_QUEUE_MAX (1000): a full replay must not count as slow
SHORT_HISTORY = 5
RACING_RESUMES = 50  # recovered resumes checked while a publisher outruns the history


@pytest.fixture(scope="module")
def stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    return engine_stacks_of_module.start(gateways=2, ACCESS_MODE="open",
                                         ROOM_HISTORY_SIZE=str(MAIN_HISTORY))


@pytest.fixture(scope="module")
def short_stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    """A worker and a gateway keeping 5 events per room (on Redis, its own database)."""
    return engine_stacks_of_module.start(gateways=1, redis_db=1, ACCESS_MODE="open",
                                         ROOM_HISTORY_SIZE=str(SHORT_HISTORY),
                                         WS_RATE_LIMIT="1000", WS_RATE_BURST="1000")


@pytest.fixture(scope="module")
def ttl_stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    """Room histories expire one second after their last event (on Redis, its own
    database)."""
    return engine_stacks_of_module.start(gateways=1, redis_db=2, ACCESS_MODE="open",
                                         ROOM_HISTORY_TTL="1")


@pytest.fixture
def backend(stack: EngineStack) -> Backend:
    return stack.backend


def _publish(backend: Backend, room: str, count: int, start: int = 0) -> list[str]:
    return [backend.message(room, message_id=f"m{start + i}", content=f"c{start + i}",
                            user_id=1) for i in range(count)]


async def _history_reaches(stack: EngineStack, room: str, count: int,
                           timeout: float = 15) -> list[str]:
    def enough() -> list[str]:
        ids = stack.history_ids(room)
        return ids if len(ids) >= count else []

    return await eventually(enough, timeout=timeout,
                            what=f"{count} events in the history of {room}")


async def _joined(client: WsClient, room: str, since: str | None = None) -> dict[str, Any]:
    reply = await client.join(room, since)
    assert reply["type"] == "room_joined", reply
    return reply


async def _still_serves(client: WsClient) -> None:
    reply = await client.request("ping")
    assert reply["type"] == "pong"


def _ids(frames: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for f in frames]


# -- since still held ---------------------------------------------------------------------
# Presence events (user_joined / user_left, made by the gateways) are room events too,
# so the room's history in Redis is the reference every check compares against.
def _after(ids: list[str], since: str, upto: str | None = None) -> list[str]:
    low = id_key(since)
    high = id_key(upto) if upto is not None else None
    return [i for i in ids if id_key(i) > low and (high is None or id_key(i) <= high)]


async def test_since_held_replays_exactly_the_missed_events_then_live(
        stack: EngineStack, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    room, user = f"project:{unique_id()}", unique_id()
    first = await connect(stack.gateway(0).url, user)
    await _joined(first, room)
    _publish(backend, room, 3)
    await first.wait_events(room, 3, type_="message")
    since = first.events(room)[-1]["id"]  # the last event this client saw
    await first.close()

    missed = _publish(backend, room, 5, start=3)
    await eventually(lambda: len(_after(stack.history_ids(room), since)) >= 5 + 1,
                     what="5 messages and user_left after `since`")
    again = await connect(stack.gateway(0).url, user)
    reply = await _joined(again, room, since=since)
    assert reply["data"]["recovered"] is True
    replay = _after(stack.history_ids(room), since, reply["data"]["last_id"])
    assert reply["data"]["replayed"] == len(replay) >= 6  # 5 messages + user_left
    assert reply["data"]["last_id"] == replay[-1]
    await again.wait_events(room, len(replay))
    # the replay comes right behind room_joined, before anything else of the room
    assert _ids(events_after(again, room, reply)[:len(replay)]) == replay
    got_messages = [f["data"]["message_id"] for f in again.events(room, "message")]
    # the worker's threads may append them in any order; each exactly once
    assert sorted(got_messages) == [f"m{n}" for n in range(3, 8)] and len(missed) == 5

    _publish(backend, room, 2, start=8)
    await again.wait_events(room, 7, type_="message")
    assert _ids(again.events(room)) == _after(stack.history_ids(room), since)
    await again.close()


async def test_join_on_one_gateway_resume_on_the_other(
        stack: EngineStack, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    only_on_redis(stack, "a memory engine serves one gateway: there is no other")
    room, user = f"channel:{unique_id()}", unique_id()
    on_a = await connect(stack.gateway(0).url, user)
    await _joined(on_a, room)
    _publish(backend, room, 2)
    await on_a.wait_events(room, 2, type_="message")
    since = on_a.events(room)[-1]["id"]
    await on_a.close()

    _publish(backend, room, 3, start=2)
    await eventually(lambda: len(_after(stack.history_ids(room), since)) >= 3 + 1,
                     what="3 messages and user_left after `since`")
    on_b = await connect(stack.gateway(1).url, user)
    reply = await _joined(on_b, room, since=since)
    replay = _after(stack.history_ids(room), since, reply["data"]["last_id"])
    assert (reply["data"]["recovered"], reply["data"]["replayed"]) == (True, len(replay))
    _publish(backend, room, 1, start=5)
    await on_b.wait_events(room, 4, type_="message")

    def settled() -> list[str] | None:
        """The room's events after `since`, once on_b holds as many (its own user_joined
        races with the last message)."""
        history = _after(stack.history_ids(room), since)
        return history if len(on_b.events(room)) >= len(history) else None

    expected = await eventually(settled, what="the room settled")
    assert _ids(on_b.events(room)) == expected
    await on_b.close()


# -- since no longer held, or never given out ---------------------------------------------
async def test_since_trimmed_is_not_recovered(short_stack: EngineStack,
                                              unique_id: Callable[[], int]) -> None:
    room, user = f"task:{unique_id()}", unique_id()
    backend = short_stack.backend
    url = short_stack.gateway(0).url
    watcher = await connect(url, user)
    await _joined(watcher, room)
    _publish(backend, room, 10)
    await watcher.wait_events(room, 10, type_="message")
    ids = _ids(watcher.events(room))  # user_joined, then the 10 messages
    assert short_stack.history_ids(room) == ids[-SHORT_HISTORY:]

    # same user: no further presence events while the watcher stays in the room
    trimmed = await connect(url, user)
    reply = await _joined(trimmed, room, since=ids[0])
    assert reply["data"]["recovered"] is False
    assert reply["data"]["last_id"] == ids[-1]
    # the newest trimmed event: everything after it is still held, but the history
    # no longer holds `since` itself
    edge = await connect(url, user)
    edge_reply = await _joined(edge, room, since=ids[-SHORT_HISTORY - 1])
    assert edge_reply["data"]["recovered"] is False
    # the oldest event still held: the rest is replayed
    held = await connect(url, user)
    held_reply = await _joined(held, room, since=ids[-SHORT_HISTORY])
    assert (held_reply["data"]["recovered"], held_reply["data"]["replayed"]) == (
        True, SHORT_HISTORY - 1)

    _publish(backend, room, 1, start=10)
    live = (await watcher.wait_events(room, 11, type_="message"))[-1]
    for client in (trimmed, edge):
        got = await client.wait_events(room, 1)
        assert _ids(got) == [live["id"]]  # no replay, live from the join on
    assert _ids(await held.wait_events(room, SHORT_HISTORY)) == [
        *ids[-SHORT_HISTORY + 1:], live["id"]]
    for client in (watcher, trimmed, edge, held):
        await client.close()


async def test_since_in_the_future_is_not_recovered(
        stack: EngineStack, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    room, user = f"project:{unique_id()}", unique_id()
    _publish(backend, room, 2)
    history = await _history_reaches(stack, room, 2)
    client = await connect(stack.gateway(0).url, user)
    future = f"{int(time.time() * 1000) + 3_600_000}-0"
    reply = await _joined(client, room, since=future)
    assert reply["data"]["recovered"] is False
    assert reply["data"]["last_id"] == history[-1]
    _publish(backend, room, 1, start=2)
    await client.wait_events(room, 1, type_="message")
    await client.wait_events(room, 1, type_="user_joined")
    # live from the join point on: its own user_joined and the new message, in
    # stream order (the worker may append the message before the gateway's user_joined)
    assert _ids(client.events(room)) == _after(stack.history_ids(room), history[-1])
    await _still_serves(client)
    await client.close()


@pytest.mark.parametrize("since", ["abc", "1-", "-1", "99999999999999999999999-0"])
async def test_malformed_since_is_not_recovered_and_the_connection_stays(
        stack: EngineStack, backend: Backend, unique_id: Callable[[], int],
        since: str) -> None:
    room, empty_room, user = f"project:{unique_id()}", f"project:{unique_id()}", unique_id()
    _publish(backend, room, 2)
    history = await _history_reaches(stack, room, 2)
    client = await connect(stack.gateway(1).url, user)
    for target in (room, empty_room):
        reply = await _joined(client, target, since=since)
        assert reply["data"]["recovered"] is False, target
        assert reply["data"].get("replayed", 0) == 0
    await _still_serves(client)
    _publish(backend, room, 1, start=2)
    await client.wait_events(room, 1, type_="message")
    assert _ids(client.events(room)) == _after(stack.history_ids(room), history[-1])
    assert client.events(empty_room, "message") == []
    await client.close()


async def test_expired_history_is_not_recovered(ttl_stack: EngineStack,
                                                unique_id: Callable[[], int]) -> None:
    room, user = f"channel:{unique_id()}", unique_id()
    backend = ttl_stack.backend
    watcher = await connect(ttl_stack.gateway(0).url, user)
    await _joined(watcher, room)
    _publish(backend, room, 3)
    await watcher.wait_events(room, 3, type_="message")
    ids = _ids(watcher.events(room))
    await watcher.close()  # appends user_left, which renews the TTL once more
    await eventually(lambda: ttl_stack.history_ids(room) == [], timeout=15,
                     what="the room history expired")

    client = await connect(ttl_stack.gateway(0).url, user)
    for since in (ids[0], "0-0"):
        reply = await _joined(client, room, since=since)
        assert reply["data"]["recovered"] is False, since
        assert reply["data"].get("replayed", 0) == 0
    _publish(backend, room, 1, start=3)
    await client.wait_events(room, 1, type_="message")
    assert all(id_key(f["id"]) > id_key(ids[-1]) for f in client.events(room))
    await client.close()


# -- a room without events, and the join point -------------------------------------------
async def test_room_without_events_resumes_from_zero(
        stack: EngineStack, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    room, user = f"task:{unique_id()}", unique_id()
    assert stack.history_ids(room) == []
    client = await connect(stack.gateway(0).url, user)
    reply = await _joined(client, room, since="0-0")
    assert reply["data"] == {"last_id": "0-0", "recovered": True, "replayed": 0}
    # nothing replayed; only its own user_joined may follow the reply (published after
    # the join: on the memory engine it can arrive before the next line runs)
    assert [e["type"] for e in events_after(client, room, reply)] in ([], ["user_joined"])
    await client.close()

    _publish(backend, room, 3)
    await eventually(lambda: len(stack.history_ids(room)) >= 2 + 3,
                     what="user_joined, user_left and 3 messages")
    history = stack.history_ids(room)  # before the join: it adds its own user_joined
    full = await connect(stack.gateway(1).url, user)
    reply = await _joined(full, room, since="0-0")
    assert reply["data"] == {"last_id": history[-1], "recovered": True,
                             "replayed": len(history)}
    assert _ids(await full.wait_events(room, len(history)))[:len(history)] == history
    await full.close()


async def test_last_id_of_the_join_resumes_without_gap(
        stack: EngineStack, backend: Backend,
        unique_id: Callable[[], int]) -> None:
    room, user = f"project:{unique_id()}", unique_id()
    _publish(backend, room, 2)
    before = await _history_reaches(stack, room, 2)
    client = await connect(stack.gateway(0).url, user)
    joined = await _joined(client, room)
    assert joined["data"] == {"last_id": before[-1]}
    last_id = joined["data"]["last_id"]
    await client.close()  # it may have seen its own user_joined; it resumes from last_id

    _publish(backend, room, 3, start=2)
    await eventually(lambda: len(_after(stack.history_ids(room), last_id)) >= 2 + 3,
                     what="user_joined, user_left and 3 messages after the join point")
    again = await connect(stack.gateway(1).url, user)
    reply = await _joined(again, room, since=last_id)
    replay = _after(stack.history_ids(room), last_id, reply["data"]["last_id"])
    assert (reply["data"]["recovered"], reply["data"]["replayed"]) == (True, len(replay))
    # its own user_joined follows live, and may come in the same read as the replay
    assert _ids(await again.wait_events(room, len(replay)))[:len(replay)] == replay
    await again.close()


# -- events arriving during the replay ---------------------------------------------------
async def test_events_published_during_the_replay_arrive_once_in_order(
        stack: EngineStack, unique_id: Callable[[], int]) -> None:
    room, user = f"channel:{unique_id()}", unique_id()
    writer = stack.writer()
    backlog = publish_direct(writer, room, 1500)
    publisher = BackgroundPublisher(writer, room, limit=1400, pause=0.0005)
    publisher.start()
    publisher.started_publishing.wait(10)
    client = await connect(stack.gateway(0).url, user)
    reply = await _joined(client, room, since=backlog[0])
    assert reply["data"]["recovered"] is True
    assert reply["data"]["replayed"] >= len(backlog) - 1
    published = await asyncio.to_thread(publisher.wait_done)
    join_point = id_key(reply["data"]["last_id"])
    # live events were published both before the join point (they are replayed) and
    # after it (they arrive live, possibly while the replay is still being written)
    assert any(id_key(i) <= join_point for i in published)
    assert any(id_key(i) > join_point for i in published)
    # every event after `since`, once, in order: the messages and its own user_joined
    total = len(backlog) + len(published) + 1
    await eventually(lambda: len(stack.history_ids(room)) == total, what="all appended")
    expected = stack.history_ids(room)
    assert len(expected) <= MAIN_HISTORY
    got = await client.wait_events(room, total - 1, timeout=30)
    assert _ids(got) == expected[1:]
    await _still_serves(client)
    await client.close()


async def test_a_replay_racing_the_trim_never_skips_an_event(
        short_stack: EngineStack, unique_id: Callable[[], int]) -> None:
    """A history of 5 events and a publisher outrunning it: whatever the resume
    answers, `recovered: true` must come with every event after `since`."""
    room = f"project:{unique_id()}"
    writer = short_stack.writer()
    url = short_stack.gateway(0).url
    watcher = await connect(url, unique_id())
    await _joined(watcher, room)
    # about as fast as a join: some resumes find `since` held, some trimmed meanwhile
    # No count of events that a loaded machine could use up before enough resumes
    # were tried: it publishes until RACING_RESUMES recovered resumes were checked.
    publisher = BackgroundPublisher(writer, room, limit=1_000_000, pause=0.0003)
    resumer = await connect(url, unique_id())
    publisher.start()
    publisher.started_publishing.wait(10)
    recovered = 0
    deadline = time.monotonic() + 120
    while recovered < RACING_RESUMES and time.monotonic() < deadline:
        assert publisher.is_alive(), "the publisher stopped early"
        held = short_stack.history_ids(room)
        if len(held) < 2:
            await asyncio.sleep(0.001)  # poll interval
            continue
        reply = await _joined(resumer, room, since=held[-2])
        if reply["data"]["recovered"]:
            recovered += 1
            replay = events_after(resumer, room, reply)
            await resumer.wait_events(room, len(resumer.events(room))
                                      - len(replay) + reply["data"]["replayed"])
            replay = events_after(resumer, room, reply)[:reply["data"]["replayed"]]
            last_id: str = reply["data"]["last_id"]

            def reached(frame: dict[str, Any], last: str = last_id) -> bool:
                return frame.get("id") == last

            await watcher.wait_for(reached, timeout=10)
            expected = _after(_ids(watcher.events(room)), held[-2],
                              reply["data"]["last_id"])
            assert _ids(replay) == expected, (held[-2], reply)
        left = await resumer.request("leave_room", room)
        assert left["type"] == "room_left"
    await asyncio.to_thread(publisher.stop)
    assert recovered == RACING_RESUMES, f"only {recovered} resumes were recovered in 120 s"
    await watcher.close()
    await resumer.close()
