"""Applies the actions a Session decided for one connection: the only place where
a client command reaches the engine (rooms, access, the job queue).

It gets the narrow pieces it uses, not the node: the room service, the access
check, the job queue, the token verifier and the few limits and counters."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from gateway.auth import TokenVerifier
from gateway.close_codes import ErrorCode
from gateway.connection import Connection
from gateway.errors import AuthError, CommandError, ConnectionClose
from gateway.rooms import Rooms
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
from shared.codec import direct_frame, encode_event, error_frame
from shared.engines.roles import Access, EventJob, JobQueue, PendingEvent, QueueFull
from shared.rooms import RoomKind

log = logging.getLogger("roomcast.commands")
# A send_message waits at most this long for room in a full job queue, then the
# client gets an error and may resend (with the same key: it publishes once).
SEND_ENQUEUE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class CommandLimits:
    max_rooms: int  # WS_MAX_ROOMS_PER_CONNECTION
    event_max_bytes: int  # EVENT_MAX_BYTES


class Commands:
    def __init__(self, rooms: Rooms, access: Access, jobs: JobQueue, verifier: TokenVerifier,
                 limits: CommandLimits, auth_failures: Counter) -> None:
        self._rooms = rooms
        self._access = access
        self._jobs = jobs
        self._verifier = verifier
        self._limits = limits
        self._auth_failures = auth_failures

    async def apply(self, conn: Connection, action: Action) -> None:
        ref = getattr(action, "ref", None)
        room = getattr(action, "room", None)
        try:
            await self._apply(conn, action)
        except CommandError as exc:
            conn.send(error_frame(exc.code, exc.message, room=exc.room, ref=ref))
        except ConnectionClose:
            raise
        except Exception:
            log.exception("command failed", extra={"connection_id": conn.id})
            conn.send(error_frame(ErrorCode.INTERNAL_ERROR, "Internal error",
                                  room=str(room) if room else None, ref=ref))

    async def _apply(self, conn: Connection, action: Action) -> None:
        match action:
            case Reply(frame):
                conn.send(frame)
            case Close(code, reason):
                raise ConnectionClose(code, reason)
            case JoinRoom():
                await self._join(conn, action)
            case LeaveRoom(room, ref):
                await self._rooms.leave(conn, str(room))
                conn.send(direct_frame("room_left", {}, room=str(room), ref=ref))
            case SendMessage():
                await self._send_message(conn, action)
            case PresenceQuery(room, ref):
                name = str(room)
                if name not in conn.rooms:
                    raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
                users = [{"user_id": m.user_id, "username": m.username}
                         for m in await self._rooms.members(name)]
                conn.send(direct_frame("presence", {"users": users}, room=name, ref=ref))
            case RefreshToken(token, ref):
                self._refresh(conn, token, ref)

    async def _join(self, conn: Connection, action: JoinRoom) -> None:
        name = str(action.room)
        user_id = conn.principal.user_id
        if name not in conn.rooms:
            own = action.room.kind is RoomKind.USER
            joined = sum(1 for r in conn.rooms if not r.startswith("user:"))
            if not own and joined >= self._limits.max_rooms:
                raise CommandError(ErrorCode.TOO_MANY, "Too many rooms", room=name)
            if not await self._access.allowed(user_id, name):
                log.warning("join denied", extra={"user_id": user_id, "room": name,
                                                  "connection_id": conn.id})
                raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
        await self._rooms.join(conn, action.room, action.since, action.ref)

    async def _send_message(self, conn: Connection, action: SendMessage) -> None:
        name = str(action.room)
        if name not in conn.rooms:
            raise CommandError(ErrorCode.FORBIDDEN, "Forbidden", room=name)
        p = conn.principal
        key = action.key or uuid.uuid4().hex
        # Scoped to the user: one user's key can never suppress another user's message.
        event_key = f"u{p.user_id}.{key}"
        encoded = encode_event("message", name, {"message_id": event_key,
                                                 "content": action.content,
                                                 "user_id": p.user_id}, p.username)
        if len(encoded) > self._limits.event_max_bytes:
            # the worker would dead-letter it after the ack: refuse it now instead
            raise CommandError(ErrorCode.BAD_REQUEST, "Message too large for EVENT_MAX_BYTES",
                               room=name)
        try:
            # one connection is one producer: its messages keep their order
            await self._jobs.enqueue([EventJob((PendingEvent(event_key, name, encoded),))],
                                     timeout=SEND_ENQUEUE_TIMEOUT)
        except QueueFull:
            raise CommandError(ErrorCode.TOO_MANY, "Server busy, try again", room=name) from None
        conn.send(direct_frame("ack", {"key": key, "message_id": event_key}, room=name,
                               ref=action.ref))

    def _refresh(self, conn: Connection, token: str, ref: str | int | None) -> None:
        try:
            principal = self._verifier.verify(token)
        except AuthError as exc:
            self._auth_failures.labels(reason="refresh").inc()
            log.warning("refresh refused", extra={"reason": exc.reason,
                                                  "connection_id": conn.id})
            raise CommandError(ErrorCode.UNAUTHORIZED, "Authentication failed") from None
        if principal.user_id != conn.principal.user_id:
            raise CommandError(ErrorCode.UNAUTHORIZED, "Token is for another user")
        conn.principal = principal
        conn.schedule_expiry()
        expires = datetime.fromtimestamp(principal.expires_at, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        conn.send(direct_frame("refreshed", {"expires_at": expires}, ref=ref))
