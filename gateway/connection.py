"""One client connection: its socket, a bounded send queue and the writer task
that drains it. Nothing here waits on another client: the fan-out path only
calls `push_event`, which never blocks and closes this one connection with
1013 when its queue is full.

The bound counts live frames and direct replies. The replay of a resumed join
is queued as one item: it is already in memory, bounded by ROOM_HISTORY_SIZE,
and counting its frames would close a client for asking to resume a history
longer than WS_SEND_QUEUE_MAX. A client that does not read its replay is still
closed with 1013 once the live events queued behind it pass the bound."""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket

from gateway.auth import Principal
from gateway.close_codes import CloseCode
from gateway.ws_protocol import FORCE_CLOSE_EXTENSION

IdKey = tuple[int, int]


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


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
        # A frame, or the frames of one replay (a single item: see the module doc).
        self._queue: asyncio.Queue[str | list[str]] = asyncio.Queue(maxsize=queue_max)
        # Highest id handed to this client per room: the filter that makes
        # replay + live events arrive once each, in stream order.
        self._last_sent: dict[str, IdKey] = {}
        # Live events held back while a join is reading the room's history.
        self._held: dict[str, list[tuple[IdKey, str]]] = {}
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
        """Ask for a close; safe to call from the fan-out path, returns at once."""
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self.state = State.CLOSING
        self.close_code, self.close_reason = code, reason
        force = self.websocket.scope.get("extensions", {}).get(FORCE_CLOSE_EXTENSION)
        if force is not None:
            force(int(code), reason)
        else:  # not under our uvicorn protocol (e.g. a test client): a plain close
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
        self._put(frame)

    def _put(self, item: str | list[str]) -> None:
        if self.state is not State.OPEN:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close(CloseCode.TRY_AGAIN_LATER, "Slow consumer")

    def push_event(self, room: str, id_key: IdKey, frame: str) -> None:
        if self.state is not State.OPEN:
            return
        held = self._held.get(room)
        if held is not None:
            held.append((id_key, frame))
            return
        if id_key <= self._last_sent.get(room, (0, 0)):
            return  # already replayed, or older than the join point
        self._last_sent[room] = id_key
        self.send(frame)

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
            self._put(frames)
        for id_key, frame in held:
            self.push_event(room, id_key, frame)

    def forget(self, room: str) -> None:
        self._held.pop(room, None)
        self._last_sent.pop(room, None)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _write_loop(self) -> None:
        send = self.websocket.send
        queue = self._queue
        try:
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    message: Any = {"type": "websocket.send", "text": item}
                    await send(message)
                    continue
                for frame in item:  # a replay, written in order before later items
                    await send({"type": "websocket.send", "text": frame})
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket went away; the receive loop sees the disconnect
            self.state = State.CLOSING
