"""uvicorn's websockets-sansio protocol, plus one capability ASGI lacks: closing
a connection whose peer stopped reading.

An ASGI `websocket.close` waits, like every send, until the transport is
writable again, which never happens for a client that does not read. The
extension writes the close frame behind whatever is buffered (so the client
sees every earlier frame, then the close code) and aborts the socket if the
peer has not finished the closing handshake in time.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

FORCE_CLOSE_EXTENSION = "roomcast.force_close"
ABORT_AFTER_SECONDS = 5.0


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event):  # type: ignore[no-untyped-def]
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FORCE_CLOSE_EXTENSION] = self.force_close

    def force_close(self, code: int, reason: str) -> None:
        if self.close_sent or self.transport is None or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_timer = self.loop.call_later(ABORT_AFTER_SECONDS, self.transport.abort)
