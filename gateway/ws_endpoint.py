"""The WebSocket endpoint: handshake checks, then `session.receive` -> `apply`
until the connection ends. Problems with the whole connection arrive here as
exceptions and become close codes in this one place."""

from __future__ import annotations

import logging
import time

from starlette.websockets import WebSocket

from gateway.auth import Principal, extract_token
from gateway.close_codes import CloseCode
from gateway.commands import apply
from gateway.connection import Connection, State
from gateway.errors import AuthError, ConnectionClose
from gateway.node import Node
from gateway.session import Session
from shared.codec import direct_frame

log = logging.getLogger("roomcast.ws")


def _client_addr(websocket: WebSocket) -> str:
    return f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "-"


async def websocket_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    settings = node.settings
    subprotocol: str | None = None
    try:
        origin = websocket.headers.get("origin")
        allowed = settings.WS_ALLOWED_ORIGINS
        if allowed is not None and origin is not None and origin.rstrip("/") not in allowed:
            raise ConnectionClose(CloseCode.FORBIDDEN, "Origin not allowed")
        if not node.accepting:
            raise ConnectionClose(CloseCode.SERVICE_RESTART, "Server restart")
        try:
            presented = extract_token(websocket, settings.WS_TOKEN_COOKIE)
            if presented is None:
                raise AuthError("missing token")
            subprotocol = "bearer" if presented.via_subprotocol else None
            principal = node.verifier.verify(presented.token)
        except AuthError as exc:
            node.metrics.auth_failures.labels(reason=exc.reason.split(":")[0]).inc()
            log.warning("auth failed", extra={"reason": exc.reason,
                                              "remote": _client_addr(websocket)})
            raise ConnectionClose(CloseCode.UNAUTHORIZED, "Authentication failed") from None
    except ConnectionClose as exc:
        # Accept first: a close before the handshake reaches a browser as 1006, not our code.
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(exc.code, exc.reason)
        return
    await websocket.accept(subprotocol=subprotocol)
    await _serve(node, websocket, principal)


async def _serve(node: Node, websocket: WebSocket, principal: Principal) -> None:
    settings = node.settings
    conn = Connection(websocket, principal, node.instance_id, settings.WS_SEND_QUEUE_MAX)
    if not await node.claim_slot(conn):
        log.warning("connection limit", extra={"user_id": principal.user_id,
                                               "remote": _client_addr(websocket)})
        await websocket.close(CloseCode.TOO_MANY, "Too many connections")
        return
    started = time.monotonic()
    conn.open()
    conn.schedule_expiry()
    interval = settings.WS_HEARTBEAT_INTERVAL
    conn.send(direct_frame("connected", {
        "message": "Connected successfully", "user_id": principal.user_id,
        "username": principal.username, "connection_id": conn.id,
        "heartbeat_interval": int(interval) if float(interval).is_integer() else interval,
        "rooms": [f"user:{principal.user_id}"]}))
    log.info("connect", extra={"user_id": principal.user_id, "connection_id": conn.id,
                               "remote": _client_addr(websocket)})
    session = Session(rate_limit=settings.WS_RATE_LIMIT, rate_burst=settings.WS_RATE_BURST,
                      max_content_length=settings.WS_MAX_CONTENT_LENGTH, clock=time.monotonic)
    code: int | None = None
    try:
        await node.join_own_room(conn)
        while conn.state is State.OPEN:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", 1005))
                break
            text = message.get("text")
            frame = text if text is not None else (message.get("bytes") or b"")
            for action in session.receive(frame):
                await apply(node, conn, action)
    except ConnectionClose as exc:
        if exc.code == CloseCode.POLICY_VIOLATION:
            log.warning("abuse close", extra={"user_id": principal.user_id,
                                              "connection_id": conn.id, "reason": exc.reason})
        conn.close(exc.code, exc.reason)
    except Exception:
        log.exception("connection failed", extra={"connection_id": conn.id})
        conn.close(CloseCode.INTERNAL_ERROR, "Internal error")
    finally:
        if conn.close_code == CloseCode.TRY_AGAIN_LATER:
            node.metrics.slow_consumer_closes.inc()
        conn.mark_closed(code)
        await node.disconnect(conn)
        log.info("disconnect", extra={"user_id": principal.user_id, "connection_id": conn.id,
                                      "code": conn.close_code,
                                      "duration_s": round(time.monotonic() - started, 3)})
