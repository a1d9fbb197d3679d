"""Applies the actions a Session decided for one connection: the only place
where a client command touches the node (Redis, the worker queue)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from gateway.close_codes import ErrorCode
from gateway.connection import Connection
from gateway.errors import AuthError, CommandError, ConnectionClose
from gateway.node import Node
from gateway.session import (
    Action,
    Close,
    JoinRoom,
    LeaveRoom,
    PresenceQuery,
    RefreshToken,
    Reply,
    SendMessage,
)
from shared.codec import direct_frame, error_frame
from shared.rooms import RoomKind
from workers.api import new_key

log = logging.getLogger("roomcast.commands")


async def apply(node: Node, conn: Connection, action: Action) -> None:
    ref = getattr(action, "ref", None)
    room = getattr(action, "room", None)
    try:
        await _apply(node, conn, action)
    except CommandError as exc:
        conn.send(error_frame(exc.code, exc.message, room=exc.room, ref=ref))
    except ConnectionClose:
        raise
    except Exception:
        log.exception("command failed", extra={"connection_id": conn.id})
        conn.send(error_frame(ErrorCode.INTERNAL_ERROR, "Internal error",
                              room=str(room) if room else None, ref=ref))


async def _apply(node: Node, conn: Connection, action: Action) -> None:
    match action:
        case Reply(frame):
            conn.send(frame)
        case Close(code, reason):
            raise ConnectionClose(code, reason)
        case JoinRoom():
            await _join(node, conn, action)
        case LeaveRoom(room, ref):
            await node.leave(conn, str(room))
            conn.send(direct_frame("room_left", {}, room=str(room), ref=ref))
        case SendMessage():
            await _send_message(node, conn, action)
        case PresenceQuery(room, ref):
            name = str(room)
            if name not in conn.rooms:
                raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
            users = [{"user_id": uid, "username": username}
                     for uid, username in await node.cluster.members(name)]
            conn.send(direct_frame("presence", {"users": users}, room=name, ref=ref))
        case RefreshToken(token, ref):
            _refresh(node, conn, token, ref)


async def _join(node: Node, conn: Connection, action: JoinRoom) -> None:
    name = str(action.room)
    user_id = conn.principal.user_id
    if name not in conn.rooms:
        own = action.room.kind is RoomKind.USER
        joined = sum(1 for r in conn.rooms if not r.startswith("user:"))
        if not own and joined >= node.settings.WS_MAX_ROOMS_PER_CONNECTION:
            raise CommandError(ErrorCode.TOO_MANY, "Too many rooms", room=name)
        if not await node.access.allowed(user_id, action.room):
            log.warning("join denied", extra={"user_id": user_id, "room": name,
                                              "connection_id": conn.id})
            raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
    await node.join(conn, action.room, action.since, action.ref)


async def _send_message(node: Node, conn: Connection, action: SendMessage) -> None:
    name = str(action.room)
    if name not in conn.rooms:
        raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
    p = conn.principal
    key = action.key or new_key()
    # Scoped to the user: one user's key can never suppress another user's message.
    event_key = f"u{p.user_id}.{key}"
    event = {"type": "message", "room": name, "sender": p.username, "key": event_key,
             "data": {"message_id": event_key, "content": action.content,
                      "user_id": p.user_id}}
    # Dramatiq's enqueue is a blocking Redis call: keep it off the event loop.
    await asyncio.to_thread(node.backend.publish, event)
    conn.send(direct_frame("ack", {"key": key, "message_id": event_key}, room=name,
                           ref=action.ref))


def _refresh(node: Node, conn: Connection, token: str, ref: str | int | None) -> None:
    try:
        principal = node.verifier.verify(token)
    except AuthError as exc:
        node.metrics.auth_failures.labels(reason="refresh").inc()
        log.warning("refresh refused", extra={"reason": exc.reason, "connection_id": conn.id})
        raise CommandError(ErrorCode.UNAUTHORIZED, "Authentication failed") from None
    if principal.user_id != conn.principal.user_id:
        raise CommandError(ErrorCode.UNAUTHORIZED, "Token is for another user")
    conn.principal = principal
    conn.schedule_expiry()
    expires = datetime.fromtimestamp(principal.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conn.send(direct_frame("refreshed", {"expires_at": expires}, ref=ref))
