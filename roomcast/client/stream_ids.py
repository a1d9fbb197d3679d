"""Stream ids ("<ms>-<seq>") parsed into comparable tuples.

Ids are opaque to applications, but the client needs their order to drop
duplicates: comparing the strings would put "9-0" after "10-0".
"""

from __future__ import annotations

from typing import TypeAlias

StreamId: TypeAlias = tuple[int, int]

ZERO: StreamId = (0, 0)


class InvalidStreamId(ValueError):
    """The text is not of the form "<ms>-<seq>" with non-negative integers."""


def parse_stream_id(text: str) -> StreamId:
    """Parse "ms-seq"; a bare "ms" means seq 0, as Redis reads it."""
    ms_text, sep, seq_text = text.partition("-")
    if not sep:
        seq_text = "0"
    # isdigit() rejects signs, spaces and empty parts that int() would accept.
    if not (ms_text.isascii() and ms_text.isdigit() and seq_text.isascii() and seq_text.isdigit()):
        raise InvalidStreamId(f"invalid stream id: {text[:64]!r}")
    return int(ms_text), int(seq_text)


def try_parse_stream_id(text: object) -> StreamId | None:
    """Parse, or None for anything that is not a valid id string."""
    if not isinstance(text, str):
        return None
    try:
        return parse_stream_id(text)
    except InvalidStreamId:
        return None


def format_stream_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def is_newer(candidate: str, last_seen: str | None) -> bool:
    """True when `candidate` comes strictly after `last_seen` (or nothing was seen)."""
    if last_seen is None:
        return True
    return parse_stream_id(candidate) > parse_stream_id(last_seen)
