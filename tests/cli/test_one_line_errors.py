"""Every mistake a user can make with the CLI gets one clear line and a non-zero exit,
never a traceback: bad arguments, a missing secret, an unknown event type, a bad
payload, a malformed or unreachable Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from roomcast.cli.embedded_redis import free_port
from shared.events import publishable_types
from tests.support.cli import clean_env, one_line_error, run_cli

TASK = json.dumps({"task_id": 1, "project_id": 1, "title": "x"})


def _nothing_listening() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_token_without_a_secret(tmp_path: Path) -> None:
    line = one_line_error(run_cli("token", "--user-id", "1", "--username", "a", cwd=tmp_path))
    assert "JWT_SECRET" in line and "roomcast up" in line


@pytest.mark.parametrize(("args", "named"), [
    (["--user-id", "-1"], "--user-id"),
    (["--user-id", "0"], "--user-id"),
    (["--user-id", "1", "--ttl", "0"], "--ttl"),
    (["--user-id", "1", "--ttl", "-60"], "--ttl"),
    (["--user-id", "one"], "--user-id"),
])
def test_token_refuses_bad_numbers(tmp_path: Path, args: list[str], named: str) -> None:
    env = clean_env(JWT_SECRET="s" * 32)
    line = one_line_error(run_cli("token", *args, "--username", "a", cwd=tmp_path, env=env))
    assert named in line


def test_unknown_event_type_lists_the_known_ones(tmp_path: Path) -> None:
    line = one_line_error(run_cli("publish", "task_created", "--room", "project:1",
                                  "--data", TASK, cwd=tmp_path))
    assert "unknown event type 'task_created'; known: " in line
    known = line.split("known: ", 1)[1].split(", ")
    assert known == publishable_types()


@pytest.mark.parametrize(("data", "named"), [
    ("{not json", "--data"),
    ("[1, 2]", "--data"),
    (json.dumps({"task_id": 1, "project_id": 1}), "title"),
    (json.dumps({"task_id": "7", "project_id": 1, "title": "x"}), "task_id"),
])
def test_bad_payloads(tmp_path: Path, data: str, named: str) -> None:
    line = one_line_error(run_cli("publish", "task.created", "--room", "project:1",
                                  "--data", data, cwd=tmp_path))
    assert named in line


@pytest.mark.parametrize("args", [
    ["publish", "task.created", "--room", "project:007", "--data", TASK],
    ["grant", "1", "project:007"],
    ["grant", "x", "project:1"],
    ["revoke", "1", "room:1"],
    ["link", "channel:1", "project:x"],
    ["nosuchcommand"],
    ["publish", "task.created", "--data", TASK],
])
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    one_line_error(run_cli(*args, cwd=tmp_path))


def test_malformed_redis_url(tmp_path: Path) -> None:
    env = clean_env(REDIS_URL="localhost:6390")  # no scheme; never the shared 6379
    line = one_line_error(run_cli("publish", "task.created", "--room", "project:1",
                                  "--data", TASK, cwd=tmp_path, env=env))
    assert "REDIS_URL" in line


@pytest.mark.parametrize("args", [
    ["publish", "task.created", "--room", "project:1", "--data", TASK],
    ["grant", "1", "project:1"],
    ["revoke", "1", "project:1"],
    ["link", "channel:1", "project:1"],
    ["worker"],
    ["gateway", "--port", "0"],
])
def test_unreachable_redis_is_one_line_at_once(tmp_path: Path, args: list[str]) -> None:
    url = _nothing_listening()
    env = clean_env(REDIS_URL=url, JWT_SECRET="s" * 32)
    started = time.monotonic()
    line = one_line_error(run_cli(*args, cwd=tmp_path, env=env, timeout=30))
    assert time.monotonic() - started < 15
    assert url in line and "REDIS_URL" in line


def test_up_with_an_unreachable_redis_starts_nothing(tmp_path: Path) -> None:
    url = _nothing_listening()
    line = one_line_error(run_cli("up", "--ports", str(free_port()), cwd=tmp_path,
                                  env=clean_env(REDIS_URL=url), timeout=30))
    assert url in line and "REDIS_URL" in line
    assert not (tmp_path / ".roomcast" / "env").exists()


def test_client_with_an_empty_token_is_one_line(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/api/v1/ws/connect"
    line = one_line_error(run_cli("client", "--token", "", "--url", url, cwd=tmp_path,
                                  timeout=30))
    assert "token" in line and "*" not in line
