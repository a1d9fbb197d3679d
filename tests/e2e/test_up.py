"""`roomcast up` on a machine with nothing configured: embedded Redis, a worker,
two gateways, a printed dev token that works, and Ctrl-C that stops them all."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil

from roomcast.cli.embedded_redis import free_port
from tests.support.ws import WsClient


def _launch_up(ports: list[int], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", "up", "--ports",
                             ",".join(map(str, ports))], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _read_until(process: subprocess.Popen[str], pattern: str, deadline: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError("".join(lines) or "no output")


async def test_up_runs_the_stack_and_ctrl_c_stops_it() -> None:
    ports = [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "JWT_SECRET", "JWT_PUBLIC_KEY", "ACCESS_MODE")}
    env["PYTHONUNBUFFERED"] = "1"
    up = _launch_up(ports, env)
    try:
        lines = await asyncio.to_thread(_read_until, up, r"dev token", time.monotonic() + 60)
        output = "".join(lines)
        redis_url = re.search(r"embedded redis-server (\S+)", output)
        token = re.search(r"dev token\s+(\S+)", output)
        assert redis_url and token, output
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 4  # redis, worker, two gateways

        room = "project:1"
        clients = [await WsClient.open(f"ws://127.0.0.1:{p}/api/v1/ws/connect",
                                       token.group(1)) for p in ports]
        for client in clients:
            await client.wait_for(lambda f: f["type"] == "connected")
            assert (await client.join(room))["type"] == "room_joined"
        publish_env = {**env, "REDIS_URL": redis_url.group(1)}
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "roomcast.cli.main", "publish",
                             "project.updated", "--room", room, "--data",
                             json.dumps({"project_id": 1, "changes": {}})],
            env=publish_env, check=True, timeout=60, capture_output=True)
        got = [(await c.wait_events(room, 1, type_="project.updated"))[0] for c in clients]
        assert got[0]["id"] == got[1]["id"]

        up.send_signal(signal.SIGINT)
        codes = [await c.wait_closed(15) for c in clients]
        assert codes == [1012, 1012]
        assert await asyncio.to_thread(up.wait, 30) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
