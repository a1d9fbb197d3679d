"""`roomcast gateway` checks what its node would refuse at startup before uvicorn
serves anything: a STREAM_SHARDS other than the Redis's and an instance id a live
gateway holds are each one line and a non-zero exit (they used to be uvicorn's
traceback and "Application startup failed"). With ENGINE=memory it needs no Redis
at all."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from roomcast.cli.embedded_redis import free_port
from shared import keys
from shared.engines.redis.engine import RedisEngine
from shared.settings import Settings
from tests.support.cli import clean_env, one_line_error, run_cli
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, SHARDS, Gateway, Stack


def _nothing_listening() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    """Gateways only (no worker): what they hold in Redis is all these tests need."""
    s = Stack(redis_server.url)
    yield s
    s.stop()


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return clean_env(**{"REDIS_URL": redis_url, "JWT_SECRET": JWT_SECRET,
                        "STREAM_SHARDS": str(SHARDS), **extra})


def test_memory_gateway_needs_no_redis(tmp_path: Path) -> None:
    # REDIS_URL names a port nothing listens on: any use of Redis would fail the start
    env = _env(_nothing_listening(), ENGINE="memory")
    port = free_port()
    gateway = Gateway(port=port, instance_id=f"mem-{port}", env=env,
                      log_path=tmp_path / "gateway.log")
    try:
        gateway.start()
        assert json.loads(gateway.get("/readyz"))["engine"] == "memory"
    finally:
        if gateway.process is not None and gateway.process.poll() is None:
            gateway.terminate()


def test_a_stream_shards_mismatch_is_one_line(redis_server: RedisUnderTest,
                                              tmp_path: Path) -> None:
    # the deployment's shard count, fixed the way its first process fixes it
    first = RedisEngine(Settings(REDIS_URL=redis_server.url, STREAM_SHARDS=SHARDS))
    try:
        first.check_config_sync()
    finally:
        first.close()
    env = _env(redis_server.url, STREAM_SHARDS=str(SHARDS + 1))
    started = time.monotonic()
    result = run_cli("gateway", "--port", str(free_port()), cwd=tmp_path, env=env, timeout=30)
    line = one_line_error(result)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert f"STREAM_SHARDS: {SHARDS + 1} here" in line and f"use {SHARDS}" in line, line


def test_a_live_duplicate_instance_id_is_one_line(stack: Stack, redis_client: redis.Redis,
                                                 tmp_path: Path) -> None:
    holder = stack.add_gateway(instance_id=f"dup-{free_port()}")
    assert holder.process is not None
    lease = keys.instance_lease(holder.instance_id)
    held = redis_client.get(lease)
    assert held is not None and f"|{holder.process.pid}|".encode() in held

    result = run_cli("gateway", "--port", str(free_port()), "--instance-id",
                     holder.instance_id, cwd=tmp_path, env=_env(stack.redis_url), timeout=30)
    line = one_line_error(result)
    assert f"{holder.instance_id!r}" in line and "live gateway" in line, line
    assert "--instance-id" in line
    # the refused start left the live holder's lease alone
    assert redis_client.get(lease) == held
    assert holder.status("/readyz") == 200

    # a holder SIGKILLed on this host is taken over at once, through the same check
    holder.kill()
    again = Gateway(port=free_port(), instance_id=holder.instance_id, env=stack.env,
                    log_path=tmp_path / "again.log")
    stack.gateways.append(again)
    again.start()
    assert again.process is not None
    taken = redis_client.get(lease)
    assert taken is not None and f"|{again.process.pid}|".encode() in taken
