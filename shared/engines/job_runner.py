"""The consumer side of the job queue, for any engine: apply the jobs shard by shard.

It runs in every worker process (started by workers.broker.JobRunnerMiddleware), and
inside the gateway process with ENGINE=memory.

Each shard's jobs are applied by one worker at a time, in queue order, which is
what keeps a producer's order whatever the number of worker processes: a
producer's jobs for one shard sit in that shard's queue in the order it queued
them. A worker consumes a shard while it holds the shard's lease (see the
engine's JobSource); a shard held elsewhere is asked for again every LEASE_POLL
seconds, so a crashed worker's shards move within the lease's expiry plus one
poll (plus one read, below). Processes share the shards fairly: a process holds
at most ceil(shards / live workers) of them and lets go of the rest.

One thread per process consumes every shard it holds, with one blocking read over
all their queues (no polling: an idle worker waits in one read per BLOCK_MS). A
thread per shard, as before, spent more CPU handing the GIL between threads than
applying jobs (strace: 32 futex calls per Redis reply; 158 against 71 µs of
worker CPU per event with 8 threads against 2). Failures:
- the storage is unavailable (Redis down): back off and retry, without limit;
  nothing can be appended meanwhile, and nothing is lost;
- the lease was lost: stop; the new holder redoes the unfinished jobs;
- anything else happens to the same job POISON_ATTEMPTS times in a row (about
  POISON_HOLD_SECONDS): the job is set aside in the dead-letter stream, logged and
  counted, and its producer's later jobs go on. That is the bound on how long a
  job that can never be applied holds up the ones behind it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import threading
import time
import uuid

from shared.engines import Engine
from shared.engines.job_processor import JobProcessor
from shared.engines.linger import Linger
from shared.engines.roles import FetchedJob, JobSource, LeaseLost, Unavailable

log = logging.getLogger("roomcast.worker")

FETCH_COUNT = 200  # jobs per read
BLOCK_MS = 1000  # one blocking read per second on an idle shard (< the lease's expiry)
LEASE_POLL = 1.0  # a standing-by thread asks for its shard's lease this often
REGISTER_EVERY = 1.0  # the worker's heartbeat; it counts as alive for 3 of these
POISON_ATTEMPTS = 4
POISON_BACKOFF = (0.1, 0.4, 1.0)  # seconds between attempts: about 1.5 s in all
POISON_HOLD_SECONDS = sum(POISON_BACKOFF)
UNAVAILABLE_BACKOFF_CAP = 2.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobRunner:
    def __init__(self, engine: Engine, worker_id: str | None = None) -> None:
        self._engine = engine
        self.worker_id = worker_id or new_worker_id()
        self._shards = engine.settings.STREAM_SHARDS
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        self._fair_share = self._shards
        self._sources: dict[int, JobSource] = {}  # each made by its consumer thread
        self._next_ask: dict[int, float] = {}  # when to ask again for a lease held elsewhere
        # One consumer thread per group: all shards, except on a Redis Cluster, where a
        # blocking read cannot span the shards' slots (one thread per shard there).
        shards = list(range(self._shards))
        self._groups = ([[s] for s in shards] if engine.settings.REDIS_CLUSTER else [shards])
        self.appended = 0
        self.dead_letters = 0

    def start(self) -> None:
        self._engine.check_config_sync()  # a worker on the wrong shard count reads nothing
        self._register()
        self._threads = [threading.Thread(target=self._heartbeat, name="roomcast-heartbeat",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._consume, args=(group,),
                                           name=f"roomcast-consumer-{n}", daemon=True)
                          for n, group in enumerate(self._groups)]
        for thread in self._threads:
            thread.start()
        log.info("consuming the job queue", extra={"worker": self.worker_id,
                                                   "shards": self._shards})

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._engine.unregister_worker(self.worker_id)

    @property
    def held(self) -> set[int]:
        with self._held_lock:
            return set(self._held)

    # -- liveness and fairness ----------------------------------------------------------
    def _register(self) -> None:
        try:
            self._engine.register_worker(self.worker_id, REGISTER_EVERY * 3)
            live = max(1, self._engine.live_workers())
            self._fair_share = math.ceil(self._shards / live)
        except Exception as exc:  # the storage is down: the consumer backs off too
            log.warning("worker heartbeat failed", extra={"error": str(exc)[:200]})

    def _heartbeat(self) -> None:
        while not self._stop.wait(REGISTER_EVERY):
            self._register()

    def _may_take(self) -> bool:
        with self._held_lock:
            return len(self._held) < self._fair_share

    def _should_let_go(self, shard: int) -> bool:
        """Holding more than the fair share: let go of the highest shards first."""
        with self._held_lock:
            return len(self._held) > self._fair_share and shard == max(self._held)

    def _set_held(self, shard: int, held: bool) -> None:
        with self._held_lock:
            if held:
                self._held.add(shard)
            else:
                self._held.discard(shard)

    # -- consuming ----------------------------------------------------------------------
    def _consume(self, group: list[int]) -> None:
        engine = self._engine
        for shard in group:
            self._sources[shard] = engine.job_source(shard, self.worker_id)
            self._next_ask[shard] = 0.0
        processors = {shard: JobProcessor(self._sources[shard], engine.access_store,
                                          engine.settings.EVENT_MAX_BYTES, self._count_dead)
                      for shard in group}
        unavailable = 0
        linger = Linger()
        while not self._stop.is_set():
            try:
                held = self._leases(group)
                if not held:
                    self._stop.wait(LEASE_POLL)
                    continue
                if linger.delay:
                    self._stop.wait(linger.delay)
                fetched = engine.fetch_jobs(held, FETCH_COUNT, BLOCK_MS)
                linger.read_returned(bool(fetched))
                failure: Unavailable | None = None
                for shard, jobs in sorted(fetched.items()):
                    try:  # every shard's turn, even after another's failed: a source
                        # whose completion failed redoes its jobs; one not tried would not
                        self._apply_shard(shard, processors[shard], jobs, group)
                    except Unavailable as exc:
                        failure = exc
                if failure is not None:
                    raise failure
                unavailable = 0
            except Unavailable as exc:
                unavailable += 1
                log.warning("storage unavailable; retrying", extra={"error": str(exc)[:200]})
                self._back_off(unavailable)
            except Exception:
                # Anything else (a read Redis refuses, a bug) must not end this thread:
                # the heartbeat would go on counting the worker as alive, and other
                # workers would leave its shards to it, unread.
                unavailable += 1
                log.exception("consuming the job queue failed; retrying")
                self._back_off(unavailable)
        for shard in self.held & set(group):
            self._sources[shard].release()
            self._set_held(shard, False)

    def _back_off(self, failures: int) -> None:
        cap = min(UNAVAILABLE_BACKOFF_CAP, 0.05 * 2 ** failures)
        self._stop.wait(random.uniform(0, cap))  # full-jitter backoff

    def _apply_shard(self, shard: int, processor: JobProcessor, fetched: list[FetchedJob],
                     group: list[int]) -> None:
        try:
            self._apply(processor, fetched, group)
        except LeaseLost:
            self._set_held(shard, False)
            log.warning("lost the lease of a shard; another worker redoes its jobs",
                        extra={"shard": shard, "worker": self.worker_id})

    def _leases(self, group: list[int]) -> list[JobSource]:
        """Renew the leases held, let go of shards past the fair share, ask for the
        others every LEASE_POLL seconds; the sources of the group's shards held now."""
        now = time.monotonic()
        held_before = self.held  # one copy per round, not one per shard
        for shard in group:
            source = self._sources[shard]
            if shard in held_before:
                if self._should_let_go(shard):
                    source.release()
                    self._set_held(shard, False)
                    self._next_ask[shard] = now + LEASE_POLL
                    log.info("let go of a shard for another worker", extra={"shard": shard})
                    continue
            elif not self._may_take() or now < self._next_ask[shard]:
                continue
            held = source.hold()  # a renewal is rate-limited by the source itself
            self._set_held(shard, held)
            if not held:
                self._next_ask[shard] = now + LEASE_POLL
        now_held = self.held
        return [self._sources[shard] for shard in group if shard in now_held]

    def _apply(self, processor: JobProcessor, fetched: list[FetchedJob],
               group: list[int]) -> None:
        """Apply a batch. When that fails for a reason that is not the storage's, the
        batch is applied one job at a time to find the job at fault: a job that fails
        POISON_ATTEMPTS times on its own is set aside, and the jobs behind it go on."""
        try:
            self.appended += processor.process(fetched)
            return
        except (LeaseLost, Unavailable):
            raise
        except Exception as exc:
            log.warning("applying a batch failed; applying its jobs one by one",
                        extra={"jobs": len(fetched), "error": str(exc)[:200]})
        for item in fetched:
            if self._stop.is_set():
                return
            self._apply_one(processor, item, group)

    def _apply_one(self, processor: JobProcessor, item: FetchedJob, group: list[int]) -> None:
        error: Exception | None = None
        for attempt in range(POISON_ATTEMPTS):
            try:
                self.appended += processor.process([item])
                return
            except (LeaseLost, Unavailable):
                raise
            except Exception as exc:
                error = exc
                log.warning("applying a job failed", extra={"job": item.ref,
                                                             "attempt": attempt + 1,
                                                             "error": str(exc)[:200]})
            if attempt < len(POISON_BACKOFF) and self._pause(POISON_BACKOFF[attempt], group):
                return
        processor.process_one(item, f"failed {POISON_ATTEMPTS} times: {error}"[:500])

    def _pause(self, seconds: float, group: list[int]) -> bool:
        """Wait between attempts at a failing job, keeping the leases of the other
        shards this thread serves; True when stopping."""
        with contextlib.suppress(Unavailable):
            for shard in self.held & set(group):
                self._sources[shard].hold()
        return self._stop.wait(seconds)

    def _count_dead(self, reason: str) -> None:
        self.dead_letters += 1
