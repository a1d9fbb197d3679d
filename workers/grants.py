"""Room grants and links in Redis, written only by the worker actors.

A revocation also appends a control entry to the room's shard stream, so every
gateway (each reads every shard) re-checks that user's rooms within its next read.
"""

from __future__ import annotations

import redis

from shared import keys
from shared.codec import CONTROL_REVOKE, encode_control
from shared.rooms import Room, RoomKind, shard_of
from shared.settings import Settings
from shared.stream_writer import StreamWriter


def grant(client: redis.Redis, user_id: int, room: Room) -> None:
    client.sadd(keys.grants(user_id), str(room))


def revoke(client: redis.Redis, writer: StreamWriter, settings: Settings, user_id: int,
           room: Room) -> None:
    client.srem(keys.grants(user_id), str(room))
    shard = shard_of(str(room), settings.STREAM_SHARDS)
    writer.append_control(shard, encode_control(CONTROL_REVOKE, {"user_id": user_id,
                                                                 "room": str(room)}),
                          marker=CONTROL_REVOKE)


def link(client: redis.Redis, room: Room, project_room: Room) -> None:
    if room.kind not in (RoomKind.CHANNEL, RoomKind.TASK):
        raise ValueError("only channel and task rooms can be linked")
    if project_room.kind is not RoomKind.PROJECT:
        raise ValueError("rooms are linked to a project room")
    client.set(keys.room_link(str(room)), str(project_room))
