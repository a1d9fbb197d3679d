"""CPU and memory of the processes under test, sampled with psutil.

Each watched name is one pid, optionally with its descendants (the Dramatiq
worker forks its worker processes). CPU is reported as % of one core between
two marks; memory as peak RSS over all samples. The machine's own busy time
is sampled too: on a shared box, busy cores minus ours is everyone else's load.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass, field

import psutil

MB = 1024.0 * 1024.0


@dataclass
class Sample:
    at: float
    cpu_s: dict[str, dict[int, float]]  # name -> pid -> user+system seconds (its tree)
    rss: dict[str, int]  # name -> bytes (tree)
    machine_busy_s: float  # summed over all cores
    machine_total_s: float


# Finding a process's descendants reads every process's /proc entry: done at each
# 0.5 s sample it was 2 % of the load generator's CPU, which delays the frames it
# reads. The worker forks its processes at start, so a slower look is enough.
CHILDREN_EVERY_S = 5.0


@dataclass
class Watched:
    process: psutil.Process
    tree: bool
    children: dict[int, psutil.Process] = field(default_factory=dict)
    children_seen_at: float = -math.inf

    def members(self) -> list[psutil.Process]:
        if not self.tree:
            return [self.process]
        now = time.monotonic()
        if now - self.children_seen_at >= CHILDREN_EVERY_S:
            self.children_seen_at = now
            try:  # keep Process objects across samples (psutil caches per object)
                for child in self.process.children(recursive=True):
                    self.children.setdefault(child.pid, child)
            except psutil.Error:
                pass
        return [self.process, *self.children.values()]


def _machine() -> tuple[float, float]:
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    return total - idle, total


class ProcMonitor:
    """Samples from its own thread: the load generator's event loop may be late by
    seconds when it is saturated, a thread still samples on time."""

    def __init__(self) -> None:
        self.watched: dict[str, Watched] = {}
        self.samples: list[Sample] = []
        self.marks: dict[str, Sample] = {}
        self.peak_rss: dict[str, int] = {}
        self.cores = psutil.cpu_count() or 1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.sample()

        self._thread = threading.Thread(target=loop, name="procmon", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def watch(self, name: str, pid: int, *, tree: bool = False) -> None:
        try:
            watched = Watched(psutil.Process(pid), tree)
        except psutil.Error:
            return  # already gone: reported as missing
        with self._lock:
            self.watched = {**self.watched, name: watched}

    def sample(self) -> Sample:
        with self._lock:
            return self._sample()

    def _sample(self) -> Sample:
        cpu: dict[str, dict[int, float]] = {}
        rss: dict[str, int] = {}
        for name, w in self.watched.items():
            per_pid: dict[int, float] = {}
            total_rss = 0
            for proc in w.members():
                try:
                    with proc.oneshot():
                        t = proc.cpu_times()
                        per_pid[proc.pid] = t.user + t.system
                        total_rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            if per_pid:
                cpu[name], rss[name] = per_pid, total_rss
                if total_rss > self.peak_rss.get(name, 0):
                    self.peak_rss[name] = total_rss
        busy, total = _machine()
        s = Sample(time.time(), cpu, rss, busy, total)
        self.samples.append(s)
        return s

    def mark(self, label: str) -> Sample:
        """A sample at a phase boundary, after a fresh look for children: a window
        between two marks then counts every process that was there at its start."""
        with self._lock:
            for watched in self.watched.values():
                watched.children_seen_at = -math.inf
            self.marks[label] = s = self._sample()
        return s

    def rss_mb(self, label: str) -> dict[str, float]:
        return {n: round(v / MB, 1) for n, v in self.marks[label].rss.items()}

    def cpu_pct(self, start: str, end: str) -> dict[str, float]:
        """% of one core per watched name between two marks, plus the machine's view."""
        return window_pct(self.marks[start], self.marks[end], self.cores)

    def cpu_pct_between(self, t0: float, t1: float) -> dict[str, float]:
        """The same between wall-clock times: the samples nearest inside [t0, t1]
        (or nearest outside when the window is shorter than the sampling interval)."""
        with self._lock:
            samples = sorted(self.samples, key=lambda s: s.at)
        times = [s.at for s in samples]
        i = bisect.bisect_left(times, t0)
        j = bisect.bisect_right(times, t1) - 1
        if j <= i:  # fewer than two samples inside: widen to the neighbours
            i, j = max(0, i - 1), min(len(samples) - 1, j + 1)
        if j <= i:
            return {}
        return window_pct(samples[i], samples[j], self.cores)

    def peak_rss_mb(self) -> dict[str, float]:
        return {n: round(v / MB, 1) for n, v in self.peak_rss.items()}


def window_pct(a: Sample, b: Sample, cores: int) -> dict[str, float]:
    dt = max(b.at - a.at, 1e-9)
    out: dict[str, float] = {}
    ours = 0.0
    for name, cpu in b.cpu_s.items():
        before = a.cpu_s.get(name)
        if before is None:
            continue
        # Only processes seen at both ends: a child found late (children are looked
        # for every CHILDREN_EVERY_S) would otherwise add all the CPU of its life so
        # far to this window (Dramatiq's worker process: its start-up, 150 % of a
        # core in one second of a publishing window), and one gone would subtract it.
        seconds = sum(used - before[pid] for pid, used in cpu.items() if pid in before)
        pct = 100.0 * seconds / dt
        out[name] = round(pct, 1)
        ours += pct
    busy_total = b.machine_total_s - a.machine_total_s
    if busy_total > 0:
        busy_pct = 100.0 * (b.machine_busy_s - a.machine_busy_s) / busy_total  # of all cores
        out["machine_busy_pct"] = round(busy_pct, 1)
        # everything else on the box (other engineers' tests), in % of one core
        out["others"] = round(max(0.0, busy_pct * cores - ours), 1)
    return out
