"""Our WebSocket path is served from the app's entry: a connection's task holds
none of our app's FastAPI or Starlette frames for its life (nor pays FastAPI's
per-request telemetry check), whether the app is served alone or mounted under a
backend's prefix; HTTP routes still go through FastAPI, and so do our WebSockets
when FastAPI's OpenTelemetry is on (it gives each connection a span). A real
uvicorn with our protocol, the memory engine, and a real WebSocket client."""

from __future__ import annotations

import asyncio
import socket
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from opentelemetry import trace

from gateway.app import create_app, gateway_lifespan
from gateway.ws_protocol import RoomcastWebSocketProtocol
from shared.settings import Engine, Settings
from tests.support.stack import JWT_SECRET
from tests.support.tokens import make_token

FRAMEWORK_FILES = ("fastapi/applications.py", "starlette/applications.py",
                   "starlette/middleware", "starlette/routing.py")


def _gateway() -> FastAPI:
    settings = Settings(ENGINE=Engine.MEMORY, JWT_SECRET=JWT_SECRET)
    return create_app(settings, instance_id="fast-path")


def _gateway_with_telemetry() -> FastAPI:
    gateway = _gateway()
    # as FastAPI(telemetry={"tracer_provider": ...}) would configure it
    gateway._native_telemetry.config["tracer_provider"] = trace.NoOpTracerProvider()
    return gateway


def _mounted() -> FastAPI:
    gateway = _gateway()
    backend = FastAPI(lifespan=gateway_lifespan(gateway))
    backend.mount("/rt", gateway)
    return backend


async def _serve(app: FastAPI) -> AsyncIterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))  # clients wait in its backlog
    config = uvicorn.Config(app, ws=RoomcastWebSocketProtocol, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    server.should_exit = True
    await task


@pytest.fixture(params=["alone", "mounted"])
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    prefix = "/rt" if request.param == "mounted" else ""
    build: Callable[[], FastAPI] = _mounted if prefix else _gateway
    async for address in _serve(build()):
        yield address, prefix


def _await_chain(coro: Any) -> list[str]:
    """Where each coroutine awaiting in `coro`'s chain is, as file:function."""
    places = []
    while isinstance(coro, types.CoroutineType):
        code = coro.cr_code
        places.append(f"{code.co_filename}:{code.co_name}")
        coro = coro.cr_await
    return places


async def _connection_chain(url: str) -> list[str]:
    """The await chain of the task serving one live connection to `url`."""
    async with websockets.connect(url) as ws:
        assert '"connected"' in str(await ws.recv())
        chains = [_await_chain(t.get_coro()) for t in asyncio.all_tasks()]
        (chain,) = [c for c in chains if any(p.endswith(":websocket_endpoint") for p in c)]
    return chain


async def test_a_connection_holds_no_framework_frames(served: tuple[str, str]) -> None:
    address, prefix = served
    chain = await _connection_chain(
        f"ws://{address}{prefix}/api/v1/ws/connect?token={make_token(41)}")
    # mounted, the backend's own app, middleware and Mount come first: they are its own
    ours = next(i for i, p in enumerate(chain) if p.endswith("gateway/app.py:__call__"))
    held = [p for p in chain[ours if prefix else 0:] if any(f in p for f in FRAMEWORK_FILES)]
    assert not held, chain


async def test_http_routes_still_go_through_fastapi(served: tuple[str, str]) -> None:
    address, prefix = served
    async with httpx.AsyncClient(base_url=f"http://{address}{prefix}") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/no-such-route")).status_code == 404


async def test_with_fastapis_telemetry_on_a_connection_goes_through_fastapi() -> None:
    async for address in _serve(_gateway_with_telemetry()):
        chain = await _connection_chain(
            f"ws://{address}/api/v1/ws/connect?token={make_token(42)}")
    assert any(p.endswith("fastapi/applications.py:__call__") for p in chain), chain


async def test_mounted_at_a_prefix_that_looks_like_our_path_routes_as_fastapi_would() -> None:
    # mounted at /api, /api/v1/ws/connect is the gateway's /v1/ws/connect: no route
    gateway = _gateway()
    backend = FastAPI(lifespan=gateway_lifespan(gateway))
    backend.mount("/api", gateway)
    async for address in _serve(backend):
        token = make_token(43)
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://{address}/api/v1/ws/connect?token={token}")
        assert refused.value.response.status_code == 403
        chain = await _connection_chain(f"ws://{address}/api/api/v1/ws/connect?token={token}")
        assert chain
