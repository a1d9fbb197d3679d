"""Who may join which room: the rules every engine applies.

`user:<id>` rooms belong to their owner in every mode. In `acl` mode a
project, channel or task room needs a grant, on the room itself or, for a
channel or task linked with `link_room`, on its project. A forbidden room and
a room that does not exist get the same answer. In `open` mode only the room
format is checked (development).
"""

from __future__ import annotations

from shared.rooms import Room, RoomKind


def own_room_answer(user_id: int, room: Room) -> bool | None:
    """The answer for user rooms (their owner only), None for the rest."""
    if room.kind is RoomKind.USER:
        return room.id == user_id
    return None


def check_link(room: Room, project_room: Room) -> None:
    """Raises ValueError unless `room` can be linked to `project_room`."""
    if room.kind not in (RoomKind.CHANNEL, RoomKind.TASK):
        raise ValueError("only channel and task rooms can be linked")
    if project_room.kind is not RoomKind.PROJECT:
        raise ValueError("rooms are linked to a project room")


class OpenAccess:
    """Access for ACCESS_MODE=open: the own user room, and any well-formed room."""

    async def allowed(self, user_id: int, room: str) -> bool:
        own = own_room_answer(user_id, Room.parse(room))
        return True if own is None else own
