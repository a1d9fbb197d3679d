"""The bench's WebSocket clients: connect, join one room, record every bench
event's sequence number and latency; optionally resume after a server close.

Per client and room, `seen[seq]` counts receipts (capped at 255): lost and
duplicated (client, seq) pairs come from it exactly, whatever the order.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from roomcast.bench.publisher import EVENT_TYPE
from roomcast.bench.stats import Histogram, Timeline, bucket_of
from roomcast.bench.wsclient import WSClient, connect

MAX_ERRORS_KEPT = 20
RESUME_CODES = frozenset({1006, 1011, 1012, 1013})  # abnormal, error, restart, slow consumer


class Recorder:
    """Latency of every bench event received, over the run and per second, and split
    in two legs at the stream append (the event id's millisecond timestamp, Redis's
    clock): enqueue -> append (publisher, job queue, worker) and append -> receipt
    (gateway read, fan-out, socket, load generator). The legs have 1 ms resolution.

    A receipt only appends its time to an array (and a row per event, when the event
    changes); the histograms are filled from them when read (after the run), or when
    FOLD_AT receipts pile up. Filling them per receipt took a quarter of the load
    generator's CPU, which on a shared machine is taken from the servers it
    measures. For the same reason the append time is parsed once per event, not once
    per member that receives it."""

    FOLD_AT = 4_000_000  # receipts kept before folding (8 bytes each)

    def __init__(self) -> None:
        self.restart(time.time())

    def restart(self, origin: float) -> None:
        self._hist = Histogram()
        self._to_append = Histogram()
        self._from_append = Histogram()
        self._timeline = Timeline(origin)
        self._received = array("d")
        # One row per run of receipts of the same event (every member of a room gets
        # it in a row): where the run starts in _received, the event's enqueue time
        # and its append time (NaN when the event carried no id).
        self._starts = array("q")
        self._enqueued = array("d")
        self._appended = array("d")
        self._id: str | None = None
        self._t_enqueue = math.nan
        self.last_at = 0.0  # receipt time of the latest bench event

    def record(self, now: float, t_enqueue: float, entry_id: str | None) -> None:
        self.last_at = now
        received = self._received
        if entry_id != self._id or t_enqueue != self._t_enqueue:  # another event
            self._id, self._t_enqueue = entry_id, t_enqueue
            self._starts.append(len(received))
            self._enqueued.append(t_enqueue)
            # the id names the millisecond of the append: its middle is the unbiased
            # estimate (the enqueue -> append leg is +-0.5 ms at best)
            self._appended.append((int(entry_id[:entry_id.find("-")]) + 0.5) / 1000.0
                                  if entry_id else math.nan)
        received.append(now)
        if len(received) >= self.FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        hist, timeline = self._hist, self._timeline
        to_append, from_append = self._to_append, self._from_append
        received, starts = self._received, self._starts
        ends = [*starts[1:], len(received)] if starts else []
        for start, end, enqueued, appended in zip(starts, ends, self._enqueued,
                                                  self._appended, strict=True):
            has_append = appended == appended  # not NaN
            to_leg = appended - enqueued
            to_index = bucket_of(to_leg) if has_append else 0
            for now in received[start:end]:  # per receipt, as the latency is
                latency_s = now - enqueued
                index = bucket_of(latency_s)
                hist.add(index, latency_s)
                timeline.add(now, index, latency_s)
                if has_append:
                    to_append.add(to_index, to_leg)
                    from_append.add(bucket_of(now - appended), now - appended)
        self._received, self._starts = array("d"), array("q")
        self._enqueued, self._appended = array("d"), array("d")
        self._id, self._t_enqueue = None, math.nan  # the next receipt starts a row

    @property
    def hist(self) -> Histogram:
        self._fold()
        return self._hist

    @property
    def to_append(self) -> Histogram:
        self._fold()
        return self._to_append

    @property
    def from_append(self) -> Histogram:
        self._fold()
        return self._from_append

    @property
    def timeline(self) -> Timeline:
        self._fold()
        return self._timeline


@dataclass
class ClientState:
    """What one bench client has seen; survives reconnects."""

    idx: int
    user_id: int
    room: str
    url: str
    gateway: int  # index into the gateway URLs
    seen: bytearray = field(default_factory=bytearray)
    received: int = 0
    dup: int = 0
    out_of_order: int = 0
    max_seq: int = -1
    warmups: int = 0
    last_id: str | None = None
    joined: bool = False
    connection: BenchConnection | None = None
    reconnects: int = 0

    def count(self, seq: int) -> None:
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), 4096)))
        c = seen[seq]
        if c:
            self.dup += 1
            if c < 255:
                seen[seq] = c + 1
        else:
            seen[seq] = 1
            if seq < self.max_seq:
                self.out_of_order += 1
        if seq > self.max_seq:
            self.max_seq = seq
        self.received += 1

    def lost(self, published: int) -> int:
        if published <= 0:
            return 0
        if len(self.seen) < published:
            self.seen.extend(bytes(published - len(self.seen)))
        return self.seen.count(0, 0, published)

    def beyond(self, published: int) -> int:
        """Distinct seqs at or past the published count: another publisher (a setup bug)."""
        return max(0, len(self.seen) - published - self.seen.count(0, published))


class BenchConnection(WSClient):
    def __init__(self, state: ClientState, fleet: Fleet, since: str | None) -> None:
        super().__init__()
        self.state = state
        self.fleet = fleet
        self.since = since
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def join(self) -> None:
        frame: dict[str, Any] = {"type": "join_room", "room": self.state.room}
        if self.since is not None:
            frame["data"] = {"since": self.since}
        self.send_text(orjson.dumps(frame))

    def on_text(self, payload: bytes, now: float) -> None:
        fleet = self.fleet
        if now > fleet.deadline:
            self.pause()  # past the run's bound: what arrives now is not counted
            return
        message = orjson.loads(payload)
        kind = message.get("type")
        state = self.state
        if kind == EVENT_TYPE and message.get("room") == state.room:
            data = message["data"]
            seq = data.get("seq")
            if type(seq) is not int:
                return
            entry_id = message.get("id")
            state.last_id = entry_id
            if seq < 0:
                state.warmups += 1
                return
            state.count(seq)
            fleet.recorder.record(now, data["t_enqueue"], entry_id)
        elif kind == "connected":
            self.join()
        elif kind == "room_joined" and message.get("room") == state.room:
            state.joined = True
            if state.last_id is None:  # resume point for a client that sees no event yet
                state.last_id = (message.get("data") or {}).get("last_id")
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error":
            self.fleet.error(f"client {state.idx}: {payload[:200].decode(errors='replace')}")
            code = (message.get("data") or {}).get("code")
            if code == 4403 and message.get("room") == state.room and self.fleet.retry_forbidden:
                # access granted through the worker may not have landed yet
                asyncio.get_running_loop().call_later(0.2, self.join)
        else:
            self.fleet.other_frames += 1

    def on_close(self, code: int | None) -> None:
        self.fleet.on_close(self, code)


class Fleet:
    """All clients of one run."""

    def __init__(self, states: list[ClientState], *, resume: bool,
                 retry_forbidden: bool = False) -> None:
        self.states = states
        self.resume = resume
        self.retry_forbidden = retry_forbidden
        self.recorder = Recorder()
        self.errors: list[str] = []
        self.n_errors = 0
        self.closes_by_code: Counter[str] = Counter()
        self.other_frames = 0
        self.stopping = False
        self.deadline = math.inf  # wall clock. Checked per received message, so the
        # bound holds even when a saturated event loop wakes the drain coroutine late
        self._tasks: set[asyncio.Task[None]] = set()

    def error(self, text: str) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text[:300])

    # -- connecting ----------------------------------------------------------------------
    async def open(self, state: ClientState, timeout: float, since: str | None = None) -> bool:
        conn: BenchConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await connect(lambda: BenchConnection(state, self, since), state.url,
                                     timeout)
                await conn.ready
        except Exception as exc:  # any failure to connect is reported, not fatal
            self.error(f"client {state.idx}: connect: {type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            return False
        state.connection = conn
        return True

    async def connect_all(self, batch: int, deadline_s: float, *, steady: bool = False,
                          per_connection_s: float = 20.0) -> float:
        """Open every client until all are in or the deadline passes: in waves of `batch`
        (each waits for its slowest connect), or, `steady`, with `batch` connects kept
        in flight, each replaced as it ends."""
        t0 = time.monotonic()
        queue = iter(self.states)  # shared: each state is taken by one opener
        late: list[int] = []

        async def opener(states: Iterable[ClientState]) -> None:
            for state in states:
                left = deadline_s - (time.monotonic() - t0)
                if left <= 0:
                    late.append(state.idx)
                    return
                await self.open(state, min(left, per_connection_s))

        if steady:
            await asyncio.gather(*(opener(queue) for _ in range(max(1, batch))))
        else:
            for start in range(0, len(self.states), batch):
                await asyncio.gather(*(opener([s]) for s in self.states[start:start + batch]))
                if late:
                    break
        if late:
            self.error(f"connect deadline ({deadline_s:.0f} s) passed at client {min(late)}")
        return time.monotonic() - t0

    @property
    def connected(self) -> list[ClientState]:
        return [s for s in self.states if s.connection is not None]

    # -- closes and resume ---------------------------------------------------------------
    def on_close(self, conn: BenchConnection, code: int | None) -> None:
        if not conn.ready.done():  # closed before room_joined: fail the open() at once
            conn.ready.set_exception(ConnectionError(f"closed with {code} before joining"))
            conn.ready.exception()  # retrieved here: open() may already have given up
        if self.stopping:
            return
        self.closes_by_code[str(code if code is not None else 1006)] += 1
        state = conn.state
        if state.connection is not conn:
            return  # a failed attempt; whoever made it retries
        state.connection = None
        if self.resume and (code is None or code in RESUME_CODES):
            task = asyncio.get_running_loop().create_task(self._resume(state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resume(self, state: ClientState) -> None:
        delay = 0.1
        while not self.stopping:
            await asyncio.sleep(delay)
            if await self.open(state, 10.0, since=state.last_id or "0-0"):
                state.reconnects += 1
                return
            delay = min(delay * 2, 2.0)

    def freeze(self) -> None:
        """End of measurement: stop reading every socket and ignore closes from now on."""
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        for state in self.states:
            if state.connection is not None:
                state.connection.pause()

    async def close_all(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        for state in self.states:
            if state.connection is not None:
                state.connection.close()
        await asyncio.sleep(0.2)  # let the close frames go out

    # -- totals --------------------------------------------------------------------------
    def received(self) -> int:
        return sum(s.received for s in self.states)
