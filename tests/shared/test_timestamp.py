"""Every frame's `timestamp`: ISO 8601 in UTC with microseconds and a `Z`, the
moment it was made, also across second boundaries and from several threads at
once (the formatted second is cached)."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

from shared.codec import utc_timestamp

SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
CLOCK_STEP = timedelta(microseconds=1)  # the clock's rounding, either side


def _bracketed_until_next_second() -> list[str]:
    """Calls bracketed by the clock, for up to 2.5 s, until a second boundary is
    crossed; returns what was wrong."""
    wrong: list[str] = []
    start = datetime.now(UTC).replace(microsecond=0)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        before = datetime.now(UTC)
        text = utc_timestamp()
        after = datetime.now(UTC)
        made = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if not SHAPE.fullmatch(text) or not before - CLOCK_STEP <= made <= after + CLOCK_STEP:
            wrong.append(f"{before.isoformat()} <= {text} <= {after.isoformat()}")
        if made.replace(microsecond=0) > start + timedelta(seconds=1):
            return wrong  # a whole second crossed, with the cache renewed
    return [*wrong, "no second boundary within 2.5 s"]


def test_a_timestamp_is_the_moment_it_was_made() -> None:
    assert _bracketed_until_next_second() == []


def test_threads_crossing_a_second_read_consistent_timestamps() -> None:
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(_bracketed_until_next_second()))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[]] * 4


def test_a_given_moment_is_formatted_in_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    assert utc_timestamp(moment) == "2026-01-02T03:04:05.000060Z"
    two_hours_east = moment.astimezone(timezone(timedelta(hours=2)))
    assert utc_timestamp(two_hours_east) == "2026-01-02T03:04:05.000060Z"
