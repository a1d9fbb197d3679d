"""docs/embedding.md, run as written: its app files (`# myapp/main.py`,
`# myapp/combined.py`) written to a temporary project, served by the document's
own uvicorn command lines (the port swapped for a free one), with the memory
engine and no Redis at all, and with the Redis engine on this module's Redis and
a `roomcast worker` beside it.

A real WebSocket client connects under the mount prefix, joins a room, and
receives an event published the way each example allows: the main example's own
endpoint (`workers.api` in the app's process), the combined one's backend API
(`POST <prefix>/api/v1/events`). Served by plain uvicorn, the app reports once
what is off (the table's first rows); served with roomcast's protocol, it does
not. Either way SIGTERM closes the client with 1012 and the process exits within
10 s, and the log holds no token and no logging error."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roomcast.cli.embedded_redis import free_port
from tests.support.delivery import connect
from tests.support.doc_blocks import Block, blocks
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import Stack, base_env
from tests.support.tokens import make_token

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "embedding.md"
BLOCKS = blocks(DOC, "docs/embedding.md")
API_KEY = "embedding-doc-key-0123456789"
REPORT = "served without roomcast's WebSocket protocol"
START_TIMEOUT = 30.0


def _command(protocol: bool) -> list[str]:
    """The document's uvicorn command line: the plain one or the one with our protocol."""
    lines = [b.text for b in BLOCKS if b.lang == "sh" and b.text.startswith("uvicorn ")]
    assert len(lines) == 2, lines
    (chosen,) = [t for t in lines if ("RoomcastWebSocketProtocol" in t) is protocol]
    return shlex.split(chosen.replace("\\\n", " "))


def _file(name: str) -> Block:
    (block,) = [b for b in BLOCKS if b.file == f"myapp/{name}.py"]
    return block


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("embedding")
    (work / "myapp").mkdir()
    (work / "myapp" / "__init__.py").touch()
    for name in ("main", "combined"):
        (work / "myapp" / f"{name}.py").write_text(_file(name).text)
    return work


@pytest.fixture(scope="module")
def worker(redis_server: RedisUnderTest) -> Iterator[Stack]:
    """For ENGINE=redis: a worker on this module's Redis (the app is the gateway)."""
    s = Stack(redis_server.url)
    s.start_worker(threads=2)
    yield s
    s.stop()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    prefix: str
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _serve(app_dir: Path, module: str, env: dict[str, str], protocol: bool) -> Served:
    command = _command(protocol)
    assert command[:2] == ["uvicorn", "myapp.main:app"] and "--port" in command, command
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[1] = f"myapp.{module}:app"
    prefix = re.findall(r'app\.mount\("(/\w+)"', _file(module).text)[0]
    log = app_dir / f"{module}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", *command], cwd=app_dir, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    served = Served(process, port, prefix, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, served.log_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{served.http}{prefix}/readyz", timeout=2):
                return served
        except OSError:
            time.sleep(0.05)  # poll with a deadline while it starts
    process.kill()
    raise AssertionError(f"not ready: {served.log_text()[-3000:]}")


def _post(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, method="POST",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json",
                                              "X-API-Key": API_KEY})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, object] = json.load(response)
        return answer


CASES = [  # (app file, engine, served with roomcast's protocol)
    ("main", "memory", False),
    ("main", "redis", True),
    ("combined", "memory", False),
]


@pytest.mark.parametrize(("module", "engine", "protocol"), CASES,
                         ids=[f"{m}-{e}-{'protocol' if p else 'plain'}" for m, e, p in CASES])
async def test_the_documented_app_serves_a_room(app_dir: Path, request: pytest.FixtureRequest,
                                                module: str, engine: str,
                                                protocol: bool) -> None:
    if engine == "redis":
        redis_url = request.getfixturevalue("worker").redis_url
    else:  # a port nothing listens on: the memory engine must not need Redis
        redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = base_env(redis_url, ENGINE=engine, ACCESS_MODE="open", EVENTS_API_KEY=API_KEY)
    served = await asyncio.to_thread(_serve, app_dir, module, env, protocol)
    token = make_token(7, "u7")
    try:
        client = await connect(f"ws://127.0.0.1:{served.port}{served.prefix}/api/v1/ws/connect",
                               7)
        room = "project:5"
        assert (await client.join(room))["type"] == "room_joined"
        if module == "main":  # the example's own endpoint, workers.api in the app
            answer = await asyncio.to_thread(
                _post, f"{served.http}/projects/5/tasks/9?title=Ship%20it")
            assert answer["event"]
        else:  # the combined example has no endpoint: its backend API
            await asyncio.to_thread(_post, f"{served.http}{served.prefix}/api/v1/events",
                                    {"type": "task.created", "room": room,
                                     "data": {"task_id": 9, "project_id": 5, "title": "Ship it"}})
        (event,) = await client.wait_events(room, 1, type_="task.created", timeout=20)
        assert event["data"] == {"task_id": 9, "project_id": 5, "title": "Ship it"}
        # a token in a URL must never reach the log (redaction in force either way)
        await asyncio.to_thread(urllib.request.urlopen,
                                f"{served.http}{served.prefix}/healthz?token={token}", None, 5)
        # SIGTERM: the client is closed with 1012 and the process ends in time
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        assert await client.wait_closed(10) == 1012
        code = await asyncio.to_thread(served.process.wait, 10)
        assert code in (0, -signal.SIGTERM) and time.monotonic() - started < 10
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(10)
    log = served.log_text()
    assert (REPORT in log) is not protocol, log[-3000:]  # said once, and only when true
    assert log.count(REPORT) <= 1
    assert token not in log and "Logging error" not in log and "Traceback" not in log, log
