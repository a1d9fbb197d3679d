"""The consumer side of the job queue, for any engine: apply the jobs shard by shard.

It runs in every worker process (started by workers.broker.JobRunnerMiddleware), and
inside the gateway process with ENGINE=memory.

Each shard's jobs are applied by one worker at a time, in queue order, which is
what keeps a producer's order whatever the number of worker processes: a
producer's jobs for one shard sit in that shard's queue in the order it queued
them. This process runs one thread per shard. A thread consumes its shard while
it holds the shard's lease (see the engine's JobSource); the others stand by and
try again every LEASE_POLL seconds, so a crashed worker's shards move within the
lease's expiry plus one poll. Processes share the shards fairly: a process holds
at most ceil(shards / live workers) of them and lets go of the rest.

Reading blocks on the queue (no polling): an idle thread waits in one blocking
read per BLOCK_MS. Failures:
- the storage is unavailable (Redis down): back off and retry, without limit;
  nothing can be appended meanwhile, and nothing is lost;
- the lease was lost: stop; the new holder redoes the unfinished jobs;
- anything else happens to the same job POISON_ATTEMPTS times in a row (about
  POISON_HOLD_SECONDS): the job is set aside in the dead-letter stream, logged and
  counted, and its producer's later jobs go on. That is the bound on how long a
  job that can never be applied holds up the ones behind it.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import uuid

from shared.engines import Engine
from shared.engines.job_processor import JobProcessor
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
        self.appended = 0
        self.dead_letters = 0

    def start(self) -> None:
        self._engine.check_config_sync()  # a worker on the wrong shard count reads nothing
        self._register()
        self._threads = [threading.Thread(target=self._heartbeat, name="roomcast-heartbeat",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._consume, args=(shard,),
                                           name=f"roomcast-shard-{shard}", daemon=True)
                          for shard in range(self._shards)]
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
        except Exception as exc:  # the storage is down: the shard threads back off too
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

    # -- one shard ------------------------------------------------------------------------
    def _consume(self, shard: int) -> None:
        source = self._engine.job_source(shard, self.worker_id)
        processor = JobProcessor(source, self._engine.access_store,
                                 self._engine.settings.EVENT_MAX_BYTES, self._count_dead)
        unavailable = 0
        while not self._stop.is_set():
            try:
                if not self._hold(shard, source):
                    self._stop.wait(LEASE_POLL)
                    continue
                fetched = source.fetch(FETCH_COUNT, BLOCK_MS)
                if fetched:
                    self._apply(processor, fetched)
                unavailable = 0
            except LeaseLost:
                self._set_held(shard, False)
                log.warning("lost the lease of a shard; another worker redoes its jobs",
                            extra={"shard": shard, "worker": self.worker_id})
            except Unavailable as exc:
                unavailable += 1
                cap = min(UNAVAILABLE_BACKOFF_CAP, 0.05 * 2 ** unavailable)
                log.warning("storage unavailable; retrying", extra={"shard": shard,
                                                                    "error": str(exc)[:200]})
                self._stop.wait(random.uniform(0, cap))  # full-jitter backoff
        if shard in self.held:
            source.release()
            self._set_held(shard, False)

    def _hold(self, shard: int, source: JobSource) -> bool:
        if shard in self.held:
            if self._should_let_go(shard):
                source.release()
                self._set_held(shard, False)
                log.info("let go of a shard for another worker", extra={"shard": shard})
                return False
        elif not self._may_take():
            return False
        held = source.hold()
        self._set_held(shard, held)
        return held

    def _apply(self, processor: JobProcessor, fetched: list[FetchedJob]) -> None:
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
            self._apply_one(processor, item)

    def _apply_one(self, processor: JobProcessor, item: FetchedJob) -> None:
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
            if attempt < len(POISON_BACKOFF) and self._stop.wait(POISON_BACKOFF[attempt]):
                return
        processor.process_one(item, f"failed {POISON_ATTEMPTS} times: {error}"[:500])

    def _count_dead(self, reason: str) -> None:
        self.dead_letters += 1
