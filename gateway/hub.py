"""Rooms and users on this gateway instance: who gets which frame."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.connection import Connection


class Hub:
    def __init__(self) -> None:
        self._rooms: dict[str, set[Connection]] = defaultdict(set)
        self._users: dict[int, set[Connection]] = defaultdict(set)
        self.connections: set[Connection] = set()
        self._batched: list[Connection] = []  # members holding frames of this read

    def add_connection(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._users[conn.principal.user_id].add(conn)

    def remove_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for room in list(conn.rooms):
            self.remove(conn, room)
        users = self._users.get(conn.principal.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._users[conn.principal.user_id]

    def add(self, conn: Connection, room: str) -> None:
        self._rooms[room].add(conn)
        conn.rooms.add(room)

    def remove(self, conn: Connection, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[room]
        conn.rooms.discard(room)

    def members(self, room: str) -> Iterable[Connection]:
        return self._rooms.get(room, ())

    def user_connections(self, user_id: int) -> list[Connection]:
        return list(self._users.get(user_id, ()))

    def rooms(self) -> list[str]:
        return list(self._rooms)

    @property
    def room_count(self) -> int:
        """Without copying the rooms: it is read on every join and leave."""
        return len(self._rooms)

    def deliver(self, room: str, id_key: tuple[int, int], frame: bytes) -> int:
        """Hand the same encoded frame to every member; never waits. Frames are
        gathered per connection until `flush`, so a read of many entries costs each
        member one socket write, not one per entry."""
        members = self._rooms.get(room)
        if not members:
            return 0
        batched = self._batched
        for conn in members:
            if conn.push_event(room, id_key, frame):
                batched.append(conn)
        return len(members)

    def flush(self) -> None:
        """Write what `deliver` gathered; called after each read (and before any
        other frame could overtake the gathered ones)."""
        batched, self._batched = self._batched, []
        for conn in batched:
            conn.flush_batch()
