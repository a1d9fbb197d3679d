"""The job queue in one process: a bounded queue per shard, consumed in order by
the in-process job runner (one consumer per shard, so the lease is always held).

The same guarantees as the Redis engine's: a producer's jobs for one shard are
queued all or none, in order; past PUBLISH_QUEUE_MAX queued jobs in a shard a
producer waits up to PUBLISH_QUEUE_TIMEOUT and then gets QueueFull; a job leaves
the queue only when `complete` appended its events (the same lock), or when it
is set aside as a dead letter.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence

from shared.engines.jobs import split_by_shard
from shared.engines.memory.store import MemoryStore
from shared.engines.roles import (
    AppendResult,
    FetchedJob,
    Job,
    PendingEvent,
    QueueFull,
    QueueStats,
)

DEAD_LETTER_CAP = 10_000
ASYNC_WAIT = (0.005, 0.2)  # back-pressure polling from the event loop: first, cap


class MemoryQueues:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        settings = store.settings
        self.bound = settings.PUBLISH_QUEUE_MAX
        self.shards = settings.STREAM_SHARDS
        self.changed = threading.Condition(store.lock)
        self.queues: list[deque[tuple[str, Job]]] = [deque() for _ in range(self.shards)]
        self.taken: list[set[str]] = [set() for _ in range(self.shards)]
        self.dead: deque[tuple[str, str]] = deque(maxlen=DEAD_LETTER_CAP)
        self.dead_total = 0
        self.workers = 0
        self._refs = itertools.count(1)

    def try_put(self, shard: int, jobs: list[Job]) -> bool:
        with self.changed:
            queue = self.queues[shard]
            if len(queue) >= self.bound:
                return False
            queue.extend((str(next(self._refs)), job) for job in jobs)
            self.changed.notify_all()
            return True

    def put(self, jobs: Sequence[Job], timeout: float, *, wait: bool) -> dict[int, list[Job]]:
        """Queue what fits; returns the jobs still waiting (shard -> jobs)."""
        pending = split_by_shard(jobs, self.shards)
        deadline = time.monotonic() + timeout
        while True:
            for shard in list(pending):
                if self.try_put(shard, pending[shard]):
                    del pending[shard]
            left = deadline - time.monotonic()
            if not pending or not wait or left <= 0:
                return pending
            with self.changed:
                self.changed.wait(left)  # woken when a worker completes jobs

    def depth(self) -> int:
        with self.changed:
            return sum(len(q) for q in self.queues)


def _full(pending: dict[int, list[Job]], timeout: float) -> QueueFull:
    return QueueFull(f"job queue full for shard(s) {', '.join(map(str, sorted(pending)))} "
                     f"after {timeout:g} s (PUBLISH_QUEUE_MAX); queueing the same events "
                     "again is safe")


class MemoryJobQueue:
    """The producer side, synchronous (backends and workers in this process)."""

    def __init__(self, queues: MemoryQueues, default_timeout: float) -> None:
        self._queues = queues
        self._timeout = default_timeout

    def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        timeout = self._timeout if timeout is None else timeout
        pending = self._queues.put(jobs, timeout, wait=True)
        if pending:
            raise _full(pending, timeout)


class AsyncMemoryJobQueue:
    """The producer side for the gateway's event loop: it never blocks the loop."""

    def __init__(self, queues: MemoryQueues, default_timeout: float) -> None:
        self._queues = queues
        self._timeout = default_timeout

    async def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pending = self._queues.put(jobs, 0, wait=False)
        wait = ASYNC_WAIT[0]
        while pending:
            if time.monotonic() >= deadline:
                raise _full(pending, timeout)
            await asyncio.sleep(wait)  # back-pressure: the workers are behind
            wait = min(wait * 2, ASYNC_WAIT[1])
            pending = self._queues.put([j for js in pending.values() for j in js], 0,
                                       wait=False)

    async def stats(self) -> QueueStats:
        return QueueStats(depth=self._queues.depth(), workers=self._queues.workers,
                          dead_letters=self._queues.dead_total)


def fetch_from(queues: MemoryQueues, shards: Sequence[int], count: int, block_ms: int
               ) -> dict[int, list[FetchedJob]]:
    """Jobs not yet taken, per shard that has some; waits up to `block_ms` for one."""
    with queues.changed:
        def fresh(shard: int) -> list[tuple[str, Job]]:
            taken = queues.taken[shard]
            return [(ref, job) for ref, job in queues.queues[shard] if ref not in taken][:count]

        if not any(fresh(shard) for shard in shards):
            queues.changed.wait(block_ms / 1000)
        out = {}
        for shard in shards:
            jobs = fresh(shard)
            if jobs:
                queues.taken[shard].update(ref for ref, _ in jobs)
                out[shard] = [FetchedJob(ref, job) for ref, job in jobs]
        return out


class MemoryJobSource:
    """One shard's queue for its one consumer, the in-process job runner."""

    def __init__(self, queues: MemoryQueues, store: MemoryStore, shard: int) -> None:
        self.shard = shard
        self._queues = queues
        self._store = store

    def hold(self) -> bool:
        return True  # one process, one runner: the lease is always ours

    def release(self) -> None:
        """Nothing to give back: see hold()."""

    def fetch(self, count: int, block_ms: int) -> list[FetchedJob]:
        return fetch_from(self._queues, [self.shard], count, block_ms).get(self.shard, [])

    def complete(self, refs: Sequence[str], events: Sequence[PendingEvent]
                 ) -> list[AppendResult]:
        with self._queues.changed:  # the store's lock: append and removal are one step
            results = self._store.append(events) if events else []
            self._remove(refs)
        return results

    def dead_letter(self, fetched: FetchedJob, reason: str, *, remove: bool = True) -> None:
        with self._queues.changed:
            self._queues.dead.append((reason, fetched.ref))
            self._queues.dead_total += 1
            if remove:
                self._remove([fetched.ref])

    def _remove(self, refs: Sequence[str]) -> None:
        queues = self._queues
        gone = set(refs)
        queue = queues.queues[self.shard]
        kept = [(ref, job) for ref, job in queue if ref not in gone]
        queue.clear()
        queue.extend(kept)
        queues.taken[self.shard].difference_update(gone)
        queues.changed.notify_all()
