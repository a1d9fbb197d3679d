"""A full job queue pushes back on `send_message` with a clear error, not a stall and
not a loss: the connection stays, and the same message resent once the workers
catch up is published once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.delivery import WorkerGroup, connect, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import Stack

QUEUE_MAX = 3


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=1, worker=False, ACCESS_MODE="open",
                  PUBLISH_QUEUE_MAX=str(QUEUE_MAX)) as s:
        yield s


async def test_a_full_queue_answers_server_busy_and_the_resend_publishes_once(
        stack: Stack, unique_id: Callable[[], int]) -> None:
    room = f"channel:{unique_id()}"
    client = await connect(stack.gateways[0].url, unique_id())
    await client.join(room)
    for n in range(QUEUE_MAX):  # no worker: the room's shard fills up
        ack = await client.request("send_message", room, {"content": f"m{n}", "key": f"k{n}"})
        assert ack["type"] == "ack", ack
    busy = await client.request("send_message", room, {"content": "late", "key": "k-late"})
    assert busy["type"] == "error" and busy["data"] == {"error": "Server busy, try again",
                                                        "code": 4429}
    assert (await client.request("ping"))["type"] == "pong"  # the connection stays
    worker = WorkerGroup(stack.env, stack.workdir / "worker.log").start()
    try:
        await client.wait_events(room, QUEUE_MAX, type_="message", timeout=30)
        again = await client.request("send_message", room, {"content": "late", "key": "k-late"})
        assert again["type"] == "ack"
        got = await client.wait_events(room, QUEUE_MAX + 1, type_="message", timeout=30)
        assert [m["data"]["content"] for m in got] == ["m0", "m1", "m2", "late"]
    finally:
        worker.stop()
    await client.close()
