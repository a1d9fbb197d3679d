"""Requests that expect a reply, and the book that orders and matches them.

A request is registered the moment it is made, so it is sent even if nobody
awaits it, and it survives disconnects: unsent requests wait in the outbox,
and requests sent but unanswered when a connection drops go back to the
front of the outbox (at-least-once; the server may have seen them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from .replies import Frame

T = TypeVar("T")


class _Default:
    """Marker for "use the request's own timeout"."""


DEFAULT = _Default()


class Request(Generic[T]):
    """An awaitable reply. `await request` waits up to the request's timeout.

    Timing out stops the waiting only: the request stays queued (nothing the
    app asked to send is dropped); `cancel()` withdraws it if still unsent.
    """

    def __init__(
        self,
        seq: int,
        kind: str,
        room: str | None,
        data: dict[str, Any] | None,
        parse: Callable[[Frame], T],
        timeout: float | None,
    ) -> None:
        self.seq = seq
        self.ref = str(seq)
        self.kind = kind
        self.room = room
        self.data = data
        self.timeout = timeout
        self._parse = parse
        self._future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # Mark failures as retrieved: fire-and-forget requests are allowed, and
        # an unawaited failure must not end up as "exception never retrieved".
        self._future.add_done_callback(_consume_exception)
        self._book: RequestBook | None = None

    def frame(self) -> Frame:
        out: Frame = {"type": self.kind, "ref": self.ref}
        if self.room is not None:
            out["room"] = self.room
        if self.data is not None:
            out["data"] = dict(self.data)  # copied: the writer may add `since`
        return out

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        """Withdraw the request if not sent yet; True if it was withdrawn."""
        if self._book is None or not self._book.withdraw(self):
            return False
        self._future.cancel()
        return True

    def wait(self, timeout: float | _Default | None = DEFAULT) -> Awaitable[T]:
        """Await the reply for up to `timeout` s (None: no limit); TimeoutError after."""
        limit = self.timeout if isinstance(timeout, _Default) else timeout
        # shield: a caller's timeout must not cancel the shared future.
        return asyncio.wait_for(asyncio.shield(self._future), limit)

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    def resolve(self, frame: Frame) -> None:
        if self._future.done():
            return
        try:
            value = self._parse(frame)
        except Exception as exc:  # a malformed reply fails this request only
            self._future.set_exception(exc)
        else:
            self._future.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(exc)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class RequestBook:
    """Outbox (not sent yet) and in-flight requests (sent, awaiting a reply)."""

    def __init__(self) -> None:
        self._outbox: deque[Request[Any]] = deque()
        self._in_flight: dict[str, Request[Any]] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._outbox) + len(self._in_flight)

    def submit(self, request: Request[Any]) -> None:
        request._book = self
        self._outbox.append(request)
        self._ready.set()

    def withdraw(self, request: Request[Any]) -> bool:
        try:
            self._outbox.remove(request)
        except ValueError:
            return False
        return True

    async def next_to_send(self) -> Request[Any]:
        """The oldest unsent request still wanted (single consumer: the writer)."""
        while True:
            while self._outbox:
                request = self._outbox.popleft()
                if not request.done():
                    return request
            self._ready.clear()
            await self._ready.wait()

    def mark_sent(self, request: Request[Any]) -> None:
        self._in_flight[request.ref] = request

    def pop_reply(self, ref: object) -> Request[Any] | None:
        if not isinstance(ref, str | int):
            return None
        return self._in_flight.pop(str(ref), None)

    def pop_oldest(self, kind: str, room: str | None) -> Request[Any] | None:
        """Fallback match for a reply that came without its `ref`."""
        for ref, request in sorted(self._in_flight.items(), key=lambda item: item[1].seq):
            if request.kind == kind and (room is None or request.room == room):
                return self._in_flight.pop(ref)
        return None

    def requeue_in_flight(self) -> None:
        """Connection lost: resend unanswered requests first, in their order."""
        unanswered = sorted(self._in_flight.values(), key=lambda r: r.seq, reverse=True)
        self._in_flight.clear()
        for request in unanswered:
            if not request.done():
                self._outbox.appendleft(request)
        if self._outbox:
            self._ready.set()

    def pending_join_rooms(self) -> set[str]:
        """Rooms that a queued join request will (re)join by itself."""
        return {
            r.room
            for r in (*self._outbox, *self._in_flight.values())
            if r.kind == "join_room" and r.room is not None and not r.done()
        }

    def fail_all(self, exc: BaseException) -> None:
        for request in (*self._outbox, *self._in_flight.values()):
            request.fail(exc)
        self._outbox.clear()
        self._in_flight.clear()
