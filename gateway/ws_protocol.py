"""uvicorn's websockets-sansio protocol, plus two capabilities ASGI lacks.

- Direct frame writes (`roomcast.frame_writer`). ASGI sends one message at a
  time through an awaited call per recipient. A room event is instead encoded
  once as a complete WebSocket frame, and the same bytes are written straight
  to each member's transport while it is writable; a lagging client's frames
  are joined into one write.
- Force-close (`roomcast.force_close`). An ASGI `websocket.close` waits, like
  every send, until the transport is writable again, which never happens for a
  client that does not read. This writes the close frame behind whatever is
  buffered (the client sees every earlier frame, then the code) and aborts the
  socket if the peer does not finish the closing handshake in time.

Also: a handshake the parser refuses (request line or headers over its limit)
is answered with the parser's 414/431 at once; uvicorn alone would only answer
a complete request, and the client would hang.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

FORCE_CLOSE_EXTENSION = "roomcast.force_close"
FRAME_WRITER_EXTENSION = "roomcast.frame_writer"
ABORT_AFTER_SECONDS = 5.0


class FrameWriter:
    """Writes pre-encoded server frames to one connection's transport."""

    def __init__(self, protocol: RoomcastWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        p = self._protocol
        return not (p.close_sent or p.disconnected or p.transport.is_closing())

    @property
    def writable(self) -> bool:
        """Open and under the transport's high-water mark."""
        return self.open and self._protocol.writable.is_set()

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()

    def write(self, frames: bytes) -> None:
        if self.open:
            self._protocol.transport.write(frames)


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event):  # type: ignore[no-untyped-def]
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FORCE_CLOSE_EXTENSION] = self.force_close
            scope["extensions"][FRAME_WRITER_EXTENSION] = FrameWriter(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def force_close(self, code: int, reason: str) -> None:
        if self.close_sent or self.transport is None or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_timer = self.loop.call_later(ABORT_AFTER_SECONDS, self.transport.abort)
