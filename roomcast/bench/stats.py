"""Latency histograms (log buckets, 2 % resolution) and summaries over runs.

A histogram instead of a list of samples: a max-rate run receives tens of
millions of messages and the load generator must stay small and cheap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

BUCKETS_PER_E = 50  # bucket i holds latencies in [e^(i/50), e^((i+1)/50)) microseconds
MAX_BUCKET = 1100  # e^22 us, about 1 hour
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def bucket_of(latency_s: float) -> int:
    us = latency_s * 1e6
    if us < 1.0:
        return 0  # below 1 us, or a clock step backwards
    return min(int(math.log(us) * BUCKETS_PER_E), MAX_BUCKET)


def bucket_ms(index: int) -> float:
    """A bucket's representative value (its geometric middle) in ms."""
    return math.exp((index + 0.5) / BUCKETS_PER_E) / 1000.0


class Histogram:
    __slots__ = ("counts", "max_s", "n")

    def __init__(self) -> None:
        self.counts = [0] * (MAX_BUCKET + 1)
        self.n = 0
        self.max_s = 0.0

    def add(self, index: int, latency_s: float) -> None:
        self.counts[index] += 1
        self.n += 1
        if latency_s > self.max_s:
            self.max_s = latency_s

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c
        self.n += other.n
        self.max_s = max(self.max_s, other.max_s)

    def quantile_ms(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                return round(min(bucket_ms(i), self.max_s * 1000.0), 3)
        return round(self.max_s * 1000.0, 3)

    def summary(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {"n": self.n}
        for name, q in PERCENTILES:
            out[name] = self.quantile_ms(q)
        out["max"] = round(self.max_s * 1000.0, 3) if self.n else None
        return out


class Timeline:
    """Per-second delivered counts and latency histograms, by receipt time."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.seconds: dict[int, Histogram] = {}

    def add(self, now: float, index: int, latency_s: float) -> None:
        sec = int(now - self.origin)
        hist = self.seconds.get(sec)
        if hist is None:
            hist = self.seconds[sec] = Histogram()
        hist.add(index, latency_s)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for sec in sorted(self.seconds):
            h = self.seconds[sec]
            rows.append({"t": sec, "delivered": h.n, "p50_ms": h.quantile_ms(0.5),
                         "p99_ms": h.quantile_ms(0.99), "max_ms": round(h.max_s * 1000, 3)})
        return rows


# -- summaries over runs ----------------------------------------------------------------

SKIP_KEYS = frozenset({"timeline", "errors", "closes_by_code", "scenario"})


def flatten(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as dotted paths (booleans and lists are left out)."""
    out: dict[str, float] = {}
    for key, value in report.items():
        if key in SKIP_KEYS:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[path] = float(value)
    return out


def summarise(runs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """median / min / max of every numeric figure present in any run."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for path, value in flatten(run).items():
            values.setdefault(path, []).append(value)
    return {path: {"median": _round(statistics.median(vs)), "min": _round(min(vs)),
                   "max": _round(max(vs))}
            for path, vs in sorted(values.items())}


def _round(value: float) -> float:
    return round(value, 3) if abs(value) < 1000 else round(value)
