"""What a backend imports to publish events and change room access.

    from workers import api
    api.task_created("project:1", task_id=7, project_id=1, title="Ship it")
    api.publish_many([{"type": "task.updated", "room": "project:1", "data": {...}}, ...])
    with api.batch() as b:                      # one job, one round trip
        b.task_updated("project:1", task_id=7, project_id=1, changes={"title": "x"})
        b.notify(42, title="You were assigned")
    api.grant_access(42, "project:1").wait()    # returns once the grant is in force
    await api.aio.task_created(...)             # the same from async code

Every helper checks its event at the call site (its type's model, the room, the
size against EVENT_MAX_BYTES), so a bad event raises here and never reaches the
queue, and returns the event's key: the key makes the publish idempotent (a
retry with the same key appends once).

Order: the events one thread publishes for a room are appended in the order of
the calls, whatever the number of workers; so are the events of one call. When
the workers fall behind, a call waits for room in the queue (up to
PUBLISH_QUEUE_TIMEOUT) and then raises `QueueFull`; nothing is dropped.

From inside a Dramatiq job, `api.job_publisher()` appends directly, with no second
hop: keys derive from the job's message id, so a retried job appends each event
once, and the job's events keep its order.

The module-level helpers use settings from the environment; `Backend(settings)`
and `AsyncBackend(settings)` are the same API bound to explicit settings.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from dramatiq.middleware import CurrentMessage

from shared.engines import Engine, build_engine
from shared.engines.roles import EventJob, EventWriter, Job, PendingEvent, QueueFull, SyncJobQueue
from shared.events import InvalidEvent, UnknownEventType, register_event_type
from shared.publishing import (
    DEFAULT_SENDER,
    event_from_payload,
    grant_job,
    link_job,
    new_key,
    pending_event,
    revoke_job,
)
from shared.settings import Settings, load_settings
from workers.helpers import EventHelpers
from workers.remote import RemoteError, RemoteTarget

__all__ = ["AsyncBackend", "Backend", "Batch", "Grant", "InvalidEvent", "JobPublisher",
           "QueueFull", "RemoteError", "UnknownEventType", "aio", "batch", "event", "grant_access",
           "job_publisher", "link_room", "message", "message_deleted", "message_edited",
           "new_key", "notify", "project_archived", "project_updated", "publish",
           "publish_many", "register_event_type", "revoke_access", "task_assigned",
           "task_created", "task_deleted", "task_status_changed", "task_updated"]

GRANT_POLL = 0.02  # how often Grant.wait looks again
P = ParamSpec("P")
R = TypeVar("R")


def _events(settings: Settings, events: Iterable[Mapping[str, Any] | PendingEvent]
            ) -> list[PendingEvent]:
    return [e if isinstance(e, PendingEvent) else event_from_payload(settings, e)
            for e in events]


class GrantCheck(Protocol):
    def granted(self, user_id: int, room: str) -> bool: ...


class Target(Protocol):
    """Where a Backend's jobs go: an engine, or a gateway's backend API (remote.py)."""

    @property
    def sync_jobs(self) -> SyncJobQueue: ...

    @property
    def access_store(self) -> GrantCheck: ...

    def close(self) -> None: ...


class Grant:
    """A grant on its way to the worker; `wait` returns once it is in force."""

    def __init__(self, target: Target, user_id: int, room: str) -> None:
        self._target, self.user_id, self.room = target, user_id, room

    def wait(self, timeout: float = 5.0) -> bool:
        """True once a gateway would admit the user; False after `timeout` seconds
        (no worker running, or one far behind)."""
        deadline = time.monotonic() + timeout
        while not self._target.access_store.granted(self.user_id, self.room):
            if time.monotonic() >= deadline:
                return False
            time.sleep(GRANT_POLL)  # poll with a deadline
        return True


class Backend(EventHelpers[str]):
    def __init__(self, settings: Settings | None = None, *, engine: Target | None = None
                 ) -> None:
        self.settings = settings or load_settings()
        self.engine: Target = engine or build_engine(self.settings)

    @classmethod
    def remote(cls, url: str, api_key: str, settings: Settings | None = None) -> Backend:
        """Publish through a gateway's backend API (EVENTS_API_KEY), for any engine."""
        return cls(settings or Settings(), engine=RemoteTarget(url, api_key))

    def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        self.engine.sync_jobs.enqueue(jobs, timeout=timeout)

    # -- events -------------------------------------------------------------------------
    def event(self, type_: str, room: str, data: dict[str, Any], *,
              sender: str = DEFAULT_SENDER, key: str | None = None) -> str:
        pending = pending_event(self.settings, type_, room, data, sender=sender, key=key)
        self.enqueue([EventJob((pending,))])
        return pending.key

    def publish(self, event: Mapping[str, Any]) -> str:
        """One event as a mapping: {"type", "room", "data", "sender"?, "key"?}."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[Mapping[str, Any] | PendingEvent]) -> list[str]:
        """Many events as one job per shard: one round trip each, appended in this order."""
        pending = _events(self.settings, events)
        if pending:
            self.enqueue([EventJob(tuple(pending))])
        return [p.key for p in pending]

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Collect events (and access changes); queue them together when the block ends
        without an exception."""
        collected = Batch(self.settings)
        yield collected
        if collected.jobs:
            self.enqueue(collected.jobs)

    # -- access ---------------------------------------------------------------------------
    def grant_access(self, user_id: int, room: str) -> Grant:
        job = grant_job(user_id, room)
        self.enqueue([job])
        return Grant(self.engine, job.user_id, job.room)

    def revoke_access(self, user_id: int, room: str) -> None:
        self.enqueue([revoke_job(user_id, room)])

    def link_room(self, room: str, project_room: str) -> None:
        self.enqueue([link_job(room, project_room)])

    def close(self) -> None:
        self.engine.close()


