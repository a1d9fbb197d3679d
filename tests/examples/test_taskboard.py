"""The taskboard example, started with its own command (examples/taskboard/run)
against this module's Redis, and driven over real sockets: its REST API with
httpx, a WebSocket client per user on the real gateways, and chromium for the page.

The example runs with TASKBOARD_FAIL_FIRST_ATTEMPT=add_comment: every comment
job fails once right after its event reached roomcast, and Dramatiq retries it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from roomcast.cli.embedded_redis import free_port
from tests.support.browser import launch, save_artifact
from tests.support.redis_fixture import RedisUnderTest
from tests.support.ws import WsClient

RUN = Path(__file__).resolve().parents[2] / "examples" / "taskboard" / "run"
START_TIMEOUT = 60.0
FIGURES: dict[str, float] = {}  # written to test-artifacts/taskboard.json at the end


@dataclass
class Taskboard:
    process: subprocess.Popen[bytes]
    url: str
    gateways: list[str]  # ws://host:port/api/v1/ws/connect
    db_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """A look into the example's database (read-only), to know when jobs are done."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def taskboard(redis_server: RedisUnderTest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Taskboard]:
    work = tmp_path_factory.mktemp("taskboard")
    port, gateway_ports = free_port(), [free_port(), free_port()]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JWT_", "REDIS_", "WS_", "TASKBOARD_", "EVENT_"))}
    env.update(REDIS_URL=redis_server.url, TASKBOARD_FAIL_FIRST_ATTEMPT="add_comment",
               PYTHONUNBUFFERED="1")
    log_path = work / "taskboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(RUN), "--port", str(port), "--gateway-ports", ",".join(map(str, gateway_ports)),
             "--db", str(work / "taskboard.db")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    board = Taskboard(process, f"http://127.0.0.1:{port}",
                      [f"ws://127.0.0.1:{p}/api/v1/ws/connect" for p in gateway_ports],
                      work / "taskboard.db", log_path)
    started = time.monotonic()
    try:
        while "taskboard: open http://" not in board.log():
            assert process.poll() is None, f"the example exited:\n{board.log()[-3000:]}"
            assert time.monotonic() - started < START_TIMEOUT, board.log()[-3000:]
            time.sleep(0.1)  # poll with a deadline while it starts
        FIGURES["start_s"] = round(time.monotonic() - started, 2)
        yield board
        # Ctrl-C, as a user stops it: every process ends, and the runner exits 0
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, board.log()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        save_figures()


def save_figures() -> None:
    target = RUN.parents[2] / "test-artifacts"
    target.mkdir(exist_ok=True)
    (target / "taskboard.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


@dataclass
class User:
    http: httpx.AsyncClient
    id: int
    name: str
    token: str

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   expect_status: int = 200) -> Any:
        response = await self.http.request(method, path, json=body)
        assert response.status_code == expect_status, (path, response.text)
        return response.json() if response.content else None


@asynccontextmanager
async def users(board: Taskboard, *names: str) -> AsyncIterator[list[User]]:
    logged_in: list[User] = []
    try:
        for name in names:
            http = httpx.AsyncClient(base_url=board.url, timeout=10)
            response = await http.post("/api/login", json={"username": name, "password": "pw"})
            assert response.status_code == 200, response.text
            body = response.json()
            logged_in.append(User(http, body["user"]["id"], name, body["token"]))
        yield logged_in
    finally:
        for user in logged_in:
            await user.http.aclose()


@asynccontextmanager
async def connected(url: str, user: User) -> AsyncIterator[WsClient]:
    client = await WsClient.open(url, user.token)
    try:
        welcome = await client.wait_for(lambda f: f["type"] == "connected")
        assert welcome["data"]["user_id"] == user.id
        assert welcome["data"]["username"] == user.name
        yield client
    finally:
        await client.close()


def of_task(task_id: int) -> Any:
    return lambda f: f.get("data", {}).get("task_id") == task_id


async def wait_until(probe: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)  # poll with a deadline


