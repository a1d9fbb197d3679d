"""The FastAPI app factory: `create_app(settings)`; the lifespan starts and
drains the node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.node import Node
from gateway.routes import router
from shared.settings import Engine, Settings, SettingsError, load_settings


def create_app(settings: Settings | None = None, instance_id: str | None = None,
               port: int = 8000) -> FastAPI:
    settings = settings or load_settings()
    settings.require_jwt_key()
    if settings.ENGINE is Engine.MEMORY:
        raise SettingsError("ENGINE: 'memory' is not available in this build; use 'redis'")
    node = Node(settings, instance_id or settings.instance_id(port))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(title="roomcast gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.node = node
    app.include_router(router)
    return app
