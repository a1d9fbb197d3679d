"""The bench's own stack stops the way `roomcast up` does: gateways first, Redis last.

A gateway's drain closes every client with 1012 and then releases each one's
presence and slot in Redis; a stack that signals Redis at the same moment makes
every one of those releases fail, and the gateway's log fills with them."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from roomcast.bench.stack import BenchStack, StackConfig
from tests.support.delivery import connect
from tests.support.stack import JWT_SECRET

CLIENTS = 40


@pytest.mark.timeout(90)
async def test_gateways_drain_against_a_live_redis() -> None:
    stack = BenchStack(StackConfig(gateways=1, start_worker=False, jwt_secret=JWT_SECRET,
                                   keep_logs=True)).start()
    try:
        clients = [await connect(stack.gateway_urls[0], 1000 + i) for i in range(CLIENTS)]
        await asyncio.to_thread(stack.stop)  # blocks until every child has exited
        codes = [await c.wait_closed() for c in clients]
        log = (stack.workdir / "gw1.log").read_text()
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)  # kept for the log above
    assert codes == [1012] * CLIENTS
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [r["msg"] for r in records].count("disconnect") == CLIENTS
    # a Redis stopped under the gateway shows as "redis unreachable", failed
    # presence releases and, past the graceful timeout, cancelled connections
    complaints = [r["msg"] for r in records if r["level"] in ("warning", "error", "critical")]
    assert complaints == []
