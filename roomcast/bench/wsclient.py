"""The bench's WebSocket client, on picows (a Cython WebSocket library; the peer
harness's load generator in bench/ uses it too), so both systems are measured
with the same instrument.

One load-generator process reads every member of a room in turn, so its cost per
frame delays the receipt of the members read last: at 500 members the median one
waits for some 250 frames. The hand-written Python client this replaces spent
12.3 µs of CPU per frame where the peer's spent 9.5 µs (50,000 frames/s, same run),
which added about 0.7 ms to roomcast's median latency: the instrument's cost, not
the system's.

Subclasses implement the hooks `on_open`, `on_text(payload, now)` and
`on_close(code)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MAX_FRAME_BYTES = 16 * 1024 * 1024
C = TypeVar("C", bound="WSClient")


class WSClient(WSListener):  # type: ignore[misc]  # mypy sees picows as untyped
    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.close_code: int | None = None  # the server's, if it sent one
        self._paused = False
        self._fragments: list[bytes] = []  # a text message split over frames

    # -- hooks ---------------------------------------------------------------------------
    def on_open(self) -> None:
        """The upgrade succeeded."""

    def on_text(self, payload: bytes, now: float) -> None:
        """One complete text message, with its receipt time (time.time())."""

    def on_close(self, code: int | None) -> None:
        """The connection ended; `code` is the server's close code, if it sent one."""

    # -- actions -------------------------------------------------------------------------
    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, payload)

    def pause(self) -> None:
        """Stop reading: nothing more is counted, and the client costs no more CPU."""
        self._paused = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.underlying_transport.pause_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    # -- picows --------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.on_open()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self._paused:
            return
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            if frame.fin:
                self.on_text(frame.get_payload_as_bytes(), time.time())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
        elif kind is WSMsgType.CONTINUATION and self._fragments:
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload, self._fragments = b"".join(self._fragments), []
                self.on_text(payload, time.time())
        elif kind is WSMsgType.CLOSE:
            # read from the payload: our codes (4401, ...) are not members of WSCloseCode
            raw = frame.get_payload_as_bytes()
            self.close_code = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else None
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.on_close(self.close_code)


async def connect(factory: Callable[[], C], url: str, timeout: float) -> C:
    """Open `url` with a client made by `factory`; raises if the upgrade fails."""
    _, client = await ws_connect(factory, url, websocket_handshake_timeout=timeout,
                                 max_frame_size=MAX_FRAME_BYTES, proxy=None)
    assert isinstance(client, WSClient)
    return client
