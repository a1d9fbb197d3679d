"""Delivery of client events to async iterators and callbacks.

Delivery never blocks the reader: iterator queues are unbounded and async
callbacks run as their own tasks, so a slow handler cannot delay the pong
that keeps the connection alive.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from .events import ClientEvent

E = TypeVar("E", bound=ClientEvent)

Callback = Callable[[E], Awaitable[None] | None]

logger = logging.getLogger("roomcast.client")


class _End:
    """Put in a stream's queue when the client is closed for good."""


_END = _End()


class EventStream:
    """`async for event in stream` until the client closes (or `aclose()`)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._queue: asyncio.Queue[ClientEvent | _End] = asyncio.Queue()
        self._ended = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ClientEvent:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._dispatcher._streams.discard(self)
        self._ended = True

    def _put(self, item: ClientEvent | _End) -> None:
        self._queue.put_nowait(item)


class Dispatcher:
    def __init__(self) -> None:
        self._streams: set[EventStream] = set()
        self._callbacks: dict[object, list[Callback[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = False

    def stream(self) -> EventStream:
        """A new stream that sees every event emitted from now on."""
        stream = EventStream(self)
        if self._ended:
            stream._put(_END)
        else:
            self._streams.add(stream)
        return stream

    @overload
    def on(self, event_type: type[E], callback: Callback[E]) -> Callable[[], None]: ...

    @overload
    def on(self, event_type: str, callback: Callback[ClientEvent]) -> Callable[[], None]: ...

    def on(self, event_type: object, callback: Callback[Any]) -> Callable[[], None]:
        """Call `callback` for each matching event; returns an unsubscribe function.

        `event_type` is an event class (`RoomEvent`, `Disconnected`, ...), a
        `type` string (`"message"`, `"resync_required"`, ...) or `"*"`.
        """
        self._callbacks.setdefault(event_type, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._callbacks.get(event_type, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def emit(self, event: ClientEvent) -> None:
        for stream in self._streams:
            stream._put(event)
        for key in (type(event), event.type, "*"):
            for callback in list(self._callbacks.get(key, ())):
                self._call(callback, event)

    def _call(self, callback: Callback[Any], event: ClientEvent) -> None:
        try:
            result = callback(event)
        except Exception:
            logger.exception("roomcast event callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("roomcast event callback failed", exc_info=task.exception())

    async def end(self) -> None:
        """The client closed: finish every stream and stop running callbacks."""
        self._ended = True
        for stream in self._streams:
            stream._put(_END)
        self._streams.clear()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
