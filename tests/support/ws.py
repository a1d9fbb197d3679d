"""A raw protocol client for tests: real sockets, JSON frames, replies matched
by `ref`, and waits with deadlines (never bare sleeps)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_TIMEOUT = 10.0
Frame = dict[str, Any]


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[Frame] = []  # everything received, in order
        self._arrived = asyncio.Condition()
        self._refs = itertools.count(1)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def open(cls, url: str, token: str | None = None, *,
                   headers: dict[str, str] | None = None, subprotocols: list[str] | None = None,
                   origin: str | None = None, query: str | None = None) -> WsClient:
        target = url
        if token is not None:
            target = f"{url}?token={token}"
        if query is not None:
            target = f"{url}?{query}"
        conn = await connect(target, additional_headers=headers, max_size=None,
                             subprotocols=subprotocols, origin=origin,  # type: ignore[arg-type]
                             open_timeout=DEFAULT_TIMEOUT, ping_interval=None)
        return cls(conn)

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                frame = json.loads(raw)
                async with self._arrived:
                    self.frames.append(frame)
                    self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            rcvd = self.conn.protocol.close_rcvd
            self.close_code = rcvd.code if rcvd else 1006
            self.close_reason = rcvd.reason if rcvd else None
            self.closed.set()
            async with self._arrived:
                self._arrived.notify_all()

    async def send(self, message: Frame | str | bytes) -> None:
        await self.conn.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def send_raw_text(self, data: bytes) -> None:
        """A text frame holding exactly these bytes, valid UTF-8 or not (hostile tests)."""
        await self.conn.send(data, text=True)

    async def wait_for(self, predicate: Callable[[Frame], bool], *,
                       timeout: float = DEFAULT_TIMEOUT, start: int = 0) -> Frame:
        async def _find() -> Frame:
            async with self._arrived:
                while True:
                    for frame in self.frames[start:]:
                        if predicate(frame):
                            return frame
                    if self.closed.is_set():
                        raise ConnectionError(f"closed {self.close_code} {self.close_reason}")
                    await self._arrived.wait()
        return await asyncio.wait_for(_find(), timeout)

    async def request(self, type_: str, room: str | None = None,
                      data: dict[str, Any] | None = None, *,
                      timeout: float = DEFAULT_TIMEOUT) -> Frame:
        ref = next(self._refs)
        message: Frame = {"type": type_, "ref": ref}
        if room is not None:
            message["room"] = room
        if data is not None:
            message["data"] = data
        await self.send(message)
        return await self.wait_for(lambda f: f.get("ref") == ref, timeout=timeout)

    async def join(self, room: str, since: str | None = None) -> Frame:
        return await self.request("join_room", room, {"since": since} if since else None)

    async def join_when_granted(self, room: str, *, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Grants go through the worker: poll the join, with a deadline, until admitted."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            reply = await self.join(room)
            if reply["type"] == "room_joined":
                return reply
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"join of {room} never admitted: {reply}")
            await asyncio.sleep(0.05)  # poll interval

    def events(self, room: str | None = None, type_: str | None = None) -> list[Frame]:
        return [f for f in self.frames if "id" in f
                and (room is None or f.get("room") == room)
                and (type_ is None or f.get("type") == type_)]

    async def wait_events(self, room: str, count: int, *, type_: str | None = None,
                          timeout: float = DEFAULT_TIMEOUT) -> list[Frame]:
        async def _enough() -> list[Frame]:
            async with self._arrived:
                while len(self.events(room, type_)) < count:
                    if self.closed.is_set():
                        raise ConnectionError(f"closed {self.close_code} {self.close_reason}")
                    await self._arrived.wait()
                return self.events(room, type_)
        return await asyncio.wait_for(_enough(), timeout)

    async def wait_events_total(self, count: int, *, match: Callable[[Frame], bool],
                                timeout: float = DEFAULT_TIMEOUT) -> list[Frame]:
        """Wait until `count` room events (of any room) satisfy `match`."""
        async def _enough() -> list[Frame]:
            async with self._arrived:
                while True:
                    found = [f for f in self.events() if match(f)]
                    if len(found) >= count:
                        return found
                    if self.closed.is_set():
                        raise ConnectionError(f"closed {self.close_code} {self.close_reason}")
                    await self._arrived.wait()
        return await asyncio.wait_for(_enough(), timeout)

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.conn.close()
        await asyncio.wait_for(self.closed.wait(), DEFAULT_TIMEOUT)
        self._reader.cancel()
