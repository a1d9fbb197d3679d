"""Commands of many tasks sent to Redis in one round trip.

In a connect storm a gateway makes a few small calls per connection (claim the
connection slot, read the room's join point, enter its presence set, append
`user_joined`). redis-py's machinery around each call (pool checkout, a timeout
context, packing, parsing) cost the gateway more CPU than the commands cost
Redis. Here the calls made in one event-loop turn are queued and sent as one
pipeline on the next turn; each caller gets its own replies, or its own error.

At most MAX_IN_FLIGHT round trips are out at once; calls made meanwhile wait for
one to come back and then go together. So the batches size themselves: a lone
call goes at once, and a steady stream of connects is sent in a few large
round trips instead of many small ones. With round trips sent every turn, a
gateway fed a steady stream of 10,000 connects spent 0.79 ms of CPU per
connection, against 0.57 ms for the same connects in bursts.

Everything sent this way must be safe to send twice: the client retries a
pipeline whose connection dropped. The callers send reads, scripts that answer
the same when repeated, and appends deduplicated by event key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.engines.redis.client import async_client
from shared.settings import Settings

Command = tuple[Any, ...]  # ("NAME", *args), as for execute_command
MAX_COMMANDS = 2000  # per pipeline: bounds one reply's parsing time in the event loop
MAX_IN_FLIGHT = 1
# With one round trip out at a time, a Redis gone silent (a partition: no reset, no
# reply) would hold every later call behind it; past this the round trip fails, its
# connection is dropped, and the calls behind it go on a fresh one.
ROUND_TRIP_TIMEOUT_S = 10.0
T = TypeVar("T")


def batcher_client(settings: Settings) -> aioredis.Redis:
    """The batcher's own client. Each round trip is bounded as a whole
    (ROUND_TRIP_TIMEOUT_S), so its replies are read without redis-py's timeout
    around each one: with it, those timeouts were 5 % of a gateway's CPU in a
    connect storm, where one round trip carries hundreds of replies."""
    return async_client(settings, untimed=True)


class _Call:
    __slots__ = ("commands", "future")

    def __init__(self, commands: Sequence[Command], future: asyncio.Future[list[Any]]) -> None:
        self.commands = commands
        self.future = future


class CommandBatcher:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queued: list[_Call] = []
        self._queued_commands = 0
        self._scheduled = False
        self._scripts: dict[str, str] = {}  # sha -> source, to load after NOSCRIPT
        self._tasks: dict[asyncio.Task[None], list[_Call]] = {}  # round trips out
        self._in_flight = 0
        self._closed = False
        self.round_trips = 0

    def script(self, sha: str, source: str) -> None:
        """Make a script known, so that an EVALSHA of it survives a Redis that lost it."""
        self._scripts[sha] = source

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, in order, sent together with other tasks' calls.
        Raises the first error reply among them, or the connection's error."""
        if self._closed:
            raise RedisConnectionError("the command batcher is closed")
        loop = asyncio.get_running_loop()
        call = _Call(commands, loop.create_future())
        self._queued.append(call)
        self._queued_commands += len(commands)
        if self._queued_commands >= MAX_COMMANDS:
            self._send_queued()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send_queued)  # after the tasks ready in this turn
        return await call.future

    def _send_queued(self) -> None:
        self._scheduled = False
        if self._closed or self._in_flight >= MAX_IN_FLIGHT:
            return  # sent when a round trip comes back (_sent)
        count = taken = 0
        for call in self._queued:  # whole calls, up to MAX_COMMANDS (at least one call)
            if count and taken + len(call.commands) > MAX_COMMANDS:
                break
            count += 1
            taken += len(call.commands)
        calls, self._queued = self._queued[:count], self._queued[count:]
        self._queued_commands -= taken
        if calls:
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(calls))
            self._tasks[task] = calls
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        _fail(self._tasks.pop(task, []), "the round trip was cancelled")  # before it began
        self._in_flight -= 1
        if self._queued and not self._closed:
            self._send_queued()

    async def _send(self, calls: list[_Call]) -> None:
        try:
            retry = await self._round_trip(calls)
            if retry:  # a Redis that lost its scripts (restarted, flushed): load, once more
                for sha in {c[1] for call in retry for c in call.commands if c[0] == "EVALSHA"}:
                    await _bounded(self._client.script_load(self._scripts[sha]))
                await self._round_trip(retry, final=True)
        except BaseException as exc:  # the connection failed, or we are cancelled
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _round_trip(self, calls: list[_Call], *, final: bool = False) -> list[_Call]:
        """Send `calls`; settle each one's future, except those that met NOSCRIPT
        (returned, unless `final`)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                for command in call.commands:
                    pipe.execute_command(*command)
            replies = await _bounded(pipe.execute(raise_on_error=False))
        self.round_trips += 1
        retry = []
        at = 0
        for call in calls:
            part = replies[at:at + len(call.commands)]
            at += len(call.commands)
            if call.future.done():
                continue  # the caller was cancelled
            errors = [r for r in part if isinstance(r, Exception)]
            if not errors:
                call.future.set_result(part)
            elif not final and any(isinstance(e, NoScriptError) for e in errors):
                retry.append(call)
            else:
                call.future.set_exception(errors[0])
        return retry

    async def aclose(self) -> None:
        self._closed = True
        try:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            queued, self._queued = self._queued, []
            _fail(queued, "the command batcher is closed")  # never sent


def _fail(calls: Sequence[_Call], reason: str) -> None:
    """Callers still waiting get an error: nobody waits for a round trip that is over."""
    for call in calls:
        if not call.future.done():
            call.future.set_exception(RedisConnectionError(reason))


async def _bounded(step: Awaitable[T]) -> T:
    """`step`, failed with Redis's own timeout error past ROUND_TRIP_TIMEOUT_S (the
    connection is dropped on the way out of the read, by redis-py)."""
    try:
        async with asyncio.timeout(ROUND_TRIP_TIMEOUT_S):
            return await step
    except TimeoutError:
        raise RedisTimeoutError(
            f"no reply from Redis within {ROUND_TRIP_TIMEOUT_S:.0f} s") from None
