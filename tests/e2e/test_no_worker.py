"""With no worker running, queued jobs wait, and the gateway says so: /readyz and
/metrics show the worker count and the queue depth, and a warning is logged every
heartbeat while jobs wait. The `ack` of a send is still sent: the job is queued."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest

from tests.support.delivery import connect, eventually, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=1, worker=False, ACCESS_MODE="open") as s:
        yield s


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else -1.0


async def test_a_stall_without_workers_shows_in_readyz_metrics_and_logs(
        stack: Stack, unique_id: Callable[[], int]) -> None:
    gw = stack.gateways[0]
    room = f"channel:{unique_id()}"
    client = await connect(gw.url, unique_id())
    await client.join(room)
    ack = await client.request("send_message", room, {"content": "nobody appends me"})
    assert ack["type"] == "ack"  # queued: the ack says no more
    ready = json.loads(gw.get("/readyz"))  # still ready: it serves everything else
    assert ready["workers"] == 0 and ready["queue_depth"] >= 1
    await eventually(lambda: _metric(gw.get("/metrics"), "roomcast_queue_depth") >= 1
                     and _metric(gw.get("/metrics"), "roomcast_workers") == 0,
                     timeout=10, what="the stall in /metrics")
    await eventually(lambda: "job queue stalled: no live worker" in gw.log_text(),
                     timeout=10, what="the stall in the log")
    await client.close()
