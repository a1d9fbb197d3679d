"""The WebSocket route without the HTTP machinery around it.

A gateway holds tens of thousands of WebSockets, each for hours. Routed through
FastAPI, every one keeps alive for its whole life the frames of the exception
middleware, the router and FastAPI's dependency handling (about 9 KB each,
measured with tracemalloc): nothing a WebSocket of ours uses, since the endpoint
handles every error itself. And FastAPI's own entry asks, per connection,
whether OpenTelemetry is configured (1.8 % of a gateway's CPU in a connect
storm, py-spy). So the app's entry (`GatewayApp.__call__`) hands our WebSocket
path straight to the endpoint; everything else (HTTP routes, other WebSocket
paths) goes through FastAPI as usual, and so does our path when FastAPI's
OpenTelemetry is configured, so that each connection still gets its span.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.ws_endpoint import websocket_endpoint

WS_PATH = "/api/v1/ws/connect"


def is_our_websocket(scope: Scope) -> bool:
    """A WebSocket to the endpoint's path, also when the app is mounted under a prefix."""
    return scope["type"] == "websocket" and route_path(scope) == WS_PATH


def route_path(scope: Scope) -> str:
    """The path below the app's mount point, as Starlette's router matches it: mounted
    at /api, a request for /api/v1/ws/connect is /v1/ws/connect, not our path."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


async def serve_websocket(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    scope["app"] = app  # what Starlette's entry would set: the endpoint reads app.state
    await websocket_endpoint(WebSocket(scope, receive, send))
