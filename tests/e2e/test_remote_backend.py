"""Publishing through a gateway's backend API (`Backend.remote`): the same events,
order and checks as a local backend, and one clear error for each mistake."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from roomcast.cli.embedded_redis import free_port
from shared.events import InvalidEvent
from tests.support.delivery import connect, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import Stack
from workers.api import Backend, RemoteError

API_KEY = "remote-test-key-0123456789"


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=1, EVENTS_API_KEY=API_KEY) as s:
        yield s


@pytest.fixture
def remote(stack: Stack) -> Backend:
    return Backend.remote(stack.gateways[0].http, API_KEY)


async def test_events_and_grants_through_the_gateway(stack: Stack, remote: Backend,
                                                     unique_id: Callable[[], int]) -> None:
    room, uid = f"project:{unique_id()}", unique_id()
    assert remote.grant_access(uid, room).wait(timeout=10)
    client = await connect(stack.gateways[0].url, uid)
    assert (await client.join(room))["type"] == "room_joined"
    keys = remote.publish_many([{"type": "task.created", "room": room,
                                 "data": {"task_id": n, "project_id": 1, "title": f"t{n}"}}
                                for n in range(3)])
    remote.task_deleted(room, task_id=0, project_id=1)
    await client.wait_events(room, 1, type_="task.deleted")
    events = [f for f in client.events(room) if f["type"].startswith("task.")]
    assert [(e["type"], e["data"]["task_id"]) for e in events] == [
        ("task.created", 0), ("task.created", 1), ("task.created", 2), ("task.deleted", 0)]
    assert len(set(keys)) == 3
    await client.close()


def test_each_mistake_is_one_clear_error(stack: Stack, remote: Backend) -> None:
    with pytest.raises(InvalidEvent):
        remote.publish({"type": "task.created", "room": "project:1", "data": {}})
    with pytest.raises(RemoteError, match="refused the API key"):
        Backend.remote(stack.gateways[0].http, "wrong").notify(1, title="x")
    with pytest.raises(RemoteError, match="cannot reach the gateway"):
        Backend.remote(f"http://127.0.0.1:{free_port()}", API_KEY).notify(1, title="x")
    with pytest.raises(RemoteError, match="expected http://HOST:PORT"):
        Backend.remote("ws://127.0.0.1:1/api", API_KEY)
