"""The worker heartbeat the CLI relies on (`roomcast publish` warns when no worker is
live): every worker process keeps an entry in `rc:workers` while it runs (member =
worker id, score = expiry), refreshes it, and takes it out on a clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.settings import Settings
from tests.support.delivery import wait_sync
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import SHARDS, base_env


def _entries(db: redis.Redis) -> dict[str, float]:
    return {m.decode(): s for m, s in db.zrange(keys.workers(), 0, -1, withscores=True)}


def test_a_running_worker_is_registered_and_leaves_on_sigterm(
        redis_server: RedisUnderTest, redis_client: redis.Redis, tmp_path: Path) -> None:
    redis_client.delete(keys.workers())
    engine = RedisEngine(Settings(REDIS_URL=redis_server.url, STREAM_SHARDS=SHARDS))
    with (tmp_path / "worker.log").open("ab") as log:  # the child keeps its own copy
        worker = subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", "worker",
                                   "--processes", "1", "--threads", "1"],
                                  env=base_env(redis_server.url), stdout=log, stderr=log,
                                  start_new_session=True)
    try:
        entries = wait_sync(lambda: _entries(redis_client), timeout=30,
                            what="a heartbeat entry")
        (member,) = entries
        assert entries[member] > time.time()  # an expiry ahead of now
        # the member names the worker process (a child of the CLI's process)
        pids = {p.pid for p in psutil.Process(worker.pid).children(recursive=True)}
        assert int(member.split(":")[1]) in pids
        assert engine.live_workers() == 1
        first = entries[member]
        wait_sync(lambda: _entries(redis_client).get(member, 0) > first, timeout=15,
                  what="the entry refreshed")

        worker.send_signal(signal.SIGTERM)  # Dramatiq's parent stops its worker processes
        assert worker.wait(20) == 0
        assert _entries(redis_client) == {}
        assert engine.live_workers() == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        engine.close()


def test_expired_entries_do_not_count(redis_server: RedisUnderTest,
                                      redis_client: redis.Redis) -> None:
    """A SIGKILLed worker cannot remove its entry: it stops counting once it expires."""
    redis_client.delete(keys.workers())
    now = time.time()
    redis_client.zadd(keys.workers(), {"dead-host:1:x": now - 1, "live-host:2:y": now + 30})
    engine = RedisEngine(Settings(REDIS_URL=redis_server.url, STREAM_SHARDS=SHARDS))
    try:
        assert engine.live_workers() == 1
    finally:
        engine.close()
        redis_client.delete(keys.workers())
