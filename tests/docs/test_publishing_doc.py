"""Every Python and shell block of docs/publishing.md, run in order against a real
stack (a worker and a gateway on this module's Redis), as a reader runs them.

The preamble the document states is what the test provides: the stack's settings
in the environment (as `eval "$(roomcast env)"` gives them, with EVENTS_API_KEY
and EVENT_MODULES=myapp.events), the blocks that are files (`# myapp/jobs.py`)
written to a package `myapp` that the worker (`roomcast worker myapp.jobs`), the
gateway and the blocks import, `roomcast` on PATH, and the document's gateway
address `http://127.0.0.1:8000` pointed at the test's gateway.

Running without an error is not enough: what the blocks print must be what the
document says they print, and afterwards user 42 (granted by the document's own
grant) replays its rooms and finds exactly the events the blocks published, each
once (the retried assignment included), and the workers set nothing aside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from tests.support.delivery import connect, eventually
from tests.support.doc_blocks import RUNNABLE, blocks, write_plan
from tests.support.redis_fixture import RedisUnderTest
from tests.support.stack import SHARDS, Stack

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "publishing.md"
DOC_GATEWAY = "http://127.0.0.1:8000"
API_KEY = "publishing-doc-key-0123456789"
PRESENCE = {"user_joined", "user_left"}

T7 = {"task_id": 7, "project_id": 1}
# (room, type, data) of every event the document's blocks publish, in no order
EXPECTED: list[tuple[str, str, dict[str, Any]]] = [
    ("project:1", "task.created", {**T7, "title": "Ship it"}),
    ("project:1", "task.status_changed", {**T7, "old_status": "todo", "new_status": "doing"}),
    ("user:42", "notification.new", {"title": "You were assigned task 7"}),
    ("project:1", "task.assigned", {**T7, "assignee_id": 42}),  # twice, with one key
    ("channel:9", "message", {"message_id": "bot-1", "content": "Build passed", "user_id": 1}),
    ("project:1", "task.created", {"task_id": 8, "project_id": 1, "title": "Write docs"}),
    ("project:1", "task.created", {"task_id": 9, "project_id": 1, "title": "Review docs"}),
    ("project:1", "task.deleted", {"task_id": 9, "project_id": 1}),
    ("user:42", "notification.new", {"title": "Task 9 was removed"}),
    ("project:1", "task.updated", {**T7, "changes": {"title": "Ship it today"}}),
    ("project:1", "task.status_changed", {**T7, "old_status": "doing", "new_status": "done"}),
    # the Dramatiq job (myapp.jobs.finish_task)
    ("project:1", "task.status_changed", {**T7, "old_status": "doing", "new_status": "done"}),
    ("user:42", "notification.new", {"title": "Task 7 is done"}),
    ("project:1", "comment.added", {"comment_id": 3, "task_id": 7, "body": "Looks good"}),
    # over HTTP: curl, Backend.remote, roomcast publish --url
    ("project:1", "task.created", {"task_id": 10, "project_id": 1, "title": "Release notes"}),
    ("project:1", "task.deleted", {"task_id": 10, "project_id": 1}),
    ("project:1", "comment.added", {"comment_id": 4, "task_id": 7, "body": "Merged"}),
    ("user:42", "notification.new", {"title": "Deploy finished"}),
]


def _key(room: str, type_: str, data: dict[str, Any]) -> str:
    return json.dumps([room, type_, data], sort_keys=True)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's project: the document's file blocks, as the package `myapp`."""
    work = tmp_path_factory.mktemp("publishing")
    files = [b for b in blocks(DOC, "docs/publishing.md") if b.file]
    assert {b.file for b in files} == {"myapp/jobs.py", "myapp/events.py"}
    for block in files:
        assert block.file is not None
        target = work / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.parent / "__init__.py").touch()
        target.write_text(block.text)
    return work


@pytest.fixture(scope="module")
def stack(redis_server: RedisUnderTest, app_dir: Path) -> Iterator[Stack]:
    s = Stack(redis_server.url, env_overrides={
        "PYTHONPATH": str(app_dir), "EVENT_MODULES": "myapp.events",
        "EVENTS_API_KEY": API_KEY})
    s.start_worker(threads=2, modules=("myapp.jobs",))
    s.add_gateway()
    yield s
    s.stop()


def _dead_letters(db: redis.Redis) -> int:
    return sum(int(db.xlen(keys.dead_letters(shard))) for shard in range(SHARDS))


@pytest.fixture(scope="module")
def ran(stack: Stack, app_dir: Path) -> subprocess.CompletedProcess[str]:
    """The document's runnable blocks, run in order by one reader's process."""
    runnable = [b for b in blocks(DOC, "docs/publishing.md")
                if b.lang in RUNNABLE and not b.file]
    assert sum(b.lang == "python" for b in runnable) >= 10  # the extraction works
    plan = app_dir / "plan.json"
    write_plan(plan, runnable, {DOC_GATEWAY: stack.gateways[0].http})
    env = {**stack.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                f"{os.environ.get('PATH', '')}"}
    assert shutil.which("curl", path=env["PATH"]), "the document's HTTP example needs curl"
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "doc_blocks.py"),
                             str(plan)], cwd=app_dir, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == len(runnable), result.stdout
    return result


async def test_every_block_runs_and_publishes_what_it_says(
        stack: Stack, ran: subprocess.CompletedProcess[str], db: redis.Redis) -> None:
    assert '{"key":"' in ran.stdout  # curl's answer: 202 with the event's key
    client = await connect(stack.gateways[0].url, 42)
    expected = Counter(_key(*e) for e in EXPECTED)
    rooms = sorted({room for room, _, _ in EXPECTED})

    def published() -> Counter[str]:
        return Counter(_key(f["room"], f["type"], f["data"]) for f in client.events()
                       if f["type"] not in PRESENCE)

    for room in rooms:  # the document's grant lets 42 in; its link admits it to channel:9
        reply = await client.join(room, since="0-0")
        assert reply["type"] == "room_joined" and reply["data"]["recovered"], reply
    # the Dramatiq job may still be running: wait for it, with a deadline
    await eventually(lambda: published() == expected or sum(published().values()) >
                     sum(expected.values()), timeout=20, what="the document's events")
    assert published() == expected
    assert _dead_letters(db) == 0
    await client.close()
