"""HTTP and WebSocket routes: thin, each hands off to the node."""

from __future__ import annotations

import asyncio
import functools
import hmac
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from redis.exceptions import RedisError

from gateway.node import Node
from gateway.ws_endpoint import websocket_endpoint

router = APIRouter()
router.add_api_websocket_route("/api/v1/ws/connect", websocket_endpoint)

_INSPECTOR = resources.files("gateway").joinpath("static/inspector.html")
# The browser SDK: its media types, by file. A wheel ships it in gateway/static/sdk/
# (pyproject force-include); a source checkout serves sdk-js/ itself.
_SDK_FILES = {"roomcast.js": "text/javascript; charset=utf-8",
              "roomcast.d.ts": "application/typescript; charset=utf-8"}


@functools.cache
def _sdk_text(name: str) -> str:
    packaged = resources.files("gateway").joinpath("static/sdk", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[1] / "sdk-js" / name).read_text(encoding="utf-8")


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def inspector() -> HTMLResponse:
    return HTMLResponse(_INSPECTOR.read_text())


@router.get("/sdk/{name}", include_in_schema=False)
async def sdk(name: str) -> Response:
    media_type = _SDK_FILES.get(name)
    if media_type is None:
        raise HTTPException(404, "not found")
    # Any origin may import the module: it is public code, sent without credentials.
    return Response(_sdk_text(name), media_type=media_type,
                    headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    node = _node(request)
    ok, detail = node.readiness()
    try:
        await asyncio.wait_for(node.redis.ping(), timeout=2)
    except (RedisError, OSError, TimeoutError):
        ok, detail = False, {**detail, "redis": False}
    return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(_node(request).metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.post("/api/v1/events", status_code=202)
async def publish_event(request: Request, payload: dict[str, Any],
                        x_api_key: str | None = Header(default=None)) -> dict[str, str]:
    """Enqueue an event for the publish actor, as `workers.api.publish` does."""
    node = _node(request)
    expected = node.settings.EVENTS_API_KEY
    if not expected:
        raise HTTPException(404, "events API is disabled (EVENTS_API_KEY unset)")
    if not x_api_key or not hmac.compare_digest(x_api_key, expected):
        raise HTTPException(401, "invalid API key")
    try:
        key = await asyncio.to_thread(node.backend.publish, payload)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_input=False)) from None
    return {"key": key}
