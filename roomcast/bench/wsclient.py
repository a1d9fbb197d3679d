"""A minimal RFC 6455 client as an asyncio Protocol: the load generator's socket.

Why not `websockets`: a bench client must cost far less per received frame than
the gateway it measures, and on a 2-core box every microsecond counts. This one
parses frames straight out of `data_received` chunks (many frames per read when
the server is busy) and hands each text payload to `on_text` with the chunk's
receipt time. Only what a client of roomcast needs: text frames, ping/pong, close.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HEADER_BYTES = 16 * 1024
# After a chunk this big, skip this socket's further reads until the next loop
# iteration: uvloop reads up to 32 x 256 KiB per socket per iteration, and with
# 500 sockets full of backlog one iteration could take seconds, starving timers.
YIELD_AFTER_BYTES = 64 * 1024


class HandshakeError(Exception):
    """The server did not answer the upgrade with 101."""


def _mask(payload: bytes) -> bytes:
    """Client frames must be masked: XOR with a random 4-byte key, done on big ints."""
    key = os.urandom(4)
    n = len(payload)
    if not n:
        return key
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return key + masked


def encode_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + _mask(payload)


class WSClientProtocol(asyncio.Protocol):
    """One connection. Subclass hooks: `on_open`, `on_text(payload, now)`, `on_close(code)`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._head = b""
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_op = OP_TEXT
        self._open = False
        self._paused = False
        self._clock: Callable[[], float] = time.time

    # -- hooks ---------------------------------------------------------------------------
    def on_open(self) -> None:
        """The upgrade succeeded."""

    def on_text(self, payload: bytes, now: float) -> None:
        """One complete text message, with the receipt time of its chunk."""

    def on_close(self, code: int | None) -> None:
        """The connection ended; `code` is the server's close code, if it sent one."""

    # -- sending -------------------------------------------------------------------------
    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(OP_TEXT, payload))

    def pause(self) -> None:
        """Stop reading: nothing more is counted, and the client costs no more CPU."""
        self._paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _yield_reading(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self._open:
                self.transport.write(encode_frame(OP_CLOSE, code.to_bytes(2, "big")))
            self.transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but behaves as one
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write((f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                         ).encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during handshake: {exc}"))
            self.upgraded.exception()  # mark retrieved: the opener may have given up
        was_open, self._open = self._open, False
        if was_open:
            self.on_close(self.close_code)

    def data_received(self, data: bytes) -> None:
        if not self._open:
            data = self._handshake(data)
            if not self._open or not data:
                return
        now = self._clock()
        if self._buf:
            self._buf += data
            consumed = self._parse(self._buf, now)
            del self._buf[:consumed]
        else:  # fast path: parse the chunk itself, keep only an incomplete tail
            consumed = self._parse(data, now)
            if consumed < len(data):
                self._buf += data[consumed:]
        if len(data) >= YIELD_AFTER_BYTES and not self._paused and self.transport is not None \
                and not self.transport.is_closing():
            self._yield_reading()

    def _handshake(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEADER_BYTES:
                self._fail(HandshakeError("response header too long"))
            return b""
        status_line = self._head.split(b"\r\n", 1)[0]
        rest = self._head[end + 4:]
        self._head = b""
        if b" 101 " not in status_line + b" ":
            self._fail(HandshakeError(status_line.decode(errors="replace")[:120]))
            return b""
        self._open = True
        if not self.upgraded.done():  # else the opener gave up (timeout) meanwhile
            self.upgraded.set_result(None)
        self.on_open()
        return rest

    def _fail(self, exc: Exception) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc)
            self.upgraded.exception()
        if self.transport is not None:
            self.transport.close()

    def _parse(self, buf: bytes | bytearray, now: float) -> int:
        """Handle every complete frame in `buf`; return the bytes consumed."""
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buf[pos + head:end])
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT and b0 & 0x80:
                self.on_text(payload, now)
            else:
                self._control(opcode, bool(b0 & 0x80), payload, now)
        return pos

    def _control(self, opcode: int, fin: bool, payload: bytes, now: float) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):  # fragmented (or binary) message
            if opcode != OP_CONT:
                self._fragment_op = opcode
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), []
                if self._fragment_op == OP_TEXT:
                    self.on_text(whole, now)
        elif opcode == OP_PING:
            assert self.transport is not None
            self.transport.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(encode_frame(OP_CLOSE, payload[:2]))
                self.transport.close()
