"""EVENT_MODULES and the `roomcast` command, run as users run it (the installed
console script, whose own directory, not the working one, is first on sys.path):
`gateway`, `worker` and `publish` import the modules from the working directory, as
uvicorn and dramatiq do, so a backend's own type is published and served like a
built-in one; a module that cannot be imported, or whose registration is refused,
is one line before anything starts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, one_line_error
from tests.support.stack import JWT_SECRET
from tests.support.tokens import make_token
from tests.support.ws import WsClient

ROOMCAST = Path(sys.executable).parent / "roomcast"
API_KEY = "event-modules-test-key-0123"
MODULE = '''
from shared.events import EventData, register_event_type

class ReviewRequested(EventData):
    task_id: int
    reviewer: str

register_event_type("review.requested", ReviewRequested,
                    example={"task_id": 7, "reviewer": "alice"})
'''


def _app_dir(tmp_path: Path, source: str = MODULE) -> Path:
    (tmp_path / "myapp").mkdir(parents=True)
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "events.py").write_text(source)
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    # a port nothing listens on: these commands must not need Redis to get this far
    return clean_env(JWT_SECRET=JWT_SECRET, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                     **extra)


def _roomcast(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOMCAST), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _start_gateway(work: Path, env: dict[str, str], port: int, log: Path
                   ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen([str(ROOMCAST), "gateway", "--port", str(port)], cwd=work,
                                   env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()  # before the fix: no module 'myapp'
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return process
        except OSError:
            time.sleep(0.05)  # poll with a deadline
    raise AssertionError(f"gateway not ready: {log.read_text()[-2000:]}")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


async def test_gateway_and_publish_import_event_modules_from_the_working_directory(
        tmp_path: Path) -> None:
    work = _app_dir(tmp_path)
    env = _env(ENGINE="memory", ACCESS_MODE="open", EVENT_MODULES="myapp.events",
               EVENTS_API_KEY=API_KEY)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway = await asyncio.to_thread(_start_gateway, work, env, port, tmp_path / "gw.log")
    try:
        schema = await asyncio.to_thread(_get_json, url + "/api/v1/events/schema")
        assert "review.requested" in [b["title"] for b in schema["oneOf"]]
        client = await WsClient.open(f"ws://127.0.0.1:{port}/api/v1/ws/connect",
                                     make_token(7, "u7"))
        await client.wait_for(lambda f: f["type"] == "connected")
        assert (await client.join("task:7"))["type"] == "room_joined"
        # before the fix: "unknown event type 'review.requested'" at the CLI's own check
        published = await asyncio.to_thread(
            _roomcast, "publish", "review.requested", "--room", "task:7", "--data",
            '{"task_id": 7, "reviewer": "bob"}', "--url", url, cwd=work, env=env)
        assert published.returncode == 0, published.stderr
        (event,) = await client.wait_events("task:7", 1, type_="review.requested")
        assert event["data"] == {"task_id": 7, "reviewer": "bob"}
        refused = await asyncio.to_thread(
            _roomcast, "publish", "review.requested", "--room", "task:7", "--data",
            '{"task_id": 7}', "--url", url, cwd=work, env=env)
        assert "data.reviewer: Field required" in one_line_error(refused)
        await client.close()
    finally:
        gateway.send_signal(signal.SIGTERM)
        await asyncio.to_thread(gateway.wait, 15)


def test_a_bad_module_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """gateway, worker and publish: a module that cannot be imported; publish: a module
    whose registration is refused. Run side by side: each is a cold start."""
    work = _app_dir(tmp_path / "missing")
    refusing = _app_dir(tmp_path / "refusing", MODULE.replace('"review.requested"', '"Review"'))
    missing = _env(EVENT_MODULES="myapp.events,myapp.nope")
    runs = [(work, missing, ("gateway", "--port", "1")), (work, missing, ("worker",)),
            (work, missing, ("publish", "task.deleted", "--room", "project:1", "--data", "{}")),
            (refusing, _env(EVENT_MODULES="myapp.events"),
             ("publish", "task.deleted", "--room", "project:1", "--data", "{}"))]
    processes = [subprocess.Popen([str(ROOMCAST), *args], cwd=cwd, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for cwd, env, args in runs]
    results = []
    for (_, _, args), process in zip(runs, processes, strict=True):
        out, err = process.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    for result in results:
        assert result.returncode == 2, result
    assert {one_line_error(r) for r in results[:3]} == {
        "roomcast: EVENT_MODULES: cannot import 'myapp.nope': No module named 'myapp.nope'"}
    line = one_line_error(results[3])
    assert line.startswith("roomcast: EVENT_MODULES: 'myapp.events': event type 'Review' "
                           "must look like 'comment.added'"), line
