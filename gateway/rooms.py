"""Room membership on this gateway: joins (with resume), leaves, and the presence
events (`user_joined` on a user's first connection into a room over all gateways,
`user_left` on the last one out), each published once with a key derived from the
connection, so a retried call dedupes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.auth import Principal
from gateway.connection import Connection, State
from gateway.hub import Hub
from gateway.metrics import Metrics
from shared.codec import direct_frame, encode_event, parse_stream_id
from shared.engines.roles import (
    Access,
    Departure,
    EventLog,
    History,
    PendingEvent,
    Presence,
    RoomMember,
)
from shared.rooms import Room, RoomKind

log = logging.getLogger("roomcast.rooms")


class Rooms:
    def __init__(self, hub: Hub, history: History, presence: Presence, access: Access,
                 log_: EventLog, metrics: Metrics, presence_events_max_users: int = 0) -> None:
        self._hub = hub
        self._presence_events_max = presence_events_max_users
        self._history = history
        self._presence = presence
        self._access = access
        self._log = log_
        self._metrics = metrics
        self._rechecks: set[asyncio.Task[None]] = set()

    def join_own_room(self, conn: Connection, welcome: str) -> None:
        """The connection's own user room, joined at connect, before `welcome` goes out:
        every event appended after the welcome reaches the client. No join point is
        read (the welcome carries none): a resume of the room says `since` itself."""
        self._hub.add(conn, str(Room.user(conn.principal.user_id)))
        conn.send(welcome)

    async def join(self, conn: Connection, room: Room, since: str | None,
                   ref: str | int | None = None) -> dict[str, Any]:
        """Join (or re-join) a room; returns the `room_joined` data. The caller has
        checked the format, the access and the room limit."""
        name = str(room)
        rejoin = name in conn.rooms
        if rejoin and since is not None:
            # A resume of a room we already serve (the own user room is joined at
            # connect): the client's `since` replaces the connect-time baseline.
            conn.forget(name)
        conn.hold(name)
        self._hub.add(conn, name)
        try:
            point = await self._history.join_point(name, since)
        except BaseException:
            conn.forget(name)
            if not rejoin:
                self._hub.remove(conn, name)
            raise
        data: dict[str, Any] = {"last_id": point.last_id}
        if point.recovered is not None:
            data["recovered"] = point.recovered
            data["replayed"] = point.replayed
        conn.send(direct_frame("room_joined", data, room=name, ref=ref))
        # the replay ends at last_id; live events after it follow the replay
        conn.release(name, parse_stream_id(point.last_id) or (0, 0), point.replay)
        if not rejoin and room.kind is not RoomKind.USER:
            p = conn.principal
            if (await self._presence.enter(name, p.user_id, p.username, conn.id)
                    and await self._announced(name, counting_self=False)):
                await self._publish_presence("user_joined", name, p, conn.id)
        self._metrics.rooms.set(self._hub.room_count)
        return data

    async def leave(self, conn: Connection, room: str) -> None:
        was_member = room in conn.rooms
        self._hub.remove(conn, room)
        conn.forget(room)
        if was_member:
            await self._leave_presence(conn, room)
        self._metrics.rooms.set(self._hub.room_count)

    async def leave_all(self, conn: Connection) -> None:
        """The connection is gone: out of every room it was in."""
        rooms = list(conn.rooms)
        self._hub.remove_connection(conn)
        for room in rooms:
            await self._leave_presence(conn, room)
        self._metrics.rooms.set(self._hub.room_count)

    async def members(self, room: str) -> list[RoomMember]:
        return await self._presence.members(room)

    async def _leave_presence(self, conn: Connection, room: str) -> None:
        if Room.parse(room).kind is RoomKind.USER:
            return
        p = conn.principal
        try:
            if (await self._presence.leave(room, p.user_id, conn.id)
                    and await self._announced(room, counting_self=True)):
                await self._publish_presence("user_left", room, p, conn.id)
        except Exception as exc:  # best effort: the entry expires with the heartbeat anyway
            log.warning("presence leave failed", extra={"room": room, "error": str(exc)[:200]})

    async def _announced(self, room: str, *, counting_self: bool) -> bool:
        """Whether a join or leave of `room` is announced: not when the room, the user
        counted, has more than PRESENCE_EVENTS_MAX_USERS present. `counting_self`: the
        user already left the presence set, so add them back."""
        limit = self._presence_events_max
        if not limit:
            return True
        return await self._presence.size(room) + int(counting_self) <= limit

    async def user_gone(self, departure: Departure) -> None:
        """A user the presence sweep found gone (their gateway died). A departure can
        come out of several sweeps (a lost reply, a sweeper that died): its token
        makes the key, so its user_left is appended once."""
        room, member = departure.room, departure.member
        if await self._announced(room, counting_self=True):
            await self.publish_user_event(
                "user_left", room, member,
                f"user_left:{room}:{member.user_id}:swept:{departure.token}")

    async def _publish_presence(self, kind: str, room: str, p: Principal,
                                connection_id: str) -> None:
        await self.publish_user_event(kind, room, RoomMember(p.user_id, p.username),
                                      f"{kind}:{room}:{p.user_id}:{connection_id}")

    async def publish_user_event(self, kind: str, room: str, member: RoomMember,
                                 key: str) -> None:
        encoded = encode_event(kind, room, {"user_id": member.user_id,
                                            "username": member.username}, member.username)
        await self._log.append([PendingEvent(key, room, encoded)])

    # -- revocations ----------------------------------------------------------------------
    def recheck_user(self, user_id: int) -> None:
        """A grant of this user was revoked somewhere: re-check their rooms here."""
        conns = self._hub.user_connections(user_id)
        if conns:
            task = asyncio.get_running_loop().create_task(self._recheck(conns))
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, conns: list[Connection]) -> None:
        for conn in conns:
            for name in sorted(conn.rooms):
                if Room.parse(name).kind is RoomKind.USER or conn.state is not State.OPEN:
                    continue
                if not await self._access.allowed(conn.principal.user_id, name):
                    await self.leave(conn, name)
                    conn.send(direct_frame("room_left", {"reason": "access_revoked"}, room=name))
                    log.info("access revoked", extra={"user_id": conn.principal.user_id,
                                                      "room": name, "connection_id": conn.id})

    async def stop(self) -> None:
        for task in list(self._rechecks):
            task.cancel()
        for task in list(self._rechecks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
