from __future__ import annotations

import pytest

from shared.rooms import InvalidRoom, Room, RoomKind, shard_of


@pytest.mark.parametrize("name", ["project:1", "channel:456", "task:789", "user:42",
                                  "project:" + "9" * 19])
def test_valid_rooms_round_trip(name: str) -> None:
    assert str(Room.parse(name)) == name


@pytest.mark.parametrize("name", ["project:007", "project:abc", "foo:1", "project:0",
                                  "project:", "project:1 ", " project:1", "Project:1",
                                  "project:" + "9" * 20, "project:-1", "project:1:2",
                                  "project:\uff11", 5, None, ["project:1"]])
def test_invalid_rooms(name: object) -> None:
    with pytest.raises(InvalidRoom):
        Room.parse(name)


def test_user_room() -> None:
    assert Room.user(42) == Room(RoomKind.USER, 42)


# Every process (gateways, workers, backends, other languages) must agree on a
# room's shard, so the values are pinned: CRC-32 of the name, modulo the count.
@pytest.mark.parametrize(("room", "shards", "expected"), [
    ("project:1", 8, 1), ("project:1", 16, 9), ("channel:456", 8, 4), ("channel:456", 4, 0),
    ("task:789", 8, 2), ("user:42", 8, 6), ("user:42", 4, 2), ("project:123", 16, 0),
])
def test_shards_are_pinned(room: str, shards: int, expected: int) -> None:
    assert shard_of(room, shards) == expected


def test_shards_spread_over_every_shard() -> None:
    assert {shard_of(f"project:{i}", 8) for i in range(1, 200)} == set(range(8))


@pytest.mark.parametrize(("text", "expected"), [
    ("0-0", (0, 0)), ("1795639044238-7", (1795639044238, 7)),
    (f"{2**64 - 1}-{2**64 - 1}", (2**64 - 1, 2**64 - 1)),
    (f"{2**64}-0", None), (f"1-{2**64}", None), ("abc", None), ("1-", None), ("-1", None),
    ("1-2-3", None), ("\uff11-1", None), ("", None),
])
def test_stream_ids(text: str, expected: tuple[int, int] | None) -> None:
    from shared.codec import parse_stream_id

    assert parse_stream_id(text) == expected
