"""The bench's own stack stops the way `roomcast up` does: gateways first, Redis last.

A gateway's drain closes every client with 1012 and then releases each one's
presence and slot in Redis; a stack that signals Redis at the same moment makes
every one of those releases fail, and the gateway's log fills with them."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import redis

from roomcast.bench.stack import BenchStack, StackConfig
from shared import keys
from tests.support.delivery import connect, wait_sync
from tests.support.redis_fixture import RedisUnderTest
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


@pytest.mark.timeout(90)
def test_the_worker_stops_gracefully_and_unregisters(redis_server: RedisUnderTest) -> None:
    """SIGTERM to the worker's whole process group reached Dramatiq's worker process
    twice (once from the stack, once forwarded by Dramatiq's main process), and a
    second signal makes Dramatiq kill it: it then neither released its shards nor
    left the live workers, and the next worker on the same Redis waited for both
    to expire."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    for _ in range(3):  # the double signal was a race: a clean stop every time
        stack = BenchStack(StackConfig(gateways=0, redis_url=redis_server.url,
                                       jwt_secret=JWT_SECRET, keep_logs=True)).start()
        try:
            wait_sync(lambda: client.zcard(keys.workers()) == 1, timeout=30,
                      what="the worker registered")
            stack.stop()
            log = (stack.workdir / "worker.log").read_text()
        finally:
            stack.stop()
            shutil.rmtree(stack.workdir, ignore_errors=True)
        assert "Killing worker process" not in log
        assert client.zcard(keys.workers()) == 0
        assert client.keys("*inbox-lease*") == []
    client.close()
