"""The WebSocket endpoint: handshake checks, then `session.receive` -> `apply`
until the connection ends. Problems with the whole connection arrive here as
exceptions and become close codes in this one place.

Every refusal is logged as one structured record (`origin denied`, `auth
failed`, `connection limit`, `abuse close`, `protocol close`) with the remote
address and a reason; a token is never part of a record.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import Principal, extract_token, selected_subprotocol
from gateway.close_codes import CloseCode
from gateway.connection import Connection, SendLimits, State
from gateway.errors import AuthError, ConnectionClose
from gateway.node import Node
from gateway.serving import report_plain_asgi_once
from gateway.session import Session
from gateway.sink import AsgiSink, FrameSink
from gateway.ws_protocol import FRAME_SINK_EXTENSION
from shared.codec import direct_frame

log = logging.getLogger("roomcast.ws")

# Closes the transport layer decided on its own (uvicorn / the websockets parser).
_PROTOCOL_CLOSES = {int(CloseCode.INVALID_PAYLOAD): "invalid UTF-8 in a text frame",
                    int(CloseCode.MESSAGE_TOO_BIG): "frame over WS_MESSAGE_MAX_SIZE"}
_PEER_GONE = (WebSocketDisconnect, OSError, RuntimeError)
# A close the session decided (abuse) comes after replies still queued for the
# writer; they are let out first, for at most this long, so the client sees the
# errors that led to the close. A slow consumer's close never waits.
DRAIN_BEFORE_CLOSE_SECONDS = 1.0


def _client_addr(websocket: WebSocket) -> str:
    return f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "-"


def _authenticate(node: Node, websocket: WebSocket) -> Principal:
    """The handshake checks, in order: origin, draining, token. Raises ConnectionClose."""
    settings = node.settings
    remote = _client_addr(websocket)
    origin = websocket.headers.get("origin")
    allowed = settings.WS_ALLOWED_ORIGINS
    if allowed is not None and origin is not None and origin.rstrip("/") not in allowed:
        log.warning("origin denied", extra={"origin": origin[:200], "remote": remote})
        raise ConnectionClose(CloseCode.FORBIDDEN, "Origin not allowed")
    if not node.accepting:
        raise ConnectionClose(CloseCode.SERVICE_RESTART, "Server restart")
    source = "-"
    try:
        presented = extract_token(websocket, settings.WS_TOKEN_COOKIE)
        if presented is None:
            raise AuthError("missing token")
        source = presented.source
        return node.verifier.verify(presented.token)
    except AuthError as exc:
        node.metrics.auth_failures.labels(reason=exc.reason.split(":")[0]).inc()
        log.warning("auth failed", extra={"reason": exc.reason, "source": source,
                                          "remote": remote})
        raise ConnectionClose(CloseCode.UNAUTHORIZED, "Authentication failed") from None


async def websocket_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    # Selected whenever offered, also on a refusal: a browser fails a handshake that
    # offered subprotocols and got none back, and would then see 1006, not our code.
    subprotocol = selected_subprotocol(websocket)
    try:
        principal = _authenticate(node, websocket)
    except ConnectionClose as exc:
        # Accept first: a close before the handshake reaches a browser as 1006, not our code.
        try:
            await websocket.accept(subprotocol=subprotocol)
            await websocket.close(exc.code, exc.reason)
        except _PEER_GONE:
            pass  # the client left during the handshake: nobody to tell
        return
    try:
        await websocket.accept(subprotocol=subprotocol)
    except _PEER_GONE:
        return
    await _serve(node, websocket, principal)


async def _serve(node: Node, websocket: WebSocket, principal: Principal) -> None:
    settings = node.settings
    remote = _client_addr(websocket)
    sink: FrameSink | None = (websocket.scope.get("extensions") or {}).get(FRAME_SINK_EXTENSION)
    if sink is None:
        report_plain_asgi_once()
        sink = AsgiSink(websocket)
    limits = SendLimits(settings.WS_SEND_QUEUE_MAX, settings.WS_SEND_BUFFER_MAX_BYTES)
    conn = Connection(sink, principal, f"{node.instance_id}:{uuid.uuid4().hex[:16]}", limits)
    try:
        claimed = await node.claim_slot(conn)
    except Exception as exc:  # the engine is unreachable: /readyz reports it too
        log.error("connection slot unavailable", extra={"error": str(exc)[:200],
                                                        "remote": remote})
        try:
            await websocket.close(CloseCode.INTERNAL_ERROR, "Internal error")
        except _PEER_GONE:
            pass
        return
    if not claimed:
        log.warning("connection limit", extra={"user_id": principal.user_id,
                                               "reason": "WS_MAX_CONNECTIONS_PER_USER",
                                               "remote": remote})
        try:
            await websocket.close(CloseCode.TOO_MANY, "Too many connections")
        except _PEER_GONE:
            pass
        return
    started = time.monotonic()
    conn.open()
    conn.schedule_expiry()
    interval = settings.WS_HEARTBEAT_INTERVAL
    welcome = direct_frame("connected", {
        "message": "Connected successfully", "user_id": principal.user_id,
        "username": principal.username, "connection_id": conn.id,
        "heartbeat_interval": int(interval) if float(interval).is_integer() else interval,
        "rooms": [f"user:{principal.user_id}"]})
    log.info("connect", extra={"user_id": principal.user_id, "connection_id": conn.id,
                               "remote": remote})
    session = Session(rate_limit=settings.WS_RATE_LIMIT, rate_burst=settings.WS_RATE_BURST,
                      max_content_length=settings.WS_MAX_CONTENT_LENGTH, clock=time.monotonic)
    code: int | None = None
    try:
        # in the own room before the welcome says so: whatever is published once the
        # client holds `connected` reaches it
        node.rooms.join_own_room(conn, welcome)
        while conn.state is State.OPEN:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", 1005))
                break
            text = message.get("text")
            frame = text if text is not None else (message.get("bytes") or b"")
            if len(frame) > settings.WS_MESSAGE_MAX_SIZE:  # a server with a looser limit
                raise ConnectionClose(CloseCode.MESSAGE_TOO_BIG, "Message too big")
            for action in session.receive(frame):
                await node.commands.apply(conn, action)
    except ConnectionClose as exc:
        if exc.code == CloseCode.POLICY_VIOLATION:
            log.warning("abuse close", extra={"user_id": principal.user_id,
                                              "connection_id": conn.id, "code": int(exc.code),
                                              "reason": exc.reason, "remote": remote})
        # replies queued before the close (the 100th rate-limit error) go first
        await conn.close_after_flush(exc.code, exc.reason, DRAIN_BEFORE_CLOSE_SECONDS)
    except Exception:
        log.exception("connection failed", extra={"connection_id": conn.id})
        conn.close(CloseCode.INTERNAL_ERROR, "Internal error")
    finally:
        if code in _PROTOCOL_CLOSES:
            log.warning("protocol close", extra={"user_id": principal.user_id,
                                                 "connection_id": conn.id, "code": code,
                                                 "reason": _PROTOCOL_CLOSES[code],
                                                 "remote": remote})
        if conn.close_code == CloseCode.TRY_AGAIN_LATER:
            node.metrics.slow_consumer_closes.inc()
        conn.mark_closed(code)
        await node.disconnect(conn)
        log.info("disconnect", extra={"user_id": principal.user_id, "connection_id": conn.id,
                                      "code": conn.close_code,
                                      "duration_s": round(time.monotonic() - started, 3)})
