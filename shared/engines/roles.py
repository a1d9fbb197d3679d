"""The roles an engine plays, as small protocols with the guarantees each gives.

Gateways and workers depend on these, never on a Redis class: the Redis engine
(`shared.engines.redis`) and the memory engine (`shared.engines.memory`) each
implement every role, and one contract suite runs over both.

    EventLog   append events (deduplicated by key) and control entries; a reader
               per gateway that sees every entry of every shard in order
    History    the resume decision and the replay, from one snapshot
    Presence   who is in which room over all gateways; per-user connection slots
    Access     may this user join this room; grants, revocations and links
    JobQueue   the ordered, bounded queue from producers to the workers

Gateways use the asynchronous side of each role; workers and backends (threads)
use the synchronous side (`EventWriter`, `AccessStore`, `SyncJobQueue`,
`JobSource`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

IdKey = tuple[int, int]
ZERO_ID = "0-0"


# -- values ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event ready to append: its wire JSON without `id`, its room and its key."""

    key: str
    room: str
    encoded: bytes


@dataclass(frozen=True, slots=True)
class AppendResult:
    id: str
    appended: bool  # False: the key had been seen; `id` is the first append's


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a shard: a room event, or a control entry (`room` starts with "_")."""

    id: str
    room: str
    seq: int  # per shard, +1 per entry: a reader sees entries it never got
    encoded: bytes
    key: tuple[int, int]  # `id` as a comparable (ms, seq), parsed once where it is read

    @property
    def is_control(self) -> bool:
        return self.room.startswith("_")


@dataclass(frozen=True, slots=True)
class EventJob:
    """Events from one producer, appended in this order."""

    events: tuple[PendingEvent, ...]


@dataclass(frozen=True, slots=True)
class AccessJob:
    op: Literal["grant", "revoke", "link"]
    room: str
    user_id: int = 0  # grant and revoke
    project_room: str = ""  # link


Job = EventJob | AccessJob


@dataclass(frozen=True, slots=True)
class FetchedJob:
    """A job as a worker took it from the queue; `ref` is the queue's handle for it."""

    ref: str
    job: Job | None  # None: the entry could not be decoded (dead-lettered as it is)
    raw: bytes = b""


@dataclass(slots=True)
class JoinPoint:
    last_id: str  # the room's latest event id at the join, "0-0" when none
    recovered: bool | None = None  # None: no `since` was asked
    replayed: int = 0  # events the replay will send
    replay: ReplayCursor | None = None


@dataclass(frozen=True, slots=True)
class RoomMember:
    user_id: int
    username: str


@dataclass(frozen=True, slots=True)
class Departure:
    """A user the presence sweep removed from a room; `token` names this departure
    (the same each time it is returned), for the dedupe key of its `user_left`."""

    room: str
    member: RoomMember
    token: str


@dataclass(slots=True)
class QueueStats:
    depth: int  # jobs waiting (all shards)
    workers: int  # live workers
    dead_letters: int = 0  # jobs that could never be applied, over all time
    detail: dict[str, int] = field(default_factory=dict)


class QueueFull(Exception):
    """The job queue stayed past its bound for the whole enqueue timeout."""


class Unavailable(Exception):
    """The engine's storage did not answer (Redis down, a dropped connection): try
    again later; nothing about the job itself is wrong."""


class LeaseLost(Exception):
    """Another worker consumes this shard now; what this one was doing is redone there."""


# -- gateway side (asyncio) --------------------------------------------------------------
class ReplayCursor(Protocol):
    """A resumed join's replay, read a page at a time as the client drains it.

    Pages hold consecutive events of the room in stream order, ending at the join's
    `last_id`. `broken` turns True when the history lost entries the replay had not
    sent yet (trimmed between two pages): the replay then ends early."""

    room: str

    async def next_page(self) -> list[tuple[IdKey, bytes]]: ...

    @property
    def broken(self) -> bool: ...


class LogSink(Protocol):
    """What a gateway does with what its reader reads."""

    def on_entry(self, shard: int, entry: LogEntry) -> None: ...

    async def on_gap(self, shard: int) -> None: ...

    def on_flush(self) -> None: ...


class LogReader(Protocol):
    """One gateway's reader of every shard.

    Guarantees: entries of one shard reach `on_entry` in log order, each once per
    run; `on_flush` follows each run of entries before the reader yields; a gap
    (entries this gateway can never read: trimmed, or the log reset) is reported
    through `on_gap` before the entries after it; a restarted gateway with the same
    instance id resumes where its previous run stopped."""

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None:
        """Take this gateway's position in the log: from here on nothing is missed."""
        ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    async def close(self, *, forget: bool) -> None:
        """Stop reading; `forget` drops the cursor too (a clean shutdown)."""
        ...

    async def lag_seconds(self) -> dict[int, float]: ...


