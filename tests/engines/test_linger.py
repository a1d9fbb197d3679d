"""The read linger: a pause before the next read only while reads with entries keep
coming back fast on average; never for a quiet stream, nor for two events that
merely arrive close together."""

from __future__ import annotations

from shared.engines.linger import Linger
from tests.support.clock import FakeClock


def reads(linger: Linger, clock: FakeClock, gaps: list[float]) -> list[float]:
    """The delay asked for after each read, reads returning entries `gaps` apart."""
    delays = []
    for gap in gaps:
        clock.now += gap
        linger.read_returned(True)
        delays.append(linger.delay)
    return delays


def test_a_quiet_stream_and_a_close_pair_never_wait() -> None:
    clock = FakeClock()
    linger = Linger(0.001, 0.002, clock)
    assert linger.delay == 0
    assert reads(linger, clock, [0.005] * 5) == [0] * 5  # 200 reads/s
    assert reads(linger, clock, [0.0002, 0.0002]) == [0, 0]  # two events close together


def test_a_sustained_fast_stream_lingers_until_it_slows_or_stops() -> None:
    clock = FakeClock()
    linger = Linger(0.001, 0.002, clock)
    delays = reads(linger, clock, [0.0002] * 10)
    assert delays[:5] == [0] * 5 and delays[-3:] == [0.001] * 3
    assert reads(linger, clock, [0.005] * 3)[-1] == 0  # back to 200 reads/s
    reads(linger, clock, [0.0002] * 10)
    linger.read_returned(False)  # a block that timed out: the stream is quiet
    assert linger.delay == 0
    assert reads(linger, clock, [0.0002])[0] == 0
