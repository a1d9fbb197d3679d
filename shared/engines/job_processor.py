"""Applies one shard's jobs in queue order: events are checked again and appended,
grants, revocations and links are applied to the access store.

Consecutive event jobs are appended together (one script call per few hundred
events) and completed in the same atomic step. An event that fails its check
(its type's model, its size) is set aside in the shard's dead-letter stream and
counted; the events around it go on. An access job that can never apply (a bad
link) is set aside the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from shared.engines.roles import (
    AccessJob,
    AccessStore,
    EventJob,
    FetchedJob,
    JobSource,
    PendingEvent,
)
from shared.events import InvalidEvent, check_encoded

log = logging.getLogger("roomcast.worker")


class JobProcessor:
    def __init__(self, source: JobSource, access: AccessStore, event_max_bytes: int,
                 on_dead_letter: Callable[[str], None] = lambda reason: None) -> None:
        self._source = source
        self._access = access
        self._max_bytes = event_max_bytes
        self._on_dead_letter = on_dead_letter

    def process(self, fetched: Sequence[FetchedJob]) -> int:
        """Apply `fetched` in order; returns the events appended."""
        appended = 0
        run: list[FetchedJob] = []
        for item in fetched:
            if isinstance(item.job, EventJob):
                run.append(item)
                continue
            appended += self._append(run)
            run = []
            if item.job is None:
                self._dead_letter(item, "not a job: its fields cannot be read")
            else:
                self._apply_access(item, item.job)
        return appended + self._append(run)

    def process_one(self, item: FetchedJob, reason: str) -> None:
        """Set aside a job that failed again and again (see the runner's bound)."""
        self._dead_letter(item, reason)

    def _append(self, run: list[FetchedJob]) -> int:
        if not run:
            return 0
        events: list[PendingEvent] = []
        for item in run:
            assert isinstance(item.job, EventJob)
            for event in item.job.events:
                try:
                    check_encoded(event.encoded, event.room, self._max_bytes)
                except InvalidEvent as exc:
                    self._dead_letter(FetchedJob(item.ref, None, event.encoded), str(exc),
                                      remove=False)
                    continue
                events.append(event)
        results = self._source.complete([item.ref for item in run], events)
        return sum(1 for r in results if r.appended)

    def _apply_access(self, item: FetchedJob, job: AccessJob) -> None:
        try:
            if job.op == "grant":
                self._access.grant(job.user_id, job.room)
            elif job.op == "revoke":
                self._access.revoke(job.user_id, job.room)
            else:
                self._access.link(job.room, job.project_room)
        except ValueError as exc:  # a link between rooms of the wrong kinds
            self._dead_letter(item, str(exc))
            return
        self._source.complete([item.ref], [])

    def _dead_letter(self, item: FetchedJob, reason: str, *, remove: bool = True) -> None:
        self._source.dead_letter(item, reason, remove=remove)
        self._on_dead_letter(reason)
        log.warning("set aside as never appendable; its producer's later events go on",
                    extra={"shard": self._source.shard, "job": item.ref, "reason": reason})
