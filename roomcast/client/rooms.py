"""Which rooms the client wants to be in, and where to resume each one.

Sans-I/O: plain methods, no awaits, so resume and duplicate rules are tested
with function calls. The client consults it on every room event and when it
rejoins after a reconnect.
"""

from __future__ import annotations

from dataclasses import dataclass

from .stream_ids import StreamId, format_stream_id, try_parse_stream_id


@dataclass(slots=True)
class RoomState:
    # Highest stream id delivered to the app; the duplicate threshold.
    last_seen: StreamId | None = None
    # room_joined.data.last_id of the first join: the resume point while no
    # event has been seen (SPEC section 4), so an idle room resumes gap-free.
    join_last_id: str | None = None
    # An explicit `since` the app asked for, used by the next join only.
    since_override: str | None = None
    # Whether the server confirmed the room on the current connection.
    joined: bool = False


class RoomTracker:
    def __init__(self) -> None:
        self._rooms: dict[str, RoomState] = {}

    def __contains__(self, room: object) -> bool:
        return room in self._rooms

    @property
    def rooms(self) -> list[str]:
        return list(self._rooms)

    def want(self, room: str, since: str | None = None) -> None:
        """Remember the room for rejoins; an explicit `since` asks for a replay."""
        state = self._rooms.setdefault(room, RoomState())
        if since is not None:
            state.since_override = since
            # The app asked to see events after `since` again: let them through.
            state.last_seen = try_parse_stream_id(since)

    def forget(self, room: str) -> None:
        """The room was left (by the app or the server): never rejoin it."""
        self._rooms.pop(room, None)

    def join_failed(self, room: str) -> None:
        """A join was refused: stop tracking the room unless we are in it already."""
        state = self._rooms.get(room)
        if state is not None and not state.joined:
            del self._rooms[room]

    def connection_lost(self) -> None:
        for state in self._rooms.values():
            state.joined = False

    def auto_joined(self, room: str) -> bool:
        """The server put us in `room` at connect; True if it is new to us."""
        is_new = room not in self._rooms
        self._rooms.setdefault(room, RoomState()).joined = True
        return is_new

    def resume_point(self, room: str) -> str | None:
        """The `since` for the next join of `room`, or None for a plain join."""
        state = self._rooms.get(room)
        if state is None:
            return None
        if state.since_override is not None:
            return state.since_override
        if state.last_seen is not None:
            return format_stream_id(state.last_seen)
        return state.join_last_id

    def joined(self, room: str, last_id: object, recovered: object) -> None:
        """Record a room_joined reply."""
        state = self._rooms.setdefault(room, RoomState())
        state.joined = True
        state.since_override = None
        if not isinstance(last_id, str) or try_parse_stream_id(last_id) is None:
            return
        if state.join_last_id is None:
            state.join_last_id = last_id
        if recovered is False:
            # No replay is coming and the app refetches state: the room's
            # current head is the new baseline. Nothing at or before it will
            # be sent live on this connection, so nothing is lost by raising it.
            head = try_parse_stream_id(last_id)
            if head is not None and (state.last_seen is None or head > state.last_seen):
                state.last_seen = head
            state.join_last_id = last_id

    def accept(self, room: str, event_id: str) -> bool:
        """True if the event is new for the room (and remember it); False if a duplicate.

        Events of rooms we do not track and ids we cannot parse are passed on:
        dropping them would lose data to protect against a mere duplicate.
        """
        state = self._rooms.get(room)
        parsed = try_parse_stream_id(event_id)
        if state is None or parsed is None:
            return True
        if state.last_seen is not None and parsed <= state.last_seen:
            return False
        state.last_seen = parsed
        return True