async def jobs_done(board: Taskboard, jobs: list[str]) -> None:
    """Every job committed its change and the outbox sent every event."""
    def done() -> bool:
        marks = ",".join("?" * len(jobs))
        committed = board.query(f"SELECT count(*) FROM jobs WHERE message_id IN ({marks})", *jobs)
        unsent = board.query("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return bool(committed[0][0] == len(jobs) and unsent[0][0] == 0)
    await wait_until(done)


async def test_login_issues_a_roomcast_token(taskboard: Taskboard) -> None:
    async with users(taskboard, "amy") as (amy,):
        async with connected(taskboard.gateways[0], amy):  # the gateway accepts it
            pass
        fresh = await amy.call("GET", "/api/token")
        assert fresh["token"].count(".") == 2 and fresh["token_ttl"] == 900
    async with httpx.AsyncClient(base_url=taskboard.url) as anonymous:
        wrong = await anonymous.post("/api/login", json={"username": "amy", "password": "no"})
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "wrong password for 'amy'"})
        bad = await anonymous.post("/api/login", json={"username": "a b", "password": "x"})
        assert bad.json()["detail"] == "username: 1-32 letters, digits, '.', '_' or '-'"
        me = await anonymous.get("/api/me")
        assert (me.status_code, me.json()["detail"]) == (401, "log in first (POST /api/login)")
        # EVENT_MODULES: the gateways know the example's own event type
        gateway = taskboard.gateways[0].replace("ws://", "http://").removesuffix("/ws/connect")
        schema = (await anonymous.get(f"{gateway}/events/schema")).text
        assert '"comment.added"' in schema


async def test_a_project_live_from_grant_to_revocation(taskboard: Taskboard) -> None:
    async with users(taskboard, "ann", "ben", "cid") as (ann, ben, cid):
        project = await ann.call("POST", "/api/projects", {"name": "Launch"}, 201)
        pid, room, chat = project["id"], project["room"], project["chat_room"]
        await ann.call("POST", f"/api/projects/{pid}/members", {"username": "ben"})
        # each mistake gets one line
        mistakes = [
            ("POST", "members", {"username": "zed"}, "no user 'zed': they log in once first"),
            ("POST", "members", {"username": "ben"}, "'ben' is a member already"),
            ("DELETE", f"members/{ann.id}", None, "the owner stays a member of their project"),
            ("DELETE", f"members/{cid.id}", None, f"user {cid.id} is no member of this project")]
        for method, path, body, answer in mistakes:
            reply = await ann.http.request(method, f"/api/projects/{pid}/{path}", json=body)
            assert reply.json()["detail"] == answer
        foreign = await cid.http.post(f"/api/projects/{pid}/tasks", json={"title": "x"})
        assert (foreign.status_code, foreign.json()["detail"]) == (404,
                                                                  f"no project {pid} of yours")

        async with connected(taskboard.gateways[0], ben) as ben_ws, \
                connected(taskboard.gateways[1], ann) as ann_ws, \
                connected(taskboard.gateways[0], cid) as cid_ws:
            # The backend answered once the grant was in force: the joins work at once.
            for client in (ben_ws, ann_ws):
                assert (await client.join(room))["type"] == "room_joined"
                assert (await client.join(chat))["type"] == "room_joined"  # linked channel
            refused = await cid_ws.join(room)
            assert (refused["type"], refused["data"]["code"]) == ("error", 4403)

            # A task created, then moved twice: the events arrive in the order made.
            sent = time.monotonic()
            await ann.call("POST", f"/api/projects/{pid}/tasks", {"title": "Write docs"}, 202)
            created = await ben_ws.wait_for(lambda f: f["type"] == "task.created")
            FIGURES["rest_to_event_ms_created"] = round((time.monotonic() - sent) * 1000, 1)
            task_id = created["data"]["task_id"]
            assert created["sender"] == "ann" and created["data"]["title"] == "Write docs"
            for status in ("doing", "done"):
                sent = time.monotonic()
                await ann.call("PATCH", f"/api/tasks/{task_id}", {"status": status}, 202)
                await ben_ws.wait_for(lambda f, s=status: f["type"] == "task.status_changed"
                                      and f["data"]["new_status"] == s)
                FIGURES[f"rest_to_event_ms_{status}"] = round((time.monotonic() - sent) * 1000, 1)
            seen = [(f["type"], f["data"].get("old_status"), f["data"].get("new_status"))
                    for f in ben_ws.events(room) if of_task(task_id)(f)]
            assert seen == [("task.created", None, None),
                            ("task.status_changed", "todo", "doing"),
                            ("task.status_changed", "doing", "done")]
            ids = [f["id"] for f in ben_ws.events(room) if of_task(task_id)(f)]
            await ann_ws.wait_for(lambda f: f.get("id") == ids[-1])
            assert [f["id"] for f in ann_ws.events(room) if of_task(task_id)(f)] == ids

            # Changes made at once run as concurrent jobs: whatever order they commit
            # in, every event continues the previous one and the last matches the database.
            jobs = [(await ann.call("PATCH", f"/api/tasks/{task_id}", {"status": s}, 202))["job"]
                    for s in ("todo", "doing", "done", "todo")]
            await jobs_done(taskboard, jobs)
            await ann.call("POST", f"/api/projects/{pid}/tasks", {"title": "sentinel 1"}, 202)
            await ben_ws.wait_for(lambda f: f.get("data", {}).get("title") == "sentinel 1")
            chain = [f["data"] for f in ben_ws.events(room, "task.status_changed")
                     if of_task(task_id)(f)]
            assert all(a["new_status"] == b["old_status"] for a, b in itertools.pairwise(chain))
            state = await ann.call("GET", f"/api/projects/{pid}")
            assert chain[-1]["new_status"] == next(
                t["status"] for t in state["tasks"] if t["id"] == task_id)

            # Chat, stored in SQLite and published to the linked channel room.
            await ben.call("POST", f"/api/projects/{pid}/messages", {"content": "hi ann"}, 202)
            message = await ann_ws.wait_for(lambda f: f["type"] == "message")
            assert message["room"] == chat and message["sender"] == "ben"
            assert message["data"]["content"] == "hi ann" and message["data"]["user_id"] == ben.id

            # The custom type, from a job that fails once after publishing and is retried.
            job = (await ben.call("POST", f"/api/tasks/{task_id}/comments",
                                  {"body": "LGTM"}, 202))["job"]
            comment = await ann_ws.wait_for(lambda f: f["type"] == "comment.added")
            assert comment["data"] == {"comment_id": comment["data"]["comment_id"],
                                       "task_id": task_id, "project_id": pid,
                                       "user_id": ben.id, "body": "LGTM"}
            await jobs_done(taskboard, [job])  # the retry ran: it re-sent with the same key
            assert "simulated failure after publishing" in taskboard.log()
            await ann.call("POST", f"/api/projects/{pid}/tasks", {"title": "sentinel 2"}, 202)
            await ann_ws.wait_for(lambda f: f.get("data", {}).get("title") == "sentinel 2")
            assert len(ann_ws.events(room, "comment.added")) == 1  # published once
            assert len((await ann.call("GET", f"/api/projects/{pid}"))["comments"]) == 1

            # Removal revokes live: ben's connection leaves both rooms within a second.
            sent = time.monotonic()
            await ann.call("DELETE", f"/api/projects/{pid}/members/{ben.id}", expect_status=204)
            for name in (room, chat):
                left = await ben_ws.wait_for(lambda f, n=name: f["type"] == "room_left"
                                             and f.get("room") == n, timeout=2)
                assert left["data"]["reason"] == "access_revoked"
            FIGURES["revoke_to_room_left_ms"] = round((time.monotonic() - sent) * 1000, 1)
            assert FIGURES["revoke_to_room_left_ms"] < 1000
            notice = await ben_ws.wait_for(lambda f: f["type"] == "notification.new"
                                           and "removed" in f["data"]["title"])
            assert notice["data"]["title"] == "ann removed you from Launch"
            assert (await ben_ws.join(room))["data"]["code"] == 4403
            gone = await ben.http.get(f"/api/projects/{pid}")
            assert gone.status_code == 404


