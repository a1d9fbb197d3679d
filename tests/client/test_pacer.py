"""The client's send pacing (token bucket) with a fake clock."""

from __future__ import annotations

import pytest

from roomcast.client.pacer import Pacer
from tests.support.clock import FakeClock


def test_a_burst_goes_out_at_once_then_sends_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10.0, burst=3, clock=clock)
    assert [pacer.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Reservations queue up: each waits one more 1/rate step.
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])


def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10.0, burst=2, clock=clock)
    pacer.reserve()
    pacer.reserve()
    clock.now += 60.0
    assert [pacer.reserve() for _ in range(2)] == [0.0, 0.0]
    assert pacer.reserve() == pytest.approx(0.1)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_invalid_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        Pacer(rate, burst)
