"""The resume decision, the same for every engine: is every event after `since` held?"""

from __future__ import annotations

from shared.codec import parse_stream_id


def recoverable(since: str, first: str | None, last: str | None, oldest: str | None) -> bool:
    """`first`: the room's first id ever; `last`: its latest; `oldest`: the oldest id its
    history still holds (None when the history is empty or expired)."""
    wanted = parse_stream_id(since)
    if wanted is None:
        return False  # malformed
    if last is None:
        return wanted == (0, 0)  # a room with no events: nothing can have been missed
    latest = parse_stream_id(last) or (0, 0)
    if wanted > latest:
        return False  # from the future: not an id this room gave out
    if wanted == latest:
        return True  # the client saw the latest event; nothing to replay
    if oldest is None:
        return False  # history expired
    if wanted == (0, 0):
        return oldest == first  # whole history asked: complete only if nothing was trimmed
    return (parse_stream_id(oldest) or (0, 0)) <= wanted
