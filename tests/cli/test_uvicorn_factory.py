"""The gateway started by uvicorn's own command line (`uvicorn --factory
gateway.app:create_app`, as an operator might): it refuses to start, with one
line, unless uvicorn's options are the ones `roomcast gateway` sets; with them it
serves, with an instance id derived from the port like `roomcast gateway`'s.
The memory engine keeps these runs free of Redis."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, close_pipes, one_line_error

FLAGS = ["--ws", "gateway.ws_protocol:RoomcastWebSocketProtocol",
         "--ws-per-message-deflate", "false", "--ws-max-size", "65536",
         "--ws-ping-interval", "30", "--ws-ping-timeout", "60"]


def uvicorn(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "gateway.app:create_app",
            "--port", str(port), *flags]


def env() -> dict[str, str]:
    return clean_env(ENGINE="memory", JWT_SECRET="s" * 40, WS_MESSAGE_MAX_SIZE="65536",
                     WS_HEARTBEAT_INTERVAL="30")


def test_missing_options_are_one_line_naming_each(tmp_path: Path) -> None:
    result = subprocess.run(uvicorn(free_port(), *FLAGS[:6]), cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=60)
    line = one_line_error(result)
    assert result.returncode == 2
    assert "--ws-ping-interval 30" in line and "--ws-ping-timeout 60" in line, line
    assert "--ws " not in line and "--ws-max-size" not in line, line  # given right


def test_with_roomcasts_options_it_serves_with_a_port_based_instance_id(
        tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "uvicorn.log").open("w") as log:
        process = subprocess.Popen(uvicorn(port, *FLAGS), cwd=tmp_path, env=env(),
                                   stdout=log, stderr=log, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while health is None:
            assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
            assert time.monotonic() < deadline, "no /healthz within 60 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                            timeout=2) as reply:
                    health = json.loads(reply.read())
            except OSError:
                time.sleep(0.1)  # poll interval while uvicorn starts
        assert health["instance"] == f"{socket.gethostname()}-{port}"
    finally:
        process.terminate()
        process.wait(15)
        close_pipes(process)
