"""A domain job publishes from inside itself (`api.job_publisher()`): no second hop,
the job's events in its order, and a retried job publishes each event once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest

from shared.settings import Settings
from tests.support.delivery import connect, eventually
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from workers.broker import build_broker


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    s = Stack(redis_server.url, env_overrides={"ACCESS_MODE": "open"})
    s.start_worker(modules=("tests.support.domain_actors",))
    s.add_gateway()
    yield s
    s.stop()


def _send(stack: Stack, actor: str, **kwargs: Any) -> None:
    """Queue a Dramatiq job as a backend does (the actor lives in the worker)."""
    broker = build_broker(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET,
                                   STREAM_SHARDS=SHARDS))
    try:
        broker.enqueue(dramatiq.Message(queue_name="default", actor_name=actor, args=(),
                                        kwargs=kwargs, options={}))
    finally:
        broker.close()


async def test_a_domain_job_publishes_its_events_in_order_once_across_a_retry(
        stack: Stack, db: Any, unique_id: Callable[[], int]) -> None:
    project, task = unique_id(), unique_id()
    room = f"project:{project}"
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)
    fail_once = f"demo:fail:{uuid.uuid4().hex}"
    _send(stack, "change_task_status", task_id=task, project_id=project, old="todo",
          new="doing", fail_once_key=fail_once)
    await eventually(lambda: db.get(fail_once) == b"2", timeout=20,
                     what="the job failed once after publishing, then its retry ran")
    _send(stack, "change_task_status", task_id=task, project_id=project, old="doing",
          new="done")
    await client.wait_events(room, 2, type_="task.updated")  # one per job
    events = [(f["type"], f["data"].get("new_status") or f["data"].get("changes"))
              for f in client.events(room) if f["type"].startswith("task.")]
    assert events == [("task.status_changed", "doing"), ("task.updated", {"status": "doing"}),
                      ("task.status_changed", "done"), ("task.updated", {"status": "done"})]
    assert db.hget(f"demo:task:{task}", "status") == b"done"
    await client.close()
