"""EventLog, its reader, and History over the in-process store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from shared.codec import event_frame, parse_stream_id
from shared.engines.memory.store import HistoryEntry, MemoryStore
from shared.engines.recovery import recoverable
from shared.engines.roles import (
    ZERO_ID,
    AppendResult,
    IdKey,
    JoinPoint,
    LogReader,
    LogSink,
    PendingEvent,
)

READ_COUNT = 500
YIELD_EVERY = 64  # as the Redis reader: let the writers drain within a long run
REPLAY_PAGE = 64


class MemoryEventWriter:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]:
        return self._store.append(events)

    def append_control(self, shard: int, payload: bytes, marker: str) -> None:
        self._store.append_control(shard, payload, marker)


class MemoryLogReader:
    """Reads every shard of the store in order. Appends wake it from any thread."""

    def __init__(self, store: MemoryStore, sink: LogSink) -> None:
        self._store = store
        self._sink = sink
        self._positions: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._unlisten: list[Callable[[], None]] = []
        self._stopping = False
        self._healthy = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:  # called by appends from any thread
            loop.call_soon_threadsafe(self._wakeup.set)

        self._unlisten.append(self._store.listen(wake))
        for shard in range(len(self._store.shards)):
            self._positions[shard] = self._store.shard_position(shard)

    async def run(self) -> None:
        self._healthy = True
        while not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            for shard in self._positions:
                await self._read(shard)

    async def _read(self, shard: int) -> None:
        while True:
            entries = self._store.read_shard(shard, self._positions[shard], READ_COUNT)
            if not entries:
                return
            if entries[0].seq != self._positions[shard] + 1:
                await self._sink.on_gap(shard)  # trimmed before we read it
            for n, entry in enumerate(entries, 1):
                self._sink.on_entry(shard, entry)
                self._positions[shard] = entry.seq
                if n % YIELD_EVERY == 0:
                    self._sink.on_flush()
                    await asyncio.sleep(0)  # let the writers drain between chunks
            self._sink.on_flush()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def close(self, *, forget: bool) -> None:
        self.stop()
        for undo in self._unlisten:
            undo()
        self._unlisten.clear()

    async def lag_seconds(self) -> dict[int, float]:
        lag = {}
        for shard, position in self._positions.items():
            newest = self._store.shard_position(shard)
            behind = self._store.appended_at(shard, position + 1) if newest > position else None
            lag[shard] = max(0.0, time.time() - behind) if behind is not None else 0.0
        return lag


class MemoryEventLog:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]:
        return self._store.append(events)

    async def append_control(self, shard: int, payload: bytes, marker: str) -> None:
        self._store.append_control(shard, payload, marker)

    def reader(self, instance_id: str, sink: LogSink) -> LogReader:
        return MemoryLogReader(self._store, sink)

    async def janitor(self, instance_id: str, idle_seconds: float) -> list[str]:
        return []  # one gateway, one process: nothing left behind by others


class MemoryReplayCursor:
    """Pages of a snapshot of the room's history: nothing can be trimmed under it."""

    def __init__(self, room: str, entries: list[HistoryEntry]) -> None:
        self.room = room
        self._entries = entries
        self._at = 0

    @property
    def broken(self) -> bool:
        return False

    async def next_page(self) -> list[tuple[IdKey, bytes]]:
        page = self._entries[self._at:self._at + REPLAY_PAGE]
        self._at += len(page)
        return [(e.key, event_frame(e.encoded, e.id)) for e in page]


class MemoryHistory:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def join_point(self, room: str, since: str | None) -> JoinPoint:
        snapshot = self._store.room_snapshot(room)
        if snapshot is None:
            point = JoinPoint(last_id=ZERO_ID)
            if since is not None:
                point.recovered = recoverable(since, None, None, None)
            return point
        point = JoinPoint(last_id=snapshot.last or ZERO_ID)
        if since is None:
            return point
        oldest = snapshot.entries[0].id if snapshot.entries else None
        point.recovered = recoverable(since, snapshot.first, snapshot.last, oldest)
        wanted = parse_stream_id(since)
        if not point.recovered or wanted is None:
            return point
        replay = [e for e in snapshot.entries if e.key > wanted]
        point.replayed = len(replay)
        if replay:
            point.replay = MemoryReplayCursor(room, replay)
        return point
