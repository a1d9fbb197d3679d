"""The memory engine's storage: shard logs, room histories and the dedupe window,
in one process, behind one lock (appends come from worker threads and from the
gateway's event loop alike).

It mirrors what the Redis scripts keep, with the same rules: ids increase
(`ms-seq`, never repeating), each shard entry carries the shard's sequence
number, each history entry the room's event number `n`, histories are capped by
ROOM_HISTORY_SIZE and expire ROOM_HISTORY_TTL after their last event, and a key
seen within the dedupe window returns its first id instead of appending again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.codec import parse_stream_id
from shared.engines.roles import AppendResult, IdKey, LogEntry, PendingEvent
from shared.rooms import shard_of
from shared.settings import Settings

SHARD_LOG_MAXLEN = 50_000  # as the Redis engine's shard stream cap
DEDUPE_TTL_SECONDS = 86_400
META_TTL_FACTOR = 7  # the room's first/last/n outlive its history, as on Redis


@dataclass(slots=True)
class HistoryEntry:
    id: str
    key: IdKey
    n: int
    encoded: bytes


@dataclass(slots=True)
class RoomLog:
    entries: deque[HistoryEntry]
    first: str | None = None
    last: str | None = None
    n: int = 0
    history_expires: float = 0.0
    meta_expires: float = 0.0


@dataclass(slots=True)
class ShardLog:
    entries: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=SHARD_LOG_MAXLEN))
    seq: int = 0
    appended_at: dict[int, float] = field(default_factory=dict)  # seq -> time (lag)


class MemoryStore:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self._clock = clock
        self.shards = [ShardLog() for _ in range(settings.STREAM_SHARDS)]
        self._rooms: dict[str, RoomLog] = {}
        self._dedupe: dict[tuple[int, str], tuple[str, float]] = {}
        self._last_id: IdKey = (0, 0)
        self._listeners: list[Callable[[], None]] = []
        self._appends = 0

    # -- ids and listeners --------------------------------------------------------------
    def _next_id(self) -> str:
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last_id
        self._last_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last_id[0]}-{self._last_id[1]}"

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake` (from any thread) after every append; returns the undo."""
        with self.lock:
            self._listeners.append(wake)

        def stop() -> None:
            with self.lock:
                if wake in self._listeners:
                    self._listeners.remove(wake)
        return stop

    def _wake(self) -> None:
        for wake in list(self._listeners):
            wake()

    # -- appends --------------------------------------------------------------------------
    def append(self, events: Sequence[PendingEvent]) -> list[AppendResult]:
        with self.lock:
            now = self._clock()
            results = [self._append_one(event, now) for event in events]
            self._appends += 1
            if self._appends % 1000 == 0:
                self._prune(now)
        self._wake()
        return results

    def _append_one(self, event: PendingEvent, now: float) -> AppendResult:
        shard = shard_of(event.room, self.settings.STREAM_SHARDS)
        dedupe_key = (shard, event.key)
        seen = self._dedupe.get(dedupe_key)
        if seen is not None and seen[1] > now:
            return AppendResult(seen[0], False)
        entry_id = self._add_to_shard(shard, event.room, event.encoded, now)
        room = self._room(event.room, now)
        room.n += 1
        room.entries.append(HistoryEntry(entry_id, parse_stream_id(entry_id) or (0, 0), room.n,
                                         event.encoded))
        room.first = room.first or entry_id
        room.last = entry_id
        ttl = self.settings.ROOM_HISTORY_TTL
        room.history_expires, room.meta_expires = now + ttl, now + ttl * META_TTL_FACTOR
        self._dedupe[dedupe_key] = (entry_id, now + DEDUPE_TTL_SECONDS)
        return AppendResult(entry_id, True)

    def append_control(self, shard: int, payload: bytes, marker: str) -> None:
        with self.lock:
            self._add_to_shard(shard, marker, payload, self._clock())
        self._wake()

    def _add_to_shard(self, shard: int, room: str, encoded: bytes, now: float) -> str:
        log = self.shards[shard]
        entry_id = self._next_id()
        log.seq += 1
        log.entries.append(LogEntry(entry_id, room, log.seq, encoded,
                                    parse_stream_id(entry_id) or (0, 0)))
        log.appended_at[log.seq] = now
        if len(log.appended_at) > SHARD_LOG_MAXLEN:
            log.appended_at.pop(next(iter(log.appended_at)))
        return entry_id

    # -- rooms ----------------------------------------------------------------------------
    def _room(self, name: str, now: float) -> RoomLog:
        room = self._rooms.get(name)
        if room is None or (room.meta_expires <= now and room.last is not None):
            room = self._rooms[name] = RoomLog(deque(maxlen=self.settings.ROOM_HISTORY_SIZE))
        elif room.history_expires <= now:
            room.entries.clear()  # the history expired; its meta lives on a while
        return room

    def room_snapshot(self, name: str) -> RoomLog | None:
        """The room as of now (its entries copied: later appends do not change it)."""
        with self.lock:
            now = self._clock()
            room = self._rooms.get(name)
            if room is None:
                return None
            room = self._room(name, now)
            return RoomLog(deque(room.entries), room.first, room.last, room.n,
                           room.history_expires, room.meta_expires)

    def _prune(self, now: float) -> None:
        """Drop expired dedupe keys and rooms (amortised over appends)."""
        for key in [k for k, (_, expires) in self._dedupe.items() if expires <= now]:
            del self._dedupe[key]
        for name in [n for n, r in self._rooms.items() if r.meta_expires <= now]:
            del self._rooms[name]

    # -- reading --------------------------------------------------------------------------
    def read_shard(self, shard: int, after_seq: int, limit: int) -> list[LogEntry]:
        with self.lock:
            log = self.shards[shard]
            if not log.entries or log.seq <= after_seq:
                return []
            first_seq = log.entries[0].seq
            start = max(0, after_seq + 1 - first_seq)
            return [log.entries[i] for i in range(start, min(len(log.entries),
                                                             start + limit))]

    def shard_position(self, shard: int) -> int:
        with self.lock:
            return self.shards[shard].seq

    def appended_at(self, shard: int, seq: int) -> float | None:
        with self.lock:
            return self.shards[shard].appended_at.get(seq)
