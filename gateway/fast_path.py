"""The WebSocket route without the HTTP machinery around it.

A gateway holds tens of thousands of WebSockets, each for hours. Routed through
FastAPI, every one keeps alive for its whole life the frames of the exception
middleware, the router and FastAPI's dependency handling (about 9 KB each,
measured with tracemalloc): nothing a WebSocket of ours uses, since the endpoint
handles every error itself. This sits in front of the app's middleware stack and
hands our WebSocket path straight to the endpoint; everything else (HTTP routes,
other WebSocket paths) goes through the stack as usual.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.ws_endpoint import websocket_endpoint

WS_PATH = "/api/v1/ws/connect"


class WebSocketFastPath:
    def __init__(self, stack: ASGIApp) -> None:
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _our_path(scope):
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await self._stack(scope, receive, send)


def _our_path(scope: Scope) -> bool:
    """The endpoint's path, also when the app is mounted under a prefix."""
    path: str = scope.get("path", "")
    return path == WS_PATH or path == scope.get("root_path", "") + WS_PATH
