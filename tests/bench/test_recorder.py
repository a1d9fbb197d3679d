"""The bench's latency recorder: raw samples folded into histograms when read."""

from __future__ import annotations

import pytest

from roomcast.bench.clients import Recorder


def _record_known(recorder: Recorder, origin: float) -> None:
    # 100 events, enqueued at origin + i/100, appended 1 ms later (the id's millisecond
    # names the append; its middle is taken), received 10 ms + i/10 ms after the enqueue
    for i in range(100):
        enqueued = origin + i / 100
        append_ms = int((enqueued + 0.001) * 1000)
        received = enqueued + 0.010 + i / 10_000
        recorder.record(received, enqueued, f"{append_ms}-0")
    recorder.record(origin + 1.5, origin + 1.4, None)  # an event without an id


def _figures(recorder: Recorder) -> tuple[object, ...]:
    return (recorder.hist.summary(), recorder.to_append.summary(),
            recorder.from_append.summary(), recorder.timeline.rows())


def test_quantiles_legs_and_seconds_come_from_the_samples() -> None:
    origin = 1_700_000_000.0
    recorder = Recorder()
    recorder.restart(origin)
    _record_known(recorder, origin)
    summary = recorder.hist.summary()
    assert summary["n"] == 101
    # latencies run from 10 ms to 19.9 ms (and one of 100 ms): 2 % buckets
    assert summary["p50"] == pytest.approx(15.0, rel=0.03)
    assert summary["max"] == pytest.approx(100.0, rel=0.001)
    assert recorder.to_append.n == 100  # the event without an id has no legs
    assert recorder.to_append.quantile_ms(0.5) == pytest.approx(1.0, abs=0.6)
    assert recorder.from_append.quantile_ms(0.5) == pytest.approx(14.0, abs=0.7)
    rows = recorder.timeline.rows()
    assert [r["t"] for r in rows] == [0, 1]
    assert [r["delivered"] for r in rows] == [99, 2]
    assert recorder.last_at == origin + 1.5


def test_folding_early_gives_the_same_figures() -> None:
    origin = 1_700_000_000.0
    whole, folded = Recorder(), Recorder()
    folded.FOLD_AT = 7  # fold many times while recording
    for recorder in (whole, folded):
        recorder.restart(origin)
        _record_known(recorder, origin)
    assert _figures(folded) == _figures(whole)


def test_restart_forgets_what_came_before() -> None:
    recorder = Recorder()
    _record_known(recorder, 1_700_000_000.0)
    recorder.restart(1_700_000_100.0)
    assert recorder.hist.n == 0 and recorder.timeline.rows() == []


def test_each_receipt_takes_the_append_time_of_its_own_id() -> None:
    # members get one event in a row, but two rooms' events can interleave: the
    # parse kept for the latest id must not leak onto a receipt of another id
    origin = 1_700_000_000.0
    recorder = Recorder()
    recorder.restart(origin)
    early, late = f"{int(origin * 1000) + 2}-0", f"{int(origin * 1000) + 40}-0"
    for entry_id in (early, early, late, early, late, late, early):
        recorder.record(origin + 0.050, origin, entry_id)
    to_append = recorder.to_append
    assert to_append.n == 7
    assert to_append.quantile_ms(0.0) == pytest.approx(2.5, abs=0.1)  # 4 of early
    assert to_append.quantile_ms(0.5) == pytest.approx(2.5, abs=0.1)
    assert to_append.quantile_ms(1.0) == pytest.approx(40.5, rel=0.03)  # 3 of late
    assert recorder.from_append.quantile_ms(0.0) == pytest.approx(9.5, rel=0.03)


def test_receipts_of_events_without_an_id_keep_their_own_enqueue_time() -> None:
    # runs of receipts share one row per event: without an id, the enqueue time
    # tells two events apart
    origin = 1_700_000_000.0
    recorder = Recorder()
    recorder.restart(origin)
    for enqueued in (origin, origin, origin + 0.030, origin):
        recorder.record(origin + 0.040, enqueued, None)
    hist = recorder.hist
    assert hist.n == 4 and recorder.to_append.n == 0
    assert hist.quantile_ms(0.0) == pytest.approx(10.0, rel=0.03)
    assert hist.quantile_ms(1.0) == pytest.approx(40.0, rel=0.03)
    assert hist.quantile_ms(0.5) == pytest.approx(40.0, rel=0.03)  # 3 of the 4
