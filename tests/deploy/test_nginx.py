"""deploy/nginx.conf, the load balancer compose.yaml runs, run for real: Debian's
nginx in front of two gateways. Connect, join, events and resume go through it,
also across a SIGKILL of the gateway behind a client; the operational endpoints
stay off its public port; its access log never holds a token."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from roomcast.cli.embedded_redis import free_port
from roomcast.client import Connected, Recovered, RoomcastClient, RoomEvent
from shared.settings import Settings
from tests.support.delivery import history_ids
from tests.support.nginx import Nginx
from tests.support.stack import JWT_SECRET, SHARDS, Stack
from tests.support.tokens import make_token
from tests.support.ws import WsClient
from workers.api import Backend

DEADLINE = 20.0


@pytest.fixture(scope="module")
def lb(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    nginx = Nginx(free_port(), tmp_path_factory.mktemp("nginx"))
    nginx.start([f"127.0.0.1:{g.port}" for g in stack.gateways])
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def backend(stack: Stack) -> Iterator[Backend]:
    b = Backend(Settings(REDIS_URL=stack.redis_url, JWT_SECRET=JWT_SECRET, STREAM_SHARDS=SHARDS))
    yield b
    b.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


async def _member(lb: Nginx, backend: Backend, user: int, room: str,
                  **open_kwargs: object) -> WsClient:
    backend.grant_access(user, room)
    token = make_token(user, f"u{user}")
    if open_kwargs.get("subprotocols"):
        open_kwargs["subprotocols"] = ["bearer", token]
        client = await WsClient.open(lb.ws, **open_kwargs)  # type: ignore[arg-type]
    else:
        client = await WsClient.open(lb.ws, token)
    await client.wait_for(lambda f: f["type"] == "connected")
    await client.join_when_granted(room)
    return client


async def test_connect_join_and_event_through_nginx_with_the_bearer_subprotocol(
        lb: Nginx, backend: Backend, unique_id: Callable[[], int]) -> None:
    room = f"project:{unique_id()}"
    client = await _member(lb, backend, unique_id(), room, subprotocols=True)
    assert client.conn.subprotocol == "bearer"  # nginx passed the offer and the answer
    backend.task_created(room, task_id=1, project_id=1, title="through the balancer")
    (event,) = await client.wait_events(room, 1, type_="task.created")
    assert event["data"]["title"] == "through the balancer"
    await client.close()


async def test_resume_through_nginx_after_sigkill_of_the_gateway_behind_it(
        lb: Nginx, stack: Stack, backend: Backend, db: redis.Redis,
        unique_id: Callable[[], int]) -> None:
    user, room = unique_id(), f"project:{unique_id()}"
    probe = await _member(lb, backend, user, room)  # the grant has reached the worker
    await probe.close()
    client = RoomcastClient(lb.ws, make_token(user, "resumer"), backoff_base=0.05,
                            backoff_cap=0.5, connect_kwargs={"proxy": None})
    seen: list[RoomEvent] = []
    connections: list[Connected] = []
    recovered: list[Recovered] = []
    client.on(RoomEvent, lambda e: seen.append(e) if e.room == room else None)
    client.on(Connected, connections.append)
    client.on(Recovered, recovered.append)

    async def tasks(count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while sum(e.type == "task.created" for e in seen) < count:
            assert time.monotonic() < deadline, f"{count} events never arrived: {seen}"
            await asyncio.sleep(0.02)  # poll with a deadline

    async with client:
        await client.join(room)
        for n in range(10):
            backend.task_created(room, task_id=n, project_id=1, title=f"e{n}")
        await tasks(10)
        instance = (connections[0].connection_id or "").split(":", 1)[0]
        victim = next(g for g in stack.gateways if g.instance_id == instance)
        await asyncio.to_thread(victim.kill)
        try:
            for n in range(10, 20):
                backend.task_created(room, task_id=n, project_id=1, title=f"e{n}")
            await tasks(20)
            assert any(r.room == room for r in recovered), "resumed with recovered: true"
        finally:
            await asyncio.to_thread(victim.start)

    assert len(connections) == 2 and connections[1].reconnect
    assert not (connections[1].connection_id or "").startswith(instance + ":")
    ids = [e.id for e in seen]
    assert len(set(ids)) == len(ids), "each event once"
    task_ids = [e.id for e in seen if e.type == "task.created"]
    stream = set(task_ids)
    # Exactly the room's stream, in its order.
    assert task_ids == [i for i in history_ids(db, room) if i in stream]
    assert sorted(e.data["title"] for e in seen if e.type == "task.created") == sorted(
        f"e{n}" for n in range(20))


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "//metrics", "/%6detrics",
                                  "/METRICS", "/metrics?format=text", "/readyz",
                                  "/readyz/", "/./readyz"])
def test_operational_endpoints_stay_off_the_public_port(lb: Nginx, stack: Stack,
                                                        path: str) -> None:
    status, body = _get(lb.http + path)
    assert status == 404 and "nginx" in body and "roomcast" not in body, (status, body[:200])


def test_what_the_public_port_does_serve(lb: Nginx, stack: Stack) -> None:
    # The gateways do answer /metrics: the 404 above is the balancer's doing.
    status, body = _get(stack.gateways[0].http + "/metrics")
    assert status == 200 and "roomcast_" in body
    for path, needle in [("/healthz", "ok"), ("/sdk/roomcast.js", "RoomcastClient"),
                         ("/", "roomcast inspector")]:
        status, body = _get(lb.http + path)
        assert status == 200 and needle in body, path


async def test_nginx_access_log_never_holds_the_token(lb: Nginx,
                                                      unique_id: Callable[[], int]) -> None:
    token = make_token(unique_id())
    client = await WsClient.open(lb.ws, token)
    await client.wait_for(lambda f: f["type"] == "connected")
    await client.close()
    deadline = time.monotonic() + DEADLINE
    while "/api/v1/ws/connect" not in lb.access_log():  # written when the socket closes
        assert time.monotonic() < deadline, "no access log line"
        await asyncio.sleep(0.05)  # poll with a deadline
    log = lb.access_log()
    assert token not in log and "token=" not in log
    assert re.search(r'"GET /api/v1/ws/connect" 101 ', log), log


def test_rendered_config_is_the_shipped_one_plus_addresses(lb: Nginx) -> None:
    rendered = (lb.workdir / "nginx.conf").read_text()
    shipped = Path(__file__).resolve().parents[2].joinpath("deploy", "nginx.conf").read_text()
    for line in shipped.splitlines():
        if not re.search(r"server gateway-|listen 8000|access_log", line):
            assert line in rendered.splitlines(), line
