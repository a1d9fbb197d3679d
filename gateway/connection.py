"""One client connection: its socket, a bounded send queue and the writer task
that drains it. Nothing here waits on another client: the fan-out path only
calls `push_event`, which never blocks and closes this one connection with
1013 when its queue is full.

Frames are complete WebSocket frames (`shared.codec.ws_text_frame`): a room
event's frame is built once per gateway and the same bytes go to every member.
While the queue is empty and the socket is under its high-water mark a frame is
written at once; otherwise it waits in the queue and the writer task joins
everything queued into one write when the socket drains.

The bound counts live frames and direct replies. The replay of a resumed join
is queued as one item: it is already in memory, bounded by ROOM_HISTORY_SIZE,
and counting its frames would close a client for asking to resume a history
longer than WS_SEND_QUEUE_MAX. A client that does not read its replay is still
closed with 1013 once the live events queued behind it pass the bound."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket

from gateway.auth import Principal
from gateway.close_codes import CloseCode
from gateway.ws_protocol import FORCE_CLOSE_EXTENSION, FRAME_WRITER_EXTENSION, FrameWriter
from shared.codec import ws_frame_payload, ws_text_frame

IdKey = tuple[int, int]
MAX_BATCH_ITEMS = 256  # frames joined into one write when a client lags


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _CloseAfterFlush:
    """Queue marker: write everything before me, then close."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Replay:
    """Queue item: the frames of one resumed join, encoded and written in chunks as
    the socket drains, so a long replay never sits in memory twice."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames


_Item = bytes | _Replay | _CloseAfterFlush
REPLAY_CHUNK = 64  # replay frames per write


class Connection:
    def __init__(self, websocket: WebSocket, principal: Principal, instance_id: str,
                 queue_max: int) -> None:
        self.websocket = websocket
        self.principal = principal
        self.id = f"{instance_id}:{uuid.uuid4().hex[:16]}"
        self.state = State.CONNECTING
        self.opened_at = time.monotonic()
        self.rooms: set[str] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        extensions = websocket.scope.get("extensions") or {}
        self._direct: FrameWriter | None = extensions.get(FRAME_WRITER_EXTENSION)
        # A frame, a replay (a single item: see the module doc), or the close marker
        # of a flushing close.
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_max)
        # Highest id handed to this client per room: the filter that makes
        # replay + live events arrive once each, in stream order.
        self._last_sent: dict[str, IdKey] = {}
        # Live events held back while a join is reading the room's history.
        self._held: dict[str, list[tuple[IdKey, bytes]]] = {}
        # Live frames of the current read batch, written in one go by `flush_batch`.
        self._batch: list[bytes] = []
        self._writer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.closed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        self.state = State.OPEN
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

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
        self._send_close(code, reason)

    async def close_after_flush(self, code: int, reason: str, timeout: float) -> None:
        """Close once every queued frame is written (replies before an abuse close),
        or after `timeout` when the client does not read them."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        if self._writer is None or self._writer.done():
            self.close(code, reason)
            return
        self._begin_close(code, reason)
        try:
            self._queue.put_nowait(_CloseAfterFlush(code, reason))
        except asyncio.QueueFull:
            self._send_close(code, reason)
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)
        self._send_close(code, reason)

    def _begin_close(self, code: int, reason: str) -> None:
        self.state = State.CLOSING
        self.close_code, self.close_reason = code, reason

    def _send_close(self, code: int, reason: str) -> None:
        force = self.websocket.scope.get("extensions", {}).get(FORCE_CLOSE_EXTENSION)
        if force is not None:
            force(int(code), reason)
        else:  # not under our uvicorn protocol: a plain ASGI close
            asyncio.get_running_loop().create_task(self._plain_close(code, reason))
        if self._writer is not None:
            self._writer.cancel()
        self.closed.set()

    async def _plain_close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.websocket.close(code, reason), timeout=5)
        except Exception:  # the peer is gone already; nothing left to tell it
            pass

    def mark_closed(self, code: int | None) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self.close_code is None:
            self.close_code = code
        self.state = State.CLOSED
        if self._writer is not None:
            self._writer.cancel()
        self.closed.set()

    # -- outgoing -------------------------------------------------------------------------
    def send(self, frame: str) -> None:
        """Queue a direct reply (kept in order with events)."""
        self._put(ws_text_frame(frame.encode()))

    def _put(self, item: bytes | _Replay) -> None:
        if self.state is not State.OPEN:
            return
        direct = self._direct
        if (isinstance(item, bytes) and direct is not None and self._queue.empty()
                and direct.writable):
            direct.write(item)
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, "Slow consumer")

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
        """Write the frames gathered from one read: one write while the socket keeps
        up; frame by frame into the bounded queue when it lags."""
        frames, self._batch = self._batch, []
        if not frames or self.state is not State.OPEN:
            return
        direct = self._direct
        if direct is not None and self._queue.empty() and direct.writable:
            direct.write(frames[0] if len(frames) == 1 else b"".join(frames))
            return
        for frame in frames:  # each counts against WS_SEND_QUEUE_MAX
            self._put(frame)

    def hold(self, room: str) -> None:
        """Start buffering live events of `room` (a join is reading history)."""
        self._held.setdefault(room, [])

    def release(self, room: str, baseline: IdKey, replay: list[tuple[IdKey, str]]) -> None:
        """Send the replay, then the held live events newer than it, then go live."""
        held = self._held.pop(room, [])
        last = max(self._last_sent.get(room, (0, 0)), baseline)
        frames: list[str] = []
        for id_key, frame in replay:
            if id_key > last:
                frames.append(frame)
                last = id_key
        self._last_sent[room] = last
        if frames:
            self._put(_Replay(frames))
        for id_key, wire in held:
            self.push_event(room, id_key, wire)
        self.flush_batch()

    def forget(self, room: str) -> None:
        self._held.pop(room, None)
        self._last_sent.pop(room, None)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # -- writer ---------------------------------------------------------------------------
    def _take_batch(self, first: _Item) -> tuple[list[bytes], _Replay | _CloseAfterFlush | None]:
        """`first` and the frames queued right behind it, up to a replay or close marker
        (returned apart: it is handled after the frames before it are written)."""
        parts: list[bytes] = []
        item: _Item = first
        for _ in range(MAX_BATCH_ITEMS):
            if not isinstance(item, bytes):
                return parts, item
            parts.append(item)
            if self._queue.empty():
                break
            item = self._queue.get_nowait()
        return parts, None

    async def _write_loop(self) -> None:
        try:
            if self._direct is None:
                await self._write_loop_asgi()
                return
            direct = self._direct
            while True:
                parts, marker = self._take_batch(await self._queue.get())
                if parts:
                    await direct.wait_writable()
                    direct.write(b"".join(parts))
                if isinstance(marker, _Replay):
                    for start in range(0, len(marker.frames), REPLAY_CHUNK):
                        chunk = marker.frames[start:start + REPLAY_CHUNK]
                        await direct.wait_writable()
                        direct.write(b"".join(ws_text_frame(f.encode()) for f in chunk))
                if isinstance(marker, _CloseAfterFlush) or not direct.open:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the receive loop sees the disconnect
            self.state = State.CLOSING

    async def _write_loop_asgi(self) -> None:
        """The same through plain ASGI sends, for servers without our protocol."""
        send = self.websocket.send
        while True:
            parts, marker = self._take_batch(await self._queue.get())
            texts = [ws_frame_payload(frame) for frame in parts]
            if isinstance(marker, _Replay):
                texts.extend(marker.frames)
            for text in texts:
                message: Any = {"type": "websocket.send", "text": text}
                await send(message)
            if isinstance(marker, _CloseAfterFlush):
                return
