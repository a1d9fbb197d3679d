"""Engines: one implementation of every role (see roles.py) per storage.

    redis   the default: any number of gateways and workers on one Redis
    memory  one process, no Redis: the gateway, its event log and histories, and
            the workers' job runner all live in that process

`build_engine(settings)` picks one by `ENGINE`. The memory engine is one per
process: everything in that process (the gateway, in-process backends, the
workers' threads) shares it, and nothing outside the process can reach it except
through the gateway's HTTP API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.engines.roles import (
    Access,
    AccessStore,
    EventLog,
    EventWriter,
    FetchedJob,
    History,
    JobQueue,
    JobSource,
    Presence,
    SyncJobQueue,
)
from shared.settings import Engine as EngineName
from shared.settings import Settings


class Engine(Protocol):
    name: str
    settings: Settings

    # gateway side (asyncio)
    @property
    def event_log(self) -> EventLog: ...

    @property
    def history(self) -> History: ...

    def presence(self, instance_id: str) -> Presence: ...

    @property
    def access(self) -> Access: ...

    @property
    def jobs(self) -> JobQueue: ...

    async def reachable(self) -> bool: ...

    async def check_config(self) -> None:
        """Raise SettingsError when this process's settings clash with the deployment's."""
        ...

    async def hold_instance(self, instance_id: str, ttl: float) -> bool: ...

    async def release_instance(self, instance_id: str) -> None: ...

    async def aclose(self) -> None: ...

    # worker and backend side (threads)
    @property
    def writer(self) -> EventWriter: ...

    @property
    def access_store(self) -> AccessStore: ...

    @property
    def sync_jobs(self) -> SyncJobQueue: ...

    def check_config_sync(self) -> None: ...

    def job_source(self, shard: int, worker_id: str) -> JobSource: ...

    def fetch_jobs(self, sources: Sequence[JobSource], count: int, block_ms: int
                   ) -> dict[int, list[FetchedJob]]:
        """One wait (at most `block_ms`) over several shards' queues, for one consumer
        thread holding them all: each shard's jobs as its source's `fetch` gives them
        (those to redo first), for the shards that have some."""
        ...

    def register_worker(self, worker_id: str, ttl: float) -> None: ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def live_workers(self) -> int: ...

    def start_local_workers(self) -> None:
        """Run the workers inside this process, where the engine needs it (memory)."""
        ...

    def stop_local_workers(self) -> None: ...

    def close(self) -> None: ...


def build_engine(settings: Settings) -> Engine:
    if settings.ENGINE is EngineName.MEMORY:
        from shared.engines.memory.engine import process_engine

        return process_engine(settings)
    from shared.engines.redis.engine import RedisEngine

    return RedisEngine(settings)
