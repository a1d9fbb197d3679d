"""Backoff with full jitter: pure functions, seeded randomness."""

from __future__ import annotations

import random
from typing import Any

import pytest

from roomcast.client.backoff import Backoff, ceiling, full_jitter


def test_ceiling_doubles_from_base_until_cap() -> None:
    assert [ceiling(n, base=0.2, cap=10.0) for n in range(8)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    )


def test_ceiling_of_a_huge_attempt_is_the_cap_not_an_overflow() -> None:
    assert ceiling(10_000, base=0.2, cap=10.0) == 10.0


def test_ceiling_rejects_negative_attempts() -> None:
    with pytest.raises(ValueError):
        ceiling(-1)


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 20])
def test_full_jitter_stays_within_zero_and_ceiling(attempt: int) -> None:
    rng = random.Random(1234)
    delays = [full_jitter(attempt, rng, base=0.2, cap=10.0) for _ in range(2000)]
    assert min(delays) >= 0.0
    assert max(delays) <= ceiling(attempt, 0.2, 10.0)


def test_full_jitter_spreads_over_the_whole_window() -> None:
    # Full jitter, not "ceiling plus a little": draws land in both halves.
    rng = random.Random(7)
    delays = [full_jitter(5, rng, base=0.2, cap=10.0) for _ in range(2000)]
    top = ceiling(5, 0.2, 10.0)
    assert any(d < top * 0.25 for d in delays)
    assert any(d > top * 0.75 for d in delays)


def test_same_seed_gives_same_delays() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next_delay() for _ in range(10)] == [second.next_delay() for _ in range(10)]


def test_backoff_counts_attempts_and_reset_starts_over() -> None:
    backoff = Backoff(base=0.2, cap=10.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(10)]
    for attempt, delay in enumerate(delays):
        assert 0.0 <= delay <= ceiling(attempt, 0.2, 10.0)
    assert backoff.attempt == 10
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 0.2


def test_restart_delay_is_small_and_resets_the_count() -> None:
    backoff = Backoff(base=0.2, cap=10.0, restart_jitter=0.5, rng=random.Random(9))
    for _ in range(8):
        backoff.next_delay()
    delays = [backoff.restart_delay() for _ in range(500)]
    assert all(0.0 <= d <= 0.5 for d in delays)
    assert backoff.attempt == 0


def test_defaults_match_the_contract() -> None:
    backoff = Backoff()
    assert (backoff.base, backoff.cap) == (0.2, 10.0)


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"cap": -1}, {"restart_jitter": -0.1}])
def test_invalid_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
