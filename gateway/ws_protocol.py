"""uvicorn's websockets-sansio protocol, plus what ASGI lacks for a fan-out server.

- A frame sink (`roomcast.frame_sink`, a `gateway.sink.FrameSink`). ASGI sends
  one message at a time through an awaited call per recipient. A room event is
  instead encoded once as a complete WebSocket frame, and the same bytes are
  written straight to each member's transport; the connection's writer joins a
  lagging client's frames into one write.
- A close that never waits. An ASGI `websocket.close` waits, like every send,
  until the transport is writable again, which never happens for a client that
  does not read. The sink's close writes the close frame behind whatever is
  buffered (the client sees every earlier frame, then the code) and aborts the
  socket if the peer does not finish the closing handshake in time.

- No per-connection INFO lines. uvicorn's "[accepted]" and websockets'
  "connection open" / "connection closed" are said again by our own `connect`
  and `disconnect` records, and gateway.logs drops them; the protocol's logger
  now skips them before a record is made, which was 4.4 % of a gateway's CPU in
  a connect storm (py-spy). Every other record goes to uvicorn's logger as before.

Also: a handshake the parser refuses (request line or headers over its limit)
is answered with the parser's 414/431 at once; uvicorn alone would only answer
a complete request, and the client would hang.

This subclass uses attributes of uvicorn's protocol that are not a public API.
pyproject pins uvicorn to the range the tests run with, and `check_compatible`
(called before a gateway serves) stops with one line naming the installed
version if any of them is missing, rather than failing on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from gateway.logs import REPEATED_CONNECTION_LINES
from gateway.sink import Offer

FRAME_SINK_EXTENSION = "roomcast.frame_sink"
# module globals: cheaper to reach on the per-member path than Offer's attributes
_WRITTEN, _NOT_WRITABLE, _OVER_LIMIT = Offer.WRITTEN, Offer.NOT_WRITABLE, Offer.OVER_LIMIT
ABORT_AFTER_SECONDS = 5.0
# What this module reads or calls on uvicorn's protocol instance.
REQUIRED_ATTRIBUTES = ("logger", "transport", "writable", "close_sent", "disconnected", "conn",
                       "queue", "handshake_initiated", "handshake_complete", "close_timer", "loop")


class UnsupportedUvicorn(RuntimeError):
    """The installed uvicorn lacks what RoomcastWebSocketProtocol relies on."""


class TransportSink:
    """Writes pre-encoded server frames to one connection's transport."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: RoomcastWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        p = self._protocol
        return not (p.close_sent or p.disconnected or p.transport.is_closing())

    def offer(self, frames: list[bytes], size: int, limit: int) -> Offer:
        """Writable means open and under the transport's high-water mark. The checks
        are inlined: as `open`, `writable`, `buffered` and `write` properties and calls
        they were a quarter of the fan-out's Python per member (1.34 against 1.03 µs)."""
        protocol = self._protocol
        transport = protocol.transport
        # `open`'s condition spelled out (keep the two alike), then the high-water mark
        if (protocol.close_sent or protocol.disconnected or transport.is_closing()
                or not protocol.writable.is_set()):
            return _NOT_WRITABLE
        if transport.get_write_buffer_size() + size > limit:
            return _OVER_LIMIT
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        return _WRITTEN

    @property
    def buffered(self) -> int:
        transport = self._protocol.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    async def wait_writable(self) -> None:
        await self._protocol.writable.wait()

    def write(self, frames: list[bytes]) -> None:
        if self.open:
            self._protocol.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def close(self, code: int, reason: str) -> None:
        self._protocol.force_close(code, reason)


class QuietConnectionLog:
    """uvicorn's logger as the protocol and websockets use it, minus the INFO lines
    that gateway.logs would drop (REPEATED_CONNECTION_LINES): those are never made."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not (isinstance(msg, str) and msg in REPEATED_CONNECTION_LINES):
            # the record names our caller, not this method
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            self._logger.info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # debug, error, exception, level, ...
        return getattr(self._logger, name)


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet: Any = QuietConnectionLog(self.logger)  # duck-typed: what both libraries call
        self.logger = self.conn.logger = quiet

    def handle_connect(self, event):  # type: ignore[no-untyped-def]
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][FRAME_SINK_EXTENSION] = TransportSink(self)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and "response" in self.__dict__:
            # The handshake's request and response (their headers) are never read again:
            # about 3.7 KB per connection, for hours (tracemalloc, see docs/benchmarks.md).
            del self.request, self.response

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


def check_compatible(config: Config) -> None:
    """Build one protocol instance (no socket) and look for every attribute used here."""
    loop = asyncio.new_event_loop()
    try:
        protocol = RoomcastWebSocketProtocol(config, ServerState(), {}, _loop=loop)
    except Exception as exc:  # a changed constructor
        raise UnsupportedUvicorn(_unsupported(f"its protocol cannot be built ({exc})")) from None
    finally:
        loop.close()
    missing = [name for name in REQUIRED_ATTRIBUTES if not hasattr(protocol, name)]
    if missing:
        raise UnsupportedUvicorn(_unsupported(f"missing {', '.join(missing)}"))


def _unsupported(detail: str) -> str:
    return (f"uvicorn {version('uvicorn')} is not supported by roomcast's WebSocket protocol: "
            f"{detail}; install the version pinned in pyproject.toml")