class Batch(EventHelpers[str]):
    """Events and access changes collected by `Backend.batch()`, queued in this order."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.jobs: list[Job] = []

    def event(self, type_: str, room: str, data: dict[str, Any], *,
              sender: str = DEFAULT_SENDER, key: str | None = None) -> str:
        pending = pending_event(self._settings, type_, room, data, sender=sender, key=key)
        if self.jobs and isinstance(self.jobs[-1], EventJob):
            self.jobs[-1] = EventJob((*self.jobs[-1].events, pending))
        else:
            self.jobs.append(EventJob((pending,)))
        return pending.key

    def publish(self, event: Mapping[str, Any]) -> str:
        pending = event_from_payload(self._settings, event)
        return self.event_pending(pending)

    def event_pending(self, pending: PendingEvent) -> str:
        self.jobs.append(EventJob((pending,)))
        return pending.key

    def grant_access(self, user_id: int, room: str) -> None:
        self.jobs.append(grant_job(user_id, room))

    def revoke_access(self, user_id: int, room: str) -> None:
        self.jobs.append(revoke_job(user_id, room))

    def link_room(self, room: str, project_room: str) -> None:
        self.jobs.append(link_job(room, project_room))


class AsyncGrant:
    """A grant on its way to the worker; `await wait()` returns once it is in force."""

    def __init__(self, engine: Engine, user_id: int, room: str) -> None:
        self._engine, self.user_id, self.room = engine, user_id, room

    async def wait(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not await self._engine.access.allowed(self.user_id, self.room):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(GRANT_POLL)  # poll with a deadline
        return True


class AsyncBackend(EventHelpers["asyncio.Future[str] | Any"]):
    """The same API for async code: every call is awaited and never blocks the loop."""

    def __init__(self, settings: Settings | None = None, *, engine: Engine | None = None
                 ) -> None:
        self.settings = settings or (engine.settings if engine else load_settings())
        self.engine = engine or build_engine(self.settings)

    async def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        await self.engine.jobs.enqueue(jobs, timeout=timeout)

    async def event(self, type_: str, room: str, data: dict[str, Any], *,
                    sender: str = DEFAULT_SENDER, key: str | None = None) -> str:
        pending = pending_event(self.settings, type_, room, data, sender=sender, key=key)
        await self.enqueue([EventJob((pending,))])
        return pending.key

    async def publish(self, event: Mapping[str, Any]) -> str:
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Iterable[Mapping[str, Any] | PendingEvent]
                           ) -> list[str]:
        pending = _events(self.settings, events)
        if pending:
            await self.enqueue([EventJob(tuple(pending))])
        return [p.key for p in pending]

    async def enqueue_batch(self, collected: Batch) -> None:
        if collected.jobs:
            await self.enqueue(collected.jobs)

    def batch(self) -> Batch:
        """Collect with the returned Batch, then `await enqueue_batch(batch)`."""
        return Batch(self.settings)

    async def grant_access(self, user_id: int, room: str) -> AsyncGrant:
        job = grant_job(user_id, room)
        await self.enqueue([job])
        return AsyncGrant(self.engine, job.user_id, job.room)

    async def revoke_access(self, user_id: int, room: str) -> None:
        await self.enqueue([revoke_job(user_id, room)])

    async def link_room(self, room: str, project_room: str) -> None:
        await self.enqueue([link_job(room, project_room)])

    async def aclose(self) -> None:
        await self.engine.aclose()


class JobPublisher(EventHelpers[str]):
    """Appends directly from inside a Dramatiq job (no second hop). The n-th event a
    job publishes gets the key `job:<message id>:<n>`, so a retried job appends each
    of its events once, and in the job's order."""

    def __init__(self, settings: Settings, writer: EventWriter, message_id: str) -> None:
        self._settings = settings
        self._writer = writer
        self._message_id = message_id
        self._count = 0

    def _next_key(self) -> str:
        self._count += 1
        return f"job:{self._message_id}:{self._count}"

    def event(self, type_: str, room: str, data: dict[str, Any], *,
              sender: str = DEFAULT_SENDER, key: str | None = None) -> str:
        return self.publish_many([{"type": type_, "room": room, "data": data,
                                   "sender": sender, "key": key or self._next_key()}])[0]

    def publish(self, event: Mapping[str, Any]) -> str:
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        payloads = [e if e.get("key") else {**e, "key": self._next_key()}
                    for e in events]
        pending = _events(self._settings, payloads)
        self._writer.append(pending)
        return [p.key for p in pending]


