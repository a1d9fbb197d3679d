"""Stream id parsing and ordering, and the duplicate rule built on it."""

from __future__ import annotations

import pytest

from roomcast.client.rooms import RoomTracker
from roomcast.client.stream_ids import (
    InvalidStreamId,
    format_stream_id,
    is_newer,
    parse_stream_id,
    try_parse_stream_id,
)


def test_parse_splits_milliseconds_and_sequence() -> None:
    assert parse_stream_id("1700000000000-5") == (1700000000000, 5)
    assert parse_stream_id("0-0") == (0, 0)


def test_a_bare_millisecond_part_means_sequence_zero() -> None:
    assert parse_stream_id("12") == (12, 0)


@pytest.mark.parametrize(
    "text", ["", "-", "a-1", "1-b", "1--2", "-1-2", " 1-2", "1-2 ", "+1-2", "1-٣"]
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidStreamId):
        parse_stream_id(text)
    assert try_parse_stream_id(text) is None


def test_try_parse_refuses_non_strings() -> None:
    assert try_parse_stream_id(None) is None
    assert try_parse_stream_id(12) is None


def test_order_is_numeric_not_lexicographic() -> None:
    assert "9-0" > "10-0"  # what a string comparison would get wrong
    assert is_newer("10-0", "9-0")
    assert is_newer("5-10", "5-9")
    assert not is_newer("5-9", "5-10")


def test_an_id_is_not_newer_than_itself() -> None:
    assert not is_newer("7-3", "7-3")


def test_anything_is_newer_than_nothing() -> None:
    assert is_newer("0-0", None)


def test_format_round_trips() -> None:
    assert format_stream_id(parse_stream_id("1700000000000-42")) == "1700000000000-42"


def test_tracker_drops_ids_at_or_below_the_last_seen() -> None:
    rooms = RoomTracker()
    rooms.want("project:1")
    assert rooms.accept("project:1", "9-0")
    assert rooms.accept("project:1", "10-0")
    assert not rooms.accept("project:1", "10-0")
    assert not rooms.accept("project:1", "9-5")
    assert rooms.accept("project:1", "10-1")
    assert rooms.resume_point("project:1") == "10-1"


def test_tracker_keeps_rooms_apart() -> None:
    rooms = RoomTracker()
    rooms.want("project:1")
    rooms.want("project:2")
    assert rooms.accept("project:1", "10-0")
    assert rooms.accept("project:2", "3-0")


def test_resume_point_falls_back_to_the_first_join_last_id() -> None:
    rooms = RoomTracker()
    rooms.want("task:4")
    assert rooms.resume_point("task:4") is None
    rooms.joined("task:4", "55-0", None)
    assert rooms.resume_point("task:4") == "55-0"
    rooms.accept("task:4", "56-0")
    assert rooms.resume_point("task:4") == "56-0"


def test_not_recovered_moves_the_baseline_to_the_room_head() -> None:
    rooms = RoomTracker()
    rooms.want("task:4")
    rooms.accept("task:4", "5-0")
    rooms.joined("task:4", "90-0", False)
    assert rooms.resume_point("task:4") == "90-0"
    assert not rooms.accept("task:4", "90-0")
    assert rooms.accept("task:4", "91-0")


def test_explicit_since_replays_what_was_seen() -> None:
    rooms = RoomTracker()
    rooms.want("task:4")
    rooms.accept("task:4", "9-0")
    rooms.want("task:4", since="3-0")
    assert rooms.resume_point("task:4") == "3-0"
    assert rooms.accept("task:4", "4-0")
