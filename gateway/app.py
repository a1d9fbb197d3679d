"""The FastAPI app factory, `create_app(settings)`, and `gateway_lifespan` for
embedding the gateway in a backend's own FastAPI app.

    app = create_app(settings)                      # a gateway of its own

    gateway = create_app(settings)                  # or inside an existing app:
    backend = FastAPI(lifespan=gateway_lifespan(gateway))
    backend.mount("/rt", gateway)                   # ws://host/rt/api/v1/ws/connect

The lifespan starts the node (the engine's reader, timers, and for ENGINE=memory
the in-process workers) and drains it on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway.fast_path import is_our_websocket, serve_websocket
from gateway.gc_threshold import raise_gc_threshold
from gateway.logs import install_redaction
from gateway.node import Node
from gateway.routes import router
from gateway.serving import check_served_by, factory_port
from shared.engines import build_engine
from shared.events import import_event_modules
from shared.settings import Settings, load_settings

log = logging.getLogger("roomcast.app")


def create_app(settings: Settings | None = None, instance_id: str | None = None,
               port: int | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.require_jwt_key()
    check_served_by(settings)  # e.g. `uvicorn --factory` without our protocol: one line
    install_redaction()  # tokens stay out of every log, however the app is served
    import_event_modules(settings.EVENT_MODULES)
    engine = build_engine(settings)
    node = Node(settings, instance_id or settings.instance_id(port or factory_port()), engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with node_running(node):
            yield

    app = GatewayApp(title="roomcast gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.node = node
    app.include_router(router)
    return app


class GatewayApp(FastAPI):
    """FastAPI, with our WebSocket path served before FastAPI's own entry (see
    gateway/fast_path.py), unless FastAPI's OpenTelemetry is on: then every
    connection goes through FastAPI, which gives it its span."""

    _framework_telemetry: bool | None = None  # decided at the first WebSocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.root_path:  # as FastAPI's entry does
            scope["root_path"] = self.root_path
        if is_our_websocket(scope) and not self._telemetry_wanted():
            await serve_websocket(self, scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _telemetry_wanted(self) -> bool:
        """FastAPI's entry asks this per request; a process configures OpenTelemetry
        at its start (opentelemetry-instrument, or the app's own setup), so once is
        enough. FastAPI before 0.165 has no such wrapper."""
        if self._framework_telemetry is None:
            native = getattr(self, "_native_telemetry", None)
            self._framework_telemetry = bool(native is not None and native.enabled())
        return self._framework_telemetry


@asynccontextmanager
async def node_running(node: Node) -> AsyncIterator[None]:
    raise_gc_threshold()  # a full collection over many connections stops the loop
    node.engine.start_local_workers()  # ENGINE=memory: the workers live in this process
    try:
        await node.start()
        try:
            yield
        finally:
            await node.stop()
    finally:
        node.engine.stop_local_workers()


def gateway_lifespan(gateway: FastAPI) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan for the app that mounts `gateway`: mounted apps get no lifespan of
    their own (Starlette runs only the outer app's), so the outer one starts the node."""
    node: Node = gateway.state.node

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with node_running(node):
            yield

    return lifespan