_job_state = threading.local()


def _job_publisher(settings: Settings) -> JobPublisher:
    message = CurrentMessage.get_current_message()
    if message is None:
        raise RuntimeError("job_publisher() publishes from inside a Dramatiq job; "
                           "elsewhere use the module's helpers (they queue the events)")
    current: JobPublisher | None = getattr(_job_state, "publisher", None)
    if current is None or getattr(_job_state, "message_id", None) != message.message_id:
        current = JobPublisher(settings, _job_engine().writer, message.message_id)
        _job_state.publisher, _job_state.message_id = current, message.message_id
    return current


# -- module-level helpers: settings from the environment ---------------------------------
@functools.cache
def default_backend() -> Backend:
    return Backend(load_settings())


class _AioBackends:
    """`api.aio`: an AsyncBackend per event loop (an asyncio client belongs to one loop)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBackend] = (
            weakref.WeakKeyDictionary())

    def _backend(self) -> AsyncBackend:
        loop = asyncio.get_running_loop()
        backend = self._by_loop.get(loop)
        if backend is None:
            backend = self._by_loop[loop] = AsyncBackend(default_backend().settings)
        return backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend(), name)


aio: Any = _AioBackends()


@functools.cache
def _job_engine() -> Engine:
    """The engine jobs in this process append to (made once, after Dramatiq forks)."""
    return build_engine(default_backend().settings)


def job_publisher() -> JobPublisher:
    """For code inside a Dramatiq job: appends directly (see JobPublisher)."""
    return _job_publisher(default_backend().settings)


def publish(event: Mapping[str, Any]) -> str:
    return default_backend().publish(event)


def publish_many(events: Iterable[Mapping[str, Any] | PendingEvent]) -> list[str]:
    return default_backend().publish_many(events)


def event(type_: str, room: str, data: dict[str, Any], *, sender: str = DEFAULT_SENDER,
          key: str | None = None) -> str:
    return default_backend().event(type_, room, data, sender=sender, key=key)


@contextmanager
def batch() -> Iterator[Batch]:
    with default_backend().batch() as collected:
        yield collected


def grant_access(user_id: int, room: str) -> Grant:
    return default_backend().grant_access(user_id, room)


def revoke_access(user_id: int, room: str) -> None:
    default_backend().revoke_access(user_id, room)


def link_room(room: str, project_room: str) -> None:
    default_backend().link_room(room, project_room)


def _delegate(method: Callable[Concatenate[Backend, P], R]) -> Callable[P, R]:
    """A module-level helper calling `method` on the default backend, fully typed."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_backend(), *args, **kwargs)

    return call


message = _delegate(Backend.message)
message_edited = _delegate(Backend.message_edited)
message_deleted = _delegate(Backend.message_deleted)
task_created = _delegate(Backend.task_created)
task_updated = _delegate(Backend.task_updated)
task_status_changed = _delegate(Backend.task_status_changed)
task_assigned = _delegate(Backend.task_assigned)
task_deleted = _delegate(Backend.task_deleted)
project_updated = _delegate(Backend.project_updated)
project_archived = _delegate(Backend.project_archived)
notify = _delegate(Backend.notify)
