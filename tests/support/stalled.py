"""A WebSocket client on a raw socket with a tiny receive buffer, which reads only
when told to: TCP backpressure reaches the gateway at once, the way a phone on a
slow network or a busy browser tab looks from the server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


class StalledClient:
    """A WebSocket client on a raw socket with a tiny receive buffer that stops
    reading after its join: TCP backpressure reaches the gateway at once."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol
        self.frames: list[Frame] = []
        self._texts: list[dict[str, Any]] = []  # text frames parsed so far, in order
        self._parsed = 0  # frames already parsed into _texts
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, url: str, token: str) -> StalledClient:
        host, port = re.match(r"ws://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        protocol = ClientProtocol(parse_uri(f"{url}?token={token}"), max_size=None)
        protocol.send_request(protocol.connect())
        client = cls(sock, protocol)
        await client._flush()
        return client

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                await self.loop.sock_sendall(self.sock, data)

    async def send_json(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def read_until(self, predicate: Callable[[dict[str, Any]], bool],
                         timeout: float = 10) -> None:
        async def _read() -> None:
            checked = 0
            while True:
                texts = self.texts()
                if any(predicate(f) for f in texts[checked:]):
                    return
                checked = len(texts)
                data = await self.loop.sock_recv(self.sock, 1 << 20)
                if not data:
                    close = self.protocol.close_rcvd
                    raise ConnectionError(f"closed while waiting ({close})")
                self._feed(data)
        await asyncio.wait_for(_read(), timeout)

    def _feed(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                assert event.status_code == 101, event
            elif isinstance(event, Frame):
                self.frames.append(event)

    async def drain_to_close(self, timeout: float = 10) -> int:
        """Read everything the gateway buffered; return the code of its close frame."""
        async def _read() -> int:
            while self.protocol.close_rcvd is None:
                data = await self.loop.sock_recv(self.sock, 1 << 20)
                if not data:
                    break
                self._feed(data)
            assert self.protocol.close_rcvd is not None, "no close frame before EOF"
            return self.protocol.close_rcvd.code
        return await asyncio.wait_for(_read(), timeout)

    def texts(self) -> list[dict[str, Any]]:
        self._texts.extend(json.loads(bytes(f.data)) for f in self.frames[self._parsed:]
                           if f.opcode is Opcode.TEXT)
        self._parsed = len(self.frames)
        return self._texts

    def close(self) -> None:
        self.sock.close()

    async def read_for(self, seconds: float) -> None:
        """Read whatever arrives for `seconds` (a client that reads in short bursts)."""
        deadline = self.loop.time() + seconds
        while (left := deadline - self.loop.time()) > 0:
            try:
                data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), left)
            except TimeoutError:
                return
            if not data:
                raise ConnectionError("closed while reading")
            self._feed(data)
