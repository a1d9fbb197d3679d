"""HTTP and WebSocket routes: thin, each hands off to the node or the engine.

The backend API (`POST /api/v1/events`, `POST /api/v1/access`) is off unless
EVENTS_API_KEY is set, and then needs that key in `X-API-Key`. It queues exactly
what `workers.api` queues, for either engine: a request is one producer, so the
events of one request are appended in their order.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from gateway.node import Node
from gateway.ws_endpoint import websocket_endpoint
from shared.engines.roles import EventJob, Job, QueueFull
from shared.events import InvalidEvent, UnknownEventType
from shared.publishing import event_from_payload, grant_job, link_job, revoke_job, room_name
from shared.schema import events_schema

router = APIRouter()
router.add_api_websocket_route("/api/v1/ws/connect", websocket_endpoint)

_INSPECTOR = resources.files("gateway").joinpath("static/inspector.html")
READY_TIMEOUT = 2.0
MAX_EVENTS_PER_REQUEST = 1000
# The browser SDK: its media types, by file. A wheel ships it as static/sdk/ in gateway
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
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "instance": _node(request).instance_id}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    try:
        ok, detail = await asyncio.wait_for(_node(request).readiness(), READY_TIMEOUT)
    except TimeoutError:
        ok, detail = False, {"reachable": False}
    return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(_node(request).metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/events/schema")
async def event_schema() -> dict[str, Any]:
    """JSON Schema of every event type a backend may publish (built-in and registered)."""
    return events_schema()


def _check_key(node: Node, given: str | None) -> None:
    expected = node.settings.EVENTS_API_KEY
    if not expected:
        raise HTTPException(404, "the backend API is off (EVENTS_API_KEY unset)")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "invalid API key")


async def _enqueue(node: Node, jobs: list[Job]) -> None:
    try:
        await node.engine.jobs.enqueue(jobs)
    except QueueFull as exc:
        raise HTTPException(503, str(exc)) from None


@router.post("/api/v1/events", status_code=202)
async def publish_events(request: Request, payload: dict[str, Any],
                         x_api_key: str | None = Header(default=None)) -> dict[str, Any]:
    """One event (`{"type", "room", "data", "sender"?, "key"?}`) or several
    (`{"events": [...]}`), queued as `workers.api.publish` / `publish_many` do."""
    node = _node(request)
    _check_key(node, x_api_key)
    many = set(payload) == {"events"}
    items = payload["events"] if many else [payload]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_EVENTS_PER_REQUEST:
        raise HTTPException(422, f"'events' must list 1..{MAX_EVENTS_PER_REQUEST} events")
    try:
        events = [event_from_payload(node.settings, item) for item in items]
    except (InvalidEvent, UnknownEventType) as exc:
        raise HTTPException(422, str(exc)) from None
    await _enqueue(node, [EventJob(tuple(events))])
    keys = [e.key for e in events]
    return {"keys": keys} if many else {"key": keys[0]}


class AccessChange(BaseModel):
    op: Literal["grant", "revoke", "link"]
    room: str
    user_id: int | None = None
    project_room: str | None = None


@router.post("/api/v1/access", status_code=202)
async def change_access(request: Request, change: AccessChange,
                        x_api_key: str | None = Header(default=None)) -> dict[str, str]:
    """Grant, revoke or link, queued as `workers.api.grant_access` & co. do."""
    node = _node(request)
    _check_key(node, x_api_key)
    try:
        if change.op == "link":
            job: Job = link_job(change.room, change.project_room)
        elif change.op == "grant":
            job = grant_job(change.user_id, change.room)
        else:
            job = revoke_job(change.user_id, change.room)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    await _enqueue(node, [job])
    return {"queued": change.op}


@router.get("/api/v1/access")
async def check_access(request: Request, user_id: int, room: str,
                       x_api_key: str | None = Header(default=None)) -> dict[str, bool]:
    """Whether `user_id` may join `room` now: what `Grant.wait` asks a remote gateway."""
    node = _node(request)
    _check_key(node, x_api_key)
    try:
        return {"allowed": await node.engine.access.allowed(user_id, room_name(room))}
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