class EventLog(Protocol):
    """Guarantees: events of one `append` call land in the given order; an event
    whose key was appended within the dedupe window is not appended again (its first
    id is returned); ids increase within a shard and within a room; the room's
    history gets the same id."""

    async def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]: ...

    async def append_control(self, shard: int, payload: bytes, marker: str) -> None: ...

    def reader(self, instance_id: str, sink: LogSink) -> LogReader: ...

    async def janitor(self, instance_id: str, idle_seconds: float) -> list[str]:
        """Remove the cursors of gateways gone for `idle_seconds`; returns their names."""
        ...


class History(Protocol):
    async def join_point(self, room: str, since: str | None) -> JoinPoint:
        """The room's latest id and, with `since`, whether every event after it is
        still held (`recovered`) and the replay of those events."""
        ...


class Presence(Protocol):
    """Room presence and connection slots over all gateways. The entries of a gateway
    that dies without saying goodbye free themselves within 3 heartbeat intervals."""

    async def claim_slot(self, user_id: int, connection_id: str, limit: int) -> bool: ...

    async def release_slot(self, user_id: int, connection_id: str) -> None: ...

    async def free_previous_run(self) -> None:
        """Free the slots this gateway instance held before it restarted."""
        ...

    async def enter(self, room: str, user_id: int, username: str, connection_id: str) -> bool:
        """True when this is the user's first connection in the room (over all gateways)."""
        ...

    async def leave(self, room: str, user_id: int, connection_id: str) -> bool:
        """True when this was the user's last connection in the room."""
        ...

    async def members(self, room: str) -> list[RoomMember]: ...

    async def size(self, room: str) -> int:
        """Users present in the room over all gateways (one round trip, no list)."""
        ...

    async def refresh(self, slots: Iterable[tuple[int, str]],
                      memberships: Iterable[tuple[str, int, str]]) -> None:
        """Keep this gateway's live slots and memberships from expiring."""
        ...

    async def sweep(self) -> list[Departure]:
        """Users whose every connection in a room expired (their gateway died), removed
        now, and earlier departures not yet announced. One gateway sweeps at a time;
        a departure comes back until `announced` is called for it."""
        ...

    async def announced(self, departure: Departure) -> None:
        """The departure's `user_left` is appended: the sweep forgets it."""
        ...


class Access(Protocol):
    async def allowed(self, user_id: int, room: str) -> bool: ...


class JobQueue(Protocol):
    """Guarantees: the jobs of one `enqueue` call, and of successive calls from one
    producer, are applied in that order per shard of their rooms; a job is accepted
    only while the queue is under its bound, else the call waits up to its timeout and
    then raises QueueFull (nothing is dropped)."""

    async def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None:
        """`timeout`: how long to wait for room (default PUBLISH_QUEUE_TIMEOUT)."""
        ...

    async def stats(self) -> QueueStats: ...


# -- worker and backend side (threads) ---------------------------------------------------
class EventWriter(Protocol):
    """The synchronous `EventLog.append` for workers and in-job publishing."""

    def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]: ...

    def append_control(self, shard: int, payload: bytes, marker: str) -> None: ...


class AccessStore(Protocol):
    def grant(self, user_id: int, room: str) -> None: ...

    def revoke(self, user_id: int, room: str) -> None:
        """Also tells every gateway, so connections of the user leave the room."""
        ...

    def link(self, room: str, project_room: str) -> None: ...

    def granted(self, user_id: int, room: str) -> bool:
        """Whether `user_id` may join `room` now (what a gateway would decide)."""
        ...


class SyncJobQueue(Protocol):
    def enqueue(self, jobs: Sequence[Job], *, timeout: float | None = None) -> None: ...


class JobSource(Protocol):
    """One shard's queue as its single consumer sees it.

    Guarantees: while `hold()` is true, no other consumer completes this shard's jobs
    (a lease with fencing: a consumer that lost it cannot complete anything); `fetch`
    returns the jobs a previous consumer took and never completed first, then new ones,
    in queue order; `complete` appends the events and removes the jobs in one atomic
    step, so a crash never appends twice nor loses a job."""

    shard: int

    def hold(self) -> bool:
        """Take or renew the lease; False when another consumer holds it."""
        ...

    def release(self) -> None: ...

    def fetch(self, count: int, block_ms: int) -> list[FetchedJob]: ...

    def complete(self, refs: Sequence[str], events: Sequence[PendingEvent]
                 ) -> list[AppendResult]: ...

    def dead_letter(self, fetched: FetchedJob, reason: str, *, remove: bool = True) -> None:
        """Set aside a job (`remove`), or one event of it (the job stays), with the reason."""
        ...


OnLeft = Callable[[str, RoomMember], Awaitable[None]]
