"""Jobs as stream-entry fields (the Redis engine's inbox), and how a producer's
jobs are split by shard: jobs of one shard keep their order, and an event job is
cut into jobs of one shard each (a shard is consumed by one worker at a time).

An access job goes to the shard of the room its check reads first: a grant or a
revocation to its room's, a link to its project room's. So `link_room(channel,
project)` then `grant_access(user, project).wait()` from one producer returns only
once the link is in force too (same shard, same order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shared import keys
from shared.engines.roles import AccessJob, EventJob, Job, PendingEvent
from shared.rooms import shard_of

# Events per inbox entry: Lua's unpack limit is far above this, and one entry stays
# well under a megabyte with events at EVENT_MAX_BYTES.
MAX_EVENTS_PER_JOB = 500

_KIND = {"grant": b"g", "revoke": b"r", "link": b"l"}
_OP = {v: k for k, v in _KIND.items()}


def split_by_shard(jobs: Sequence[Job], shards: int) -> dict[int, list[Job]]:
    """Each shard's jobs in the producer's order; shards in order of first use."""
    out: dict[int, list[Job]] = {}
    for job in jobs:
        if isinstance(job, AccessJob):
            room = job.project_room if job.op == "link" else job.room
            out.setdefault(shard_of(room, shards), []).append(job)
            continue
        per_shard: dict[int, list[PendingEvent]] = {}
        for event in job.events:
            per_shard.setdefault(shard_of(event.room, shards), []).append(event)
        for shard, events in per_shard.items():
            for start in range(0, len(events), MAX_EVENTS_PER_JOB):
                out.setdefault(shard, []).append(
                    EventJob(tuple(events[start:start + MAX_EVENTS_PER_JOB])))
    return out


def job_args(jobs: Sequence[Job]) -> tuple[int, list[Any]]:
    """The number of jobs and their part of enqueue.lua's ARGV: per job the number of
    field/value pairs, then the pairs. Raises TypeError for a value Redis cannot take
    (a hand-made job with a None in it), before anything is sent."""
    args: list[Any] = []
    for job in jobs:
        fields = to_fields(job)
        for value in fields:
            if not isinstance(value, (bytes, str)):
                raise TypeError(f"a job field is {type(value).__name__}, not text: {job!r}"[:300])
        args += [len(fields) // 2, *fields]
    return len(jobs), args


def enqueue_args(bound: int, shard_jobs: Sequence[tuple[int, Sequence[Job]]]
                 ) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of enqueue.lua for these shards' jobs."""
    args: list[Any] = [bound]
    for _, jobs in shard_jobs:
        count, part = job_args(jobs)
        args += [count, *part]
    return [keys.inbox(shard) for shard, _ in shard_jobs], args


def to_fields(job: Job) -> list[bytes | str]:
    """Field/value pairs, flat: [name, value, name, value, ...]."""
    if isinstance(job, AccessJob):
        return [b"k", _KIND[job.op], b"u", str(job.user_id), b"room", job.room,
                b"p", job.project_room]
    fields: list[bytes | str] = [b"k", b"e"]
    for i, event in enumerate(job.events):
        fields += [f"m{i}", orjson.dumps([event.key, event.room]), f"e{i}", event.encoded]
    return fields


def from_fields(fields: dict[bytes, bytes]) -> Job:
    """Raises ValueError (or KeyError) for an entry that is no job of ours."""
    kind = fields[b"k"]
    if kind in _OP:
        return AccessJob(_OP[kind], fields[b"room"].decode(), int(fields[b"u"]),  # type: ignore[arg-type]
                         fields[b"p"].decode())
    if kind != b"e":
        raise ValueError(f"unknown job kind {kind[:20]!r}")
    events = []
    for i in range((len(fields) - 1) // 2):
        key, room = orjson.loads(fields[f"m{i}".encode()])
        events.append(PendingEvent(str(key), str(room), fields[f"e{i}".encode()]))
    return EventJob(tuple(events))
