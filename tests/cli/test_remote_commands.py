"""`roomcast publish|grant|revoke|link --url http://HOST:PORT` go through a gateway's
backend API with EVENTS_API_KEY, for either engine, without touching Redis; every
mistake (a wrong URL, no key, a wrong key, a gateway without the API, nothing
listening) is one line and a non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from roomcast.cli.embedded_redis import free_port
from tests.support.cli import clean_env, one_line_error, run_cli
from tests.support.delivery import connect, stack_on
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import JWT_SECRET, Gateway, Stack

API_KEY = "cli-remote-key-0123456789abcdef"
DEAD_REDIS = f"redis://127.0.0.1:{free_port()}/0"  # the CLI must never need it
TASK = {"task_id": 5, "project_id": 1, "title": "through the gateway"}


def _memory_gateway(workdir: Path, **extra: str) -> Gateway:
    env = clean_env(**{"ENGINE": "memory", "JWT_SECRET": JWT_SECRET, "ACCESS_MODE": "acl",
                       "REDIS_URL": DEAD_REDIS, **extra})
    port = free_port()
    return Gateway(port=port, instance_id=f"mem-{port}", env=env,
                   log_path=workdir / f"gateway-{port}.log").start()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote")


@pytest.fixture(scope="module")
def memory_gateway(workdir: Path) -> Iterator[Gateway]:
    gateway = _memory_gateway(workdir, EVENTS_API_KEY=API_KEY)
    yield gateway
    gateway.terminate()


@pytest.fixture(scope="module")
def redis_stack(redis_server: RedisUnderTest) -> Iterator[Stack]:
    with stack_on(redis_server.url, gateways=1, EVENTS_API_KEY=API_KEY) as stack:
        yield stack


@pytest.fixture(params=["memory", "redis"])
def served(request: pytest.FixtureRequest) -> Gateway:
    if request.param == "memory":
        gateway: Gateway = request.getfixturevalue("memory_gateway")
        return gateway
    stack: Stack = request.getfixturevalue("redis_stack")
    return stack.gateways[0]


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"<html>not a gateway</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def _other_http_server() -> Iterator[str]:
    """A web server that is not a gateway, answering every POST with a page."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, env=clean_env(**{"REDIS_URL": DEAD_REDIS, **env}))


async def _ok(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = await asyncio.to_thread(_cli, cwd, *args, EVENTS_API_KEY=API_KEY)
    assert result.returncode == 0, result.stderr
    assert "using the gateway http://127.0.0.1:" in result.stderr
    assert "(--url)" in result.stderr
    return result


async def test_commands_go_through_the_gateway(served: Gateway, tmp_path: Path,
                                               unique_id: Callable[[], int]) -> None:
    uid, project, channel = unique_id(), f"project:{unique_id()}", f"channel:{unique_id()}"
    url = ["--url", served.http]
    client = await connect(served.url, uid)
    assert (await client.join(project))["data"]["code"] == 4403

    granted = await _ok(tmp_path, "grant", str(uid), project, *url)
    assert granted.stdout.splitlines() == [f"enqueued: grant user {uid} access to {project}"]
    await client.join_when_granted(project, timeout=20)
    await _ok(tmp_path, "link", channel, project, *url)
    await client.join_when_granted(channel, timeout=20)

    published = await _ok(tmp_path, "publish", "task.created", "--room", project,
                          "--data", json.dumps(TASK), *url)
    assert len(published.stdout.split()) == 1  # the event key, as without --url
    [event] = await client.wait_events(project, 1, type_="task.created", timeout=20)
    assert event["data"] == TASK

    await _ok(tmp_path, "revoke", str(uid), project, *url)
    left = await client.wait_for(lambda f: f["type"] == "room_left" and f["room"] == project,
                                 timeout=20)
    assert left["data"]["reason"] == "access_revoked"
    await client.close()


PUBLISH = ["publish", "task.created", "--room", "project:1", "--data", json.dumps(TASK)]
COMMANDS = [PUBLISH, ["grant", "1", "project:1"], ["revoke", "1", "project:1"],
            ["link", "channel:1", "project:1"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_wrong_key_is_one_line(memory_gateway: Gateway, tmp_path: Path,
                                 command: list[str]) -> None:
    line = one_line_error(_cli(tmp_path, *command, "--url", memory_gateway.http,
                               EVENTS_API_KEY="not-the-key"))
    assert "refused the API key" in line and memory_gateway.http in line


def test_each_other_mistake_is_one_line(memory_gateway: Gateway, workdir: Path,
                                        tmp_path: Path) -> None:
    def mistake(url: str, code: int = 1, **env: str) -> str:
        result = _cli(tmp_path, *PUBLISH, "--url", url, **env)
        assert result.returncode == code, result.stderr
        return one_line_error(result)

    key = {"EVENTS_API_KEY": API_KEY}
    assert "expected http://HOST:PORT" in mistake("ws://127.0.0.1:8000", 2, **key)
    line = mistake(memory_gateway.http, 2)
    assert "EVENTS_API_KEY" in line and "roomcast up" in line
    nobody = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach the gateway at {nobody}" in mistake(nobody, **key)
    closed = _memory_gateway(workdir)  # EVENTS_API_KEY unset: its backend API is off
    try:
        assert "no backend API" in mistake(closed.http, **key)
    finally:
        closed.terminate()
    with _other_http_server() as other:  # a URL where something else answers
        assert f"{other} did not answer as a roomcast gateway" in mistake(other, **key)


def test_memory_engine_without_a_url_says_to_give_one(tmp_path: Path) -> None:
    # no stack here to take a gateway URL from: the queue is in some gateway's process
    line = one_line_error(_cli(tmp_path, *PUBLISH, ENGINE="memory", EVENTS_API_KEY=API_KEY))
    assert "--url" in line and "ENGINE=memory" in line
