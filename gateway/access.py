"""Who may join which room.

`user:<id>` rooms belong to their owner in every mode. In `acl` mode a
project, channel or task room needs a grant, on the room itself or, for a
channel or task linked with `link_room`, on its project. A forbidden room and
a room that does not exist get the same answer.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis

from shared import keys
from shared.rooms import Room, RoomKind
from shared.settings import AccessMode, Settings


class Access(Protocol):
    async def allowed(self, user_id: int, room: Room) -> bool: ...


def _own_user_room(user_id: int, room: Room) -> bool | None:
    """The answer for user rooms, None for the rest."""
    if room.kind is RoomKind.USER:
        return room.id == user_id
    return None


class OpenAccess:
    async def allowed(self, user_id: int, room: Room) -> bool:
        own = _own_user_room(user_id, room)
        return True if own is None else own


class AclAccess:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def allowed(self, user_id: int, room: Room) -> bool:
        own = _own_user_room(user_id, room)
        if own is not None:
            return own
        grants_key = keys.grants(user_id)
        if await self._redis.sismember(grants_key, str(room)):
            return True
        if room.kind is RoomKind.PROJECT:
            return False
        project = await self._redis.get(keys.room_link(str(room)))
        return bool(project) and bool(await self._redis.sismember(grants_key, project))


def build_access(settings: Settings, client: aioredis.Redis) -> Access:
    if settings.ACCESS_MODE is AccessMode.OPEN:
        return OpenAccess()
    return AclAccess(client)
