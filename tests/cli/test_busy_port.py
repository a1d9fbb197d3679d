"""A gateway started on a port something else holds stops at once with one line
naming the port. (It used to start its node, fail to bind, then hang in shutdown
ignoring SIGTERM and SIGINT.)"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.cli import clean_env, one_line_error, run_cli
from tests.support.redis_fixture import RedisUnderTest


def test_gateway_on_a_busy_port_exits_at_once(redis_server: RedisUnderTest,
                                             tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = clean_env(REDIS_URL=redis_server.url, JWT_SECRET="s" * 32)
        started = time.monotonic()
        line = one_line_error(run_cli("gateway", "--port", str(port), cwd=tmp_path, env=env,
                                      timeout=30))
        assert time.monotonic() - started < 10
        assert f"port {port}" in line and "in use" in line
