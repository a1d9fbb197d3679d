"""One client connection: its frame sink, a bounded send queue, and the writer
task that drains the queue when the socket lags.

Order. Everything sent to one client (direct replies, room events, a resumed
join's replay) leaves in the order it was handed over. A frame is written at
once only when nothing is ahead of it: the queue is empty *and* no writer task
holds frames it took from the queue (it may be waiting for the socket to drain,
or paging a replay). Otherwise the frame joins the queue behind the others.
Writing whenever the queue merely looked empty let a live frame overtake frames
the writer held, and a client that drops ids it has passed lost the older event.

Bounds. Nothing here waits on another client: the fan-out path only calls
`push_event` / `flush_batch`, which never block. A connection is closed with
1013 (it may resume) when it has more than `queue_max` frames queued, or when
the bytes it holds (queued frames plus the sink's unsent buffer) would pass
`buffer_max_bytes`. A replay is one queue item that reads the room's history a
page at a time as the socket drains, so a long resume holds one page in memory,
not the whole history.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from gateway.auth import Principal
from gateway.close_codes import CloseCode
from gateway.sink import FrameSink, Offer, total_bytes
from shared.codec import direct_frame, ws_text_frame

IdKey = tuple[int, int]
MAX_BATCH_FRAMES = 256  # queued frames joined into one write when a client lags
SLOW_CONSUMER = "Slow consumer"
_WRITTEN, _OVER_LIMIT = Offer.WRITTEN, Offer.OVER_LIMIT  # globals: read once per member


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ReplayCursor(Protocol):
    """The events a resumed join replays, read a page at a time (see the engine's History role)."""

    room: str

    async def next_page(self) -> list[tuple[IdKey, bytes]]:
        """The next frames in stream order; empty when the replay is complete."""
        ...

    @property
    def broken(self) -> bool:
        """True when the history lost entries the replay still had to send."""
        ...


@dataclass(frozen=True, slots=True)
class SendLimits:
    queue_max: int  # WS_SEND_QUEUE_MAX: frames waiting in the queue
    buffer_max_bytes: int  # WS_SEND_BUFFER_MAX_BYTES: queued bytes + the sink's buffer


class _CloseAfterFlush:
    """Queue marker: write everything before me, then close."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Replay:
    """Queue item: a resumed join's replay, paged from the history as the socket drains."""

    __slots__ = ("cursor",)

    def __init__(self, cursor: ReplayCursor) -> None:
        self.cursor = cursor


_Item = bytes | _Replay | _CloseAfterFlush


class Connection:
    # tens of thousands per gateway: no per-instance __dict__
    __slots__ = (
        "_batch",
        "_expiry",
        "_flushed",
        "_held",
        "_last_sent",
        "_queue",
        "_queued_bytes",
        "_queued_frames",
        "_writer",
        "close_code",
        "close_reason",
        "id",
        "limits",
        "opened_at",
        "principal",
        "rooms",
        "sink",
        "state",
    )

    def __init__(self, sink: FrameSink, principal: Principal, connection_id: str,
                 limits: SendLimits) -> None:
        self.sink = sink
        self.principal = principal
        self.id = connection_id
        self.limits = limits
        self.state = State.CONNECTING
        self.opened_at = time.monotonic()
        self.rooms: set[str] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue: deque[_Item] | None = None  # made when first needed: 760 B each
        self._queued_frames = 0  # bytes items in the queue
        self._queued_bytes = 0
        # The task writing queued items, None when nothing is queued or in flight:
        # the one condition under which a frame may be written at once.
        self._writer: asyncio.Task[None] | None = None
        self._flushed: asyncio.Event | None = None  # set when a flushing close may go
        # Highest id handed to this client per room: the filter that makes
        # replay + live events arrive once each, in stream order.
        self._last_sent: dict[str, IdKey] = {}
        # Live events held back while a join is reading the room's history.
        self._held: dict[str, list[tuple[IdKey, bytes]]] = {}
        # Live frames of the current read, written in one go by `flush_batch`.
        self._batch: list[bytes] = []
        self._expiry: asyncio.TimerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        self.state = State.OPEN

    def schedule_expiry(self) -> None:
        """Close with 4401 when the token's `exp` passes (a refresh reschedules)."""
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, self.principal.expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self.close, CloseCode.UNAUTHORIZED, "Token expired")

    def close(self, code: int, reason: str = "") -> None:
        """Close now, dropping what is queued; safe to call from the fan-out path."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self._begin_close(code, reason)
        self._finish_close()

    async def close_after_flush(self, code: int, reason: str, timeout: float) -> None:
        """Close once every queued frame is written (replies before an abuse close),
        or after `timeout` when the client does not read them."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self._begin_close(code, reason)
        if self._writer is not None:
            self._flushed = asyncio.Event()
            self._queued().append(_CloseAfterFlush(code, reason))
            try:
                await asyncio.wait_for(self._flushed.wait(), timeout)
            except TimeoutError:
                pass
        self._finish_close()

    def _begin_close(self, code: int, reason: str) -> None:
        self.state = State.CLOSING
        self.close_code, self.close_reason = code, reason

    def _finish_close(self) -> None:
        self.sink.close(int(self.close_code or CloseCode.NORMAL), self.close_reason)
        self._drop_queue()

    def mark_closed(self, code: int | None) -> None:
        """The socket is gone (the receive loop saw the disconnect)."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self.close_code is None:
            self.close_code = code
        self.state = State.CLOSED
        self._drop_queue()

    def _queued(self) -> deque[_Item]:
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def _drop_queue(self) -> None:
        self._queue = None
        self._queued_frames = self._queued_bytes = 0
        self._held.clear()
        self._batch = []
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()

    def _overflow(self) -> None:
        self.close(CloseCode.TRY_AGAIN_LATER, SLOW_CONSUMER)

    # -- outgoing -------------------------------------------------------------------------
    def send(self, frame: str) -> None:
        """A direct reply, kept in order with the events around it."""
        if self.state is State.OPEN:
            self.flush_batch()  # the reply comes after the events handed over before it
            self._deliver([ws_text_frame(frame.encode())])

    def _deliver(self, frames: list[bytes]) -> None:
        """Write `frames` at once when nothing is ahead of them, else queue them."""
        size = total_bytes(frames)
        sink = self.sink
        if self._writer is None:
            offered = sink.offer(frames, size, self.limits.buffer_max_bytes)
            if offered is _WRITTEN:
                return
            if offered is _OVER_LIMIT:
                self._overflow()
                return
        if (self._queued_frames + len(frames) > self.limits.queue_max
                or self._queued_bytes + sink.buffered + size > self.limits.buffer_max_bytes):
            self._overflow()
            return
        self._queued().extend(frames)
        self._queued_frames += len(frames)
        self._queued_bytes += size
        self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push_event(self, room: str, id_key: IdKey, frame: bytes) -> bool:
        """A room event as a complete frame (the same bytes for every member), kept
        for `flush_batch`. Returns True when this call started a batch."""
        if self.state is not State.OPEN:
            return False
        held = self._held.get(room)
        if held is not None:
            held.append((id_key, frame))
            return False
        if id_key <= self._last_sent.get(room, (0, 0)):
            return False  # already replayed, or older than the join point
        self._last_sent[room] = id_key
        self._batch.append(frame)
        return len(self._batch) == 1

    def flush_batch(self) -> None:
        """Hand over the frames gathered from one read: one write while the socket
        keeps up, the queue when it lags."""
        if self._batch:
            frames, self._batch = self._batch, []
            if self.state is State.OPEN:
                self._deliver(frames)

    def hold(self, room: str) -> None:
        """Start buffering live events of `room` (a join is reading the history)."""
        self._held.setdefault(room, [])

    def release(self, room: str, baseline: IdKey, replay: ReplayCursor | None) -> None:
        """Queue the replay, then the held live events newer than `baseline` (the room's
        latest id when the join read the history: the replay ends there), then go live."""
        held = self._held.pop(room, [])
        if self.state is not State.OPEN:
            return
        self._last_sent[room] = max(self._last_sent.get(room, (0, 0)), baseline)
        if replay is not None:
            self.flush_batch()
            self._queued().append(_Replay(replay))
            self._start_writer()
        for id_key, frame in held:
            self.push_event(room, id_key, frame)
        self.flush_batch()

    def forget(self, room: str) -> None:
        self._held.pop(room, None)
        self._last_sent.pop(room, None)

    @property
    def queued(self) -> int:
        return self._queued_frames

    # -- writer ---------------------------------------------------------------------------
    def _take_frames(self) -> list[bytes]:
        """The frames at the head of the queue, up to a replay or close marker."""
        frames: list[bytes] = []
        queue = self._queue
        while queue and len(frames) < MAX_BATCH_FRAMES and isinstance(queue[0], bytes):
            frame = queue.popleft()
            assert isinstance(frame, bytes)
            frames.append(frame)
        self._queued_frames -= len(frames)
        self._queued_bytes -= total_bytes(frames)
        return frames

    async def _write_loop(self) -> None:
        sink = self.sink
        try:
            while self._queue:
                frames = self._take_frames()
                if frames:
                    await sink.wait_writable()
                    sink.write(frames)
                    continue
                item = self._queued().popleft()
                if isinstance(item, _Replay):
                    await self._write_replay(item.cursor)
                elif isinstance(item, _CloseAfterFlush):
                    if self._flushed is not None:
                        self._flushed.set()
                    return
                if not sink.open:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the receive loop sees the disconnect
            self.state = State.CLOSING
        finally:
            if asyncio.current_task() is self._writer:
                self._writer = None
                if not self._queue:
                    self._queue = None  # an idle connection holds no queue

    async def _write_replay(self, cursor: ReplayCursor) -> None:
        """Page by page, each written once the socket has drained the one before."""
        sink = self.sink
        limit = self.limits.buffer_max_bytes
        while True:
            await sink.wait_writable()
            page = await cursor.next_page()
            if not page:
                break
            frames = [frame for _, frame in page]
            if sink.buffered + total_bytes(frames) > limit:
                self._overflow()
                return
            sink.write(frames)
        if cursor.broken:  # trimmed while we paged: the client must refetch this room
            sink.write([ws_text_frame(direct_frame("resync_required", None,
                                                   room=cursor.room).encode())])

