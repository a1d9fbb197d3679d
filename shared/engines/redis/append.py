"""How a batch of events becomes calls of the append script (scripts/append.lua).

The script takes the events of one shard (one Cluster slot), so a batch is split
by shard, keeping each shard's events in their order; the calls are issued in
the order of their first event. The same builder serves the workers' writer,
the gateways' appends (presence events) and the job source, which adds the
inbox completion and its lease to the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared import keys
from shared.engines.roles import AppendResult, PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings

# Safety cap on each shard stream: readers normally sit at its tail.
SHARD_STREAM_MAXLEN = 50_000
DEDUPE_TTL_SECONDS = 86_400
# Events per script call: bounds the time one call holds Redis (a few ms).
MAX_EVENTS_PER_CALL = 500


@dataclass(frozen=True, slots=True)
class InboxCompletion:
    """The jobs an append completes, and the lease that entitles the caller to."""

    shard: int
    token: str
    ids: Sequence[str]


@dataclass(slots=True)
class AppendCall:
    keys: list[str]
    args: list[Any]
    positions: list[int]  # index in the caller's batch of each event of this call


def group_by_shard(events: Sequence[PendingEvent], shards: int) -> dict[int, list[int]]:
    """Positions of the events of each shard, in order; shards in order of first use."""
    groups: dict[int, list[int]] = {}
    for position, event in enumerate(events):
        groups.setdefault(shard_of(event.room, shards), []).append(position)
    return groups


def build_calls(settings: Settings, events: Sequence[PendingEvent],
                completion: InboxCompletion | None = None) -> list[AppendCall]:
    shards = settings.STREAM_SHARDS
    calls = []
    groups = group_by_shard(events, shards)
    if completion is not None and not groups:
        groups = {completion.shard: []}  # nothing to append: only complete the jobs
    for shard, positions in groups.items():
        chunks = [positions[i:i + MAX_EVENTS_PER_CALL]
                  for i in range(0, len(positions), MAX_EVENTS_PER_CALL)] or [[]]
        for n, chunk in enumerate(chunks):
            # every chunk is fenced by the lease; the jobs are completed with the last
            # chunk, once everything they carry is appended
            last = n == len(chunks) - 1
            calls.append(_call(settings, shard, [events[p] for p in chunk], chunk, completion,
                               complete=last))
    return calls


def _call(settings: Settings, shard: int, events: list[PendingEvent], positions: list[int],
          completion: InboxCompletion | None, *, complete: bool) -> AppendCall:
    shards = settings.STREAM_SHARDS
    call_keys = [keys.shard_stream(shard), keys.shard_seq(shard), keys.inbox(shard),
                 keys.inbox_lease(shard)]
    ids = list(completion.ids) if completion is not None and complete else []
    args: list[Any] = [SHARD_STREAM_MAXLEN, settings.ROOM_HISTORY_SIZE, settings.ROOM_HISTORY_TTL,
                       DEDUPE_TTL_SECONDS, completion.token if completion else "",
                       keys.inbox_group(), len(ids), *ids]
    for event in events:
        call_keys += [keys.dedupe(event.key, event.room, shards),
                      keys.room_history(event.room, shards), keys.room_meta(event.room, shards)]
        args += [event.encoded, event.room]
    return AppendCall(call_keys, args, positions)


def results(calls: list[AppendCall], replies: list[Any], count: int) -> list[AppendResult]:
    """The per-event results of `calls`, back in the caller's order."""
    out: list[AppendResult | None] = [None] * count
    for call, reply in zip(calls, replies, strict=True):
        for i, position in enumerate(call.positions):
            raw_id = reply[2 * i]
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            out[position] = AppendResult(entry_id, bool(int(reply[2 * i + 1])))
    return [r for r in out if r is not None]
