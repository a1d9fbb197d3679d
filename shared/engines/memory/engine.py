"""The memory engine: every role in this process, no Redis (ENGINE=memory).

For development and small single-node use: one gateway process, with its event
log, histories, presence and grants in memory and the workers in threads of the
same process (the job runner, and Dramatiq's stub broker for actors when one is
installed). A second gateway on it is impossible by construction: it has no way
to reach this process's memory, and a second gateway inside this process is
refused at start. Everything is gone when the process stops; clients that
resume then get `recovered: false` and refetch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.stub import StubBroker

from shared.engines.access import OpenAccess
from shared.engines.job_runner import JobRunner
from shared.engines.memory.event_log import MemoryEventLog, MemoryEventWriter, MemoryHistory
from shared.engines.memory.job_queue import (
    AsyncMemoryJobQueue,
    MemoryJobQueue,
    MemoryJobSource,
    MemoryQueues,
    fetch_from,
)
from shared.engines.memory.presence import (
    MemoryAccess,
    MemoryAccessData,
    MemoryAccessStore,
    MemoryPresence,
)
from shared.engines.memory.store import MemoryStore
from shared.engines.roles import Access, FetchedJob, JobSource, Presence
from shared.settings import AccessMode, Settings

log = logging.getLogger("roomcast.memory")

DRAMATIQ_THREADS = 4


class SecondGateway(Exception):
    """ENGINE=memory serves one gateway per process."""


class MemoryEngine:
    name = "memory"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = MemoryStore(settings)
        self._access_data = MemoryAccessData()
        self._queues = MemoryQueues(self._store)
        self.event_log = MemoryEventLog(self._store)
        self.history = MemoryHistory(self._store)
        self.access: Access = (OpenAccess() if settings.ACCESS_MODE is AccessMode.OPEN
                               else MemoryAccess(self._access_data))
        self.jobs = AsyncMemoryJobQueue(self._queues, settings.PUBLISH_QUEUE_TIMEOUT)
        self.writer = MemoryEventWriter(self._store)
        self.access_store = MemoryAccessStore(self._access_data, self._store)
        self.sync_jobs = MemoryJobQueue(self._queues, settings.PUBLISH_QUEUE_TIMEOUT)
        self._presence = MemoryPresence()
        self._gateway: str | None = None
        self._runner: JobRunner | None = None
        self._dramatiq: dramatiq.Worker | None = None

    # -- gateway side -----------------------------------------------------------------
    def presence(self, instance_id: str) -> Presence:
        return self._presence

    async def reachable(self) -> bool:
        return True

    async def check_config(self) -> None:
        """One process: nothing to agree on with others."""

    def check_config_sync(self) -> None:
        """One process: nothing to agree on with others."""

    async def hold_instance(self, instance_id: str, ttl: float) -> bool:
        if self._gateway not in (None, instance_id):
            raise SecondGateway(
                f"ENGINE=memory serves one gateway per process; {self._gateway!r} runs here "
                "already (use ENGINE=redis for more than one gateway)")
        self._gateway = instance_id
        return True

    async def release_instance(self, instance_id: str) -> None:
        if self._gateway == instance_id:
            self._gateway = None

    async def aclose(self) -> None:
        """The memory outlives a gateway's shutdown until the process ends."""

    # -- workers, in this process --------------------------------------------------------
    def job_source(self, shard: int, worker_id: str) -> JobSource:
        return MemoryJobSource(self._queues, self._store, shard)

    def fetch_jobs(self, sources: Sequence[JobSource], count: int, block_ms: int
                   ) -> dict[int, list[FetchedJob]]:
        return fetch_from(self._queues, [s.shard for s in sources], count, block_ms)

    def register_worker(self, worker_id: str, ttl: float) -> None:
        self._queues.workers = 1

    def unregister_worker(self, worker_id: str) -> None:
        self._queues.workers = 0

    def live_workers(self) -> int:
        return self._queues.workers

    def start_local_workers(self) -> None:
        if self._runner is not None:
            return
        self._runner = JobRunner(self)
        self._runner.start()
        broker = dramatiq.broker.global_broker  # an app's actors, declared on our stub
        if isinstance(broker, StubBroker):
            self._dramatiq = dramatiq.Worker(broker, worker_threads=DRAMATIQ_THREADS)
            self._dramatiq.start()
            log.info("running Dramatiq actors in this process",
                     extra={"actors": sorted(broker.get_declared_actors())})

    def stop_local_workers(self) -> None:
        if self._dramatiq is not None:
            self._dramatiq.stop()
            self._dramatiq = None
        if self._runner is not None:
            self._runner.stop()
            self._runner = None

    def close(self) -> None:
        self.stop_local_workers()


_process_engine: MemoryEngine | None = None
_lock = threading.Lock()


def process_engine(settings: Settings) -> MemoryEngine:
    """The one memory engine of this process (made on first use)."""
    global _process_engine
    with _lock:
        if _process_engine is None:
            _process_engine = MemoryEngine(settings)
        return _process_engine
