"""`grant`, `revoke`, `link` and `publish` against a real Redis: each says in one line
what it enqueued and which Redis it used; a Redis with no live worker queues nothing
(most likely the wrong Redis) unless --queue-anyway, and then the job runs once a
worker starts."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from shared import keys
from tests.support.cli import clean_env, run_cli
from tests.support.delivery import WorkerGroup, wait_sync
from tests.support.jobs import jobs_outstanding
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import SHARDS, base_env


def test_commands_report_what_they_enqueued_and_refuse_a_redis_without_a_worker(
        redis_server: RedisUnderTest, redis_client: redis.Redis, tmp_path: Path) -> None:
    redis_client.delete(keys.workers())
    env = clean_env(REDIS_URL=redis_server.url, STREAM_SHARDS=str(SHARDS))
    # no worker heartbeat: most likely the wrong Redis, so nothing is queued there
    before = jobs_outstanding(redis_client)
    for args in (["grant", "7", "project:70"],
                 ["publish", "project.updated", "--room", "project:70", "--data",
                  json.dumps({"project_id": 70, "changes": {}})]):
        refused = run_cli(*args, cwd=tmp_path, env=env)
        using, line = refused.stderr.splitlines()  # which Redis, then why: no traceback
        assert refused.returncode != 0 and refused.stdout == "" and "using Redis" in using
        assert line.startswith("roomcast: nothing queued: no live roomcast worker"), line
        assert "--queue-anyway" in line
    assert jobs_outstanding(redis_client) == before

    granted = run_cli("grant", "7", "project:70", "--queue-anyway", cwd=tmp_path, env=env)
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.splitlines() == ["enqueued: grant user 7 access to project:70"]
    err = granted.stderr.splitlines()
    assert len(err) == 2, granted.stderr
    assert redis_server.url in err[0] and "REDIS_URL from the environment" in err[0]
    assert "no live roomcast worker" in err[1]
    assert jobs_outstanding(redis_client) >= 1  # queued, waiting for a worker

    linked = run_cli("link", "channel:71", "project:70", "--queue-anyway", cwd=tmp_path,
                     env=env)
    assert linked.stdout.splitlines() == ["enqueued: link channel:71 to project:70 "
                                          "(its members may join)"]

    worker = WorkerGroup(base_env(redis_server.url), tmp_path / "worker.log").start()
    try:
        wait_sync(lambda: redis_client.sismember(keys.grants(7), "project:70"), timeout=30,
                  what="the queued grant applied by the worker")
        wait_sync(lambda: redis_client.exists(keys.workers()), timeout=30,
                  what="the worker's heartbeat")
        published = run_cli("publish", "project.updated", "--room", "project:70", "--data",
                            json.dumps({"project_id": 70, "changes": {}}), cwd=tmp_path, env=env)
        assert published.returncode == 0, published.stderr
        assert len(published.stdout.split()) == 1  # the event key
        assert "warning" not in published.stderr
        revoked = run_cli("revoke", "7", "project:70", cwd=tmp_path, env=env)
        assert revoked.stdout.splitlines() == ["enqueued: revoke user 7's access to project:70"]
        wait_sync(lambda: not redis_client.sismember(keys.grants(7), "project:70"),
                  timeout=30, what="the revoke applied")
    finally:
        worker.stop()
