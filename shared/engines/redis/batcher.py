"""Commands of many tasks sent to Redis in one round trip.

In a connect storm a gateway makes a few small calls per connection (claim the
connection slot, read the room's join point, enter its presence set, append
`user_joined`). redis-py's machinery around each call (pool checkout, a timeout
context, packing, parsing) cost the gateway more CPU than the commands cost
Redis. Here the calls made in one event-loop turn are queued and sent as one
pipeline on the next turn; each caller gets its own replies, or its own error.

Everything sent this way must be safe to send twice: the client retries a
pipeline whose connection dropped. The callers send reads, scripts that answer
the same when repeated, and appends deduplicated by event key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]  # ("NAME", *args), as for execute_command
MAX_COMMANDS = 2000  # per pipeline: bounds one reply's parsing time in the event loop


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
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0

    def script(self, sha: str, source: str) -> None:
        """Make a script known, so that an EVALSHA of it survives a Redis that lost it."""
        self._scripts[sha] = source

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, in order, sent together with other tasks' calls.
        Raises the first error reply among them, or the connection's error."""
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
        calls, self._queued, self._queued_commands = self._queued, [], 0
        if calls:
            task = asyncio.get_running_loop().create_task(self._send(calls))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            retry = await self._round_trip(calls)
            if retry:  # a Redis that lost its scripts (restarted, flushed): load, once more
                for sha in {c[1] for call in retry for c in call.commands if c[0] == "EVALSHA"}:
                    await self._client.script_load(self._scripts[sha])
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
            replies = await pipe.execute(raise_on_error=False)
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
