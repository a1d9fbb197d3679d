"""Presence, connection slots and access in one process.

With one gateway per process nothing outlives its gateway, so nothing needs an
expiry: `refresh`, `sweep`, `announced` and `free_previous_run` have nothing to do."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

from shared.codec import CONTROL_REVOKE, encode_control
from shared.engines.access import check_link, own_room_answer
from shared.engines.memory.store import MemoryStore
from shared.engines.roles import Departure, RoomMember
from shared.rooms import Room, RoomKind, shard_of


class MemoryPresence:
    def __init__(self) -> None:
        self._slots: dict[int, set[str]] = defaultdict(set)
        self._rooms: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._names: dict[tuple[str, int], str] = {}

    async def claim_slot(self, user_id: int, connection_id: str, limit: int) -> bool:
        held = self._slots[user_id]
        if connection_id not in held and len(held) >= limit:
            return False
        held.add(connection_id)
        return True

    async def release_slot(self, user_id: int, connection_id: str) -> None:
        held = self._slots.get(user_id)
        if held is not None:
            held.discard(connection_id)
            if not held:
                del self._slots[user_id]

    async def free_previous_run(self) -> None:
        """Nothing survives a restart of the process."""

    async def enter(self, room: str, user_id: int, username: str, connection_id: str) -> bool:
        conns = self._rooms[room][user_id]
        conns.add(connection_id)
        self._names[(room, user_id)] = username
        return len(conns) == 1

    async def leave(self, room: str, user_id: int, connection_id: str) -> bool:
        users = self._rooms.get(room)
        if users is None:
            return True
        conns = users.get(user_id, set())
        conns.discard(connection_id)
        if conns:
            return False
        users.pop(user_id, None)
        self._names.pop((room, user_id), None)
        if not users:
            del self._rooms[room]
        return True

    async def size(self, room: str) -> int:
        return sum(1 for conns in self._rooms.get(room, {}).values() if conns)

    async def members(self, room: str) -> list[RoomMember]:
        users = self._rooms.get(room, {})
        return sorted((RoomMember(uid, self._names.get((room, uid), f"user-{uid}"))
                       for uid, conns in users.items() if conns), key=lambda m: m.user_id)

    async def refresh(self, slots: Iterable[tuple[int, str]],
                      memberships: Iterable[tuple[str, int, str]]) -> None:
        """Nothing expires in one process."""

    async def sweep(self) -> list[Departure]:
        return []  # no other gateway can die without saying goodbye

    async def announced(self, departure: Departure) -> None:
        """Nothing was kept."""


class MemoryAccessData:
    """Grants and links, shared by the gateway's check and the workers' store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grants: dict[int, set[str]] = defaultdict(set)
        self.links: dict[str, str] = {}

    def allowed(self, user_id: int, room: str) -> bool:
        parsed = Room.parse(room)
        own = own_room_answer(user_id, parsed)
        if own is not None:
            return own
        with self.lock:
            granted = self.grants.get(user_id, set())
            if room in granted:
                return True
            project = self.links.get(room) if parsed.kind is not RoomKind.PROJECT else None
            return project is not None and project in granted


class MemoryAccess:
    def __init__(self, data: MemoryAccessData) -> None:
        self._data = data

    async def allowed(self, user_id: int, room: str) -> bool:
        return self._data.allowed(user_id, room)


class MemoryAccessStore:
    def __init__(self, data: MemoryAccessData, store: MemoryStore) -> None:
        self._data = data
        self._store = store

    def grant(self, user_id: int, room: str) -> None:
        with self._data.lock:
            self._data.grants[user_id].add(room)

    def revoke(self, user_id: int, room: str) -> None:
        with self._data.lock:
            self._data.grants[user_id].discard(room)
        self._store.append_control(shard_of(room, self._store.settings.STREAM_SHARDS),
                                   encode_control(CONTROL_REVOKE, {"user_id": user_id,
                                                                   "room": room}),
                                   CONTROL_REVOKE)

    def link(self, room: str, project_room: str) -> None:
        check_link(Room.parse(room), Room.parse(project_room))
        with self._data.lock:
            self._data.links[room] = project_room

    def granted(self, user_id: int, room: str) -> bool:
        return self._data.allowed(user_id, room)
