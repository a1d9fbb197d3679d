"""`roomcast up` on a machine with nothing configured: embedded Redis, a worker, two
gateways, a printed dev token that works, and Ctrl-C that stops them all; and a
second shell in the same directory that reaches that stack through
`.roomcast/env` alone (no variables set), as the README tells users to."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, close_pipes, one_line_error, read_until, run_cli
from tests.support.ws import WsClient


def _launch_up(ports: list[int], env: dict[str, str], cwd: Path,
               stderr: int | IO[str] = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "roomcast.cli.main", "up", "--ports",
                             ",".join(map(str, ports))], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=stderr, text=True,
                            start_new_session=True)


def _failing_up(ports: list[int], cwd: Path) -> str:
    """Another `up` while the first runs: it must stop at once with one line (before
    the fix it printed a healthy banner, answered by the first stack's gateways)."""
    up = _launch_up(ports, clean_env(), cwd, stderr=subprocess.PIPE)
    try:
        out, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        close_pipes(up)
    assert "dev token" not in out, out
    return one_line_error(subprocess.CompletedProcess(up.args, up.returncode, out, err))


def _second_shell(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command typed in another terminal: no roomcast variable set, same directory."""
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert ".roomcast/env" in result.stderr  # it says which stack it talks to
    return result


async def test_up_serves_a_second_shell_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    # ACCESS_MODE=acl so that a grant from the second shell has something to change
    log_file = tmp_path / "up.log"
    with log_file.open("w") as log:  # the child keeps its own copy
        up = _launch_up(ports, clean_env(ACCESS_MODE="acl"), tmp_path, stderr=log)
    try:
        lines = await asyncio.to_thread(read_until, up, r"Ctrl-C", time.monotonic() + 60)
        output = "".join(lines)
        assert ".roomcast/env" in output, output
        env_file = tmp_path / ".roomcast" / "env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 4  # redis, worker, two gateways

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        assert f"port {ports[1]}" in _failing_up([free_port(), ports[1]], elsewhere)
        assert "already runs from this directory" in _failing_up([free_port()], tmp_path)

        exported = _second_shell(tmp_path, "env").stdout
        for name in ("REDIS_URL", "JWT_SECRET", "ACCESS_MODE", "ENGINE", "EVENTS_API_KEY",
                     "ROOMCAST_GATEWAY_URLS"):
            assert f"export {name}=" in exported, exported

        user, room = 77, "project:77"
        token = _second_shell(tmp_path, "token", "--user-id", str(user), "--username",
                              "zed").stdout.strip()
        clients = [await WsClient.open(f"ws://127.0.0.1:{p}/api/v1/ws/connect", token)
                   for p in ports]
        for client in clients:
            await client.wait_for(lambda f: f["type"] == "connected")
            denied = await client.join(room)
            assert denied["data"]["code"] == 4403, denied
        granted = _second_shell(tmp_path, "grant", str(user), room)
        assert granted.stdout.strip() == f"enqueued: grant user {user} access to {room}"
        for client in clients:
            await client.join_when_granted(room, timeout=20)

        await asyncio.to_thread(_second_shell, tmp_path, "publish", "project.updated",
                                "--room", room, "--data",
                                json.dumps({"project_id": 77, "changes": {}}))
        got = [(await c.wait_events(room, 1, type_="project.updated"))[0] for c in clients]
        assert got[0]["id"] == got[1]["id"]
        # through a gateway's backend API, with the EVENTS_API_KEY `up` generated
        via_api = await asyncio.to_thread(
            _second_shell, tmp_path, "publish", "project.archived", "--room", room,
            "--data", json.dumps({"project_id": 77}), "--url", f"http://127.0.0.1:{ports[1]}")
        assert "EVENTS_API_KEY from .roomcast/env" in via_api.stderr
        for client in clients:
            await client.wait_events(room, 1, type_="project.archived")

        # Ctrl-C in a terminal: SIGINT to the whole foreground group. Only `up` may get
        # it; it stops the gateways (they drain, with Redis still there), then the rest.
        os.killpg(up.pid, signal.SIGINT)
        codes = [await c.wait_closed(15) for c in clients]
        assert codes == [1012, 1012]
        assert await asyncio.to_thread(up.wait, 30) == 0
        logs = log_file.read_text()
        assert "redis unreachable" not in logs and "Killing worker" not in logs, logs[-2000:]
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert not env_file.exists()  # a stopped stack leaves no settings behind
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        close_pipes(up)
