"""The read linger: a pause before the next read only while reads come back to back
with entries, never for a quiet stream."""

from __future__ import annotations

from shared.engines.linger import Linger
from tests.support.clock import FakeClock


def test_no_pause_for_the_first_read_or_a_quiet_stream() -> None:
    clock = FakeClock()
    linger = Linger(0.001, 0.002, clock)
    assert linger.delay == 0
    linger.read_returned(True)  # the first read: nothing to compare with
    assert linger.delay == 0
    clock.now += 0.005  # 200 reads/s: each event goes out at once
    linger.read_returned(True)
    assert linger.delay == 0


def test_back_to_back_reads_with_entries_pause_until_the_stream_calms() -> None:
    clock = FakeClock()
    linger = Linger(0.001, 0.002, clock)
    linger.read_returned(True)
    clock.now += 0.0005
    linger.read_returned(True)
    assert linger.delay == 0.001
    clock.now += 0.0005
    linger.read_returned(False)  # a block that timed out, or a read of nothing
    assert linger.delay == 0
    clock.now += 0.0005
    linger.read_returned(True)
    assert linger.delay == 0.001
    clock.now += 0.003
    linger.read_returned(True)
    assert linger.delay == 0