def test_the_page_shows_a_live_task_update(taskboard: Taskboard, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path / "profile")
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(taskboard.url)
        page.fill("#login-form [name=username]", "dot")
        page.fill("#login-form [name=password]", "pw")
        page.click("#login-form button")
        expect(page.locator("#status")).to_contain_text("live")
        page.fill("#new-project [name=name]", "Page")
        page.click("#new-project button")
        expect(page.locator("#project-name")).to_have_text("Page")
        page.fill("#new-task [name=title]", "Ship the page")
        page.click("#new-task button")
        card = page.locator("#col-todo .card", has_text="Ship the page")
        expect(card).to_be_visible()
        task_id = card.get_attribute("data-task-id")

        # The same user changes the task from elsewhere (the REST API): the page follows.
        with httpx.Client(base_url=taskboard.url) as http:
            assert http.post("/api/login", json={"username": "dot", "password": "pw"}
                             ).status_code == 200
            sent = time.monotonic()
            assert http.patch(f"/api/tasks/{task_id}", json={"status": "done"}
                              ).status_code == 202
            page.wait_for_selector(f'#col-done .card[data-task-id="{task_id}"]')
            FIGURES["rest_to_page_ms"] = round((time.monotonic() - sent) * 1000, 1)
        assert errors == []
        shot = tmp_path / "taskboard.png"
        page.screenshot(path=str(shot), full_page=True)
        save_artifact(shot, "taskboard.png")
        context.close()
