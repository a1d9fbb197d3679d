"""The backend API from async code (`workers.api.AsyncBackend`, `api.aio`) against a
real worker and gateways: grants that can be awaited, single events, many events
in one call and a batch, all delivered in call order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from shared.settings import Settings
from tests.support.delivery import connect
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from workers.api import AsyncBackend


@pytest.fixture
async def aio(stack: Stack) -> AsyncIterator[AsyncBackend]:
    backend = AsyncBackend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                    STREAM_SHARDS=SHARDS))
    yield backend
    await backend.aclose()


async def test_an_awaited_grant_admits_and_events_arrive_in_call_order(
        stack: Stack, aio: AsyncBackend, unique_id: Callable[[], int]) -> None:
    user, project = unique_id(), unique_id()
    room = f"project:{project}"
    grant = await aio.grant_access(user, room)
    assert await grant.wait(timeout=20)  # in force: the join below cannot race it
    client = await connect(stack.gateways[1].url, user)
    try:
        assert (await client.join(room))["type"] == "room_joined"
        await aio.task_created(room, task_id=1, project_id=project, title="one")
        await aio.publish_many([
            {"type": "task.updated", "room": room,
             "data": {"task_id": 1, "project_id": project, "changes": {"n": 2}}},
            {"type": "task.updated", "room": room,
             "data": {"task_id": 1, "project_id": project, "changes": {"n": 3}}}])
        batch = aio.batch()
        batch.task_status_changed(room, task_id=1, project_id=project, old_status="todo",
                                  new_status="doing")
        batch.task_deleted(room, task_id=1, project_id=project)
        await aio.enqueue_batch(batch)
        got = await client.wait_events_total(  # not our own user_joined
            5, match=lambda e: e.get("room") == room and e["type"].startswith("task."),
            timeout=20)
        assert [e["type"] for e in got] == ["task.created", "task.updated", "task.updated",
                                            "task.status_changed", "task.deleted"]
        assert [e["data"].get("changes", {}).get("n") for e in got[1:3]] == [2, 3]
    finally:
        await client.close()


async def test_api_aio_uses_the_environments_settings(
        stack: Stack, unique_id: Callable[[], int], monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import api

    for name, value in (("REDIS_URL", stack.redis_url), ("JWT_SECRET", JWT_SECRET),
                        ("STREAM_SHARDS", str(SHARDS))):
        monkeypatch.setenv(name, value)
    api.default_backend.cache_clear()
    user = unique_id()
    client = await connect(stack.gateways[0].url, user)
    try:
        await client.join(f"user:{user}")
        await api.aio.notify(user, title="from async code")
        [event] = await client.wait_events(f"user:{user}", 1, type_="notification.new", timeout=20)
        assert event["data"]["title"] == "from async code"
    finally:
        await client.close()
        await api.aio.aclose()
        api.default_backend.cache_clear()
