"""Interactive terminal client: commands on stdin, one JSON line per event on stdout.

Commands:
    join ROOM [SINCE]   leave ROOM   send ROOM TEXT...   presence ROOM
    ping                refresh TOKEN                     quit
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable
from typing import Any, TextIO

import orjson

from .client import AUTH_CLOSE_CODES, DEFAULT_PATH, RoomcastClient
from .dispatch import EventStream
from .errors import RoomcastError
from .events import Connected, Disconnected, event_to_dict

# Attempts before the first connection: a wrong URL fails in a few seconds of backoff.
MAX_FAILED_ATTEMPTS = 5
USAGE = (
    "join ROOM [SINCE] | leave ROOM | send ROOM TEXT... | presence ROOM | ping | "
    "refresh TOKEN | quit"
)


async def run_terminal(
    url: str | list[str],
    token: str,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    max_failed_attempts: int = MAX_FAILED_ATTEMPTS,
    **client_options: Any,
) -> int:
    """Run until `quit`, end of input, or the client stops for good; the exit code.

    At end of input (commands piped in) it first waits for the connection's verdict
    and for the replies to the commands read, so a script sees them and a refused
    token is still reported.

    0 after `quit` or end of input; 1 when the gateway refused the token (4401,
    4403) or no attempt to connect succeeded `max_failed_attempts` times in a
    row before the first connection (a wrong URL). Once connected, the client
    retries for as long as it runs, as the SDK does."""
    out = stdout if stdout is not None else sys.stdout
    lines = _read_lines(stdin if stdin is not None else sys.stdin)
    client = RoomcastClient(url, token, **client_options)
    watch = _Watch(client, max_failed_attempts)
    stream = client.events()  # before connecting, so the first events are printed too
    printer = asyncio.create_task(_print_events(stream, out))
    commands: set[asyncio.Task[None]] = set()
    async with client:
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            while True:
                next_line = asyncio.ensure_future(lines.get())
                waiting: set[asyncio.Future[Any]] = {next_line, closed, watch.gave_up}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not next_line.done():
                    next_line.cancel()
                    break
                line = next_line.result()
                if line is None:  # piped input ran out: let what it asked for finish
                    await _finish(watch, closed, commands)
                    break
                if line.strip() in ("quit", "exit"):
                    break
                command = _start_command(client, line, out)
                if command is not None:
                    commands.add(command)
                    command.add_done_callback(commands.discard)
        finally:
            closed.cancel()
    # Closing failed whatever was still pending; let those commands report it.
    await asyncio.gather(*commands, return_exceptions=True)
    await printer
    if watch.problem is None:
        return 0
    print(f"roomcast: {watch.problem}", file=stderr if stderr is not None else sys.stderr)
    return 1


class _Watch:
    """Tells a client that can never get in from one riding out a gateway restart."""

    def __init__(self, client: RoomcastClient, max_failed_attempts: int) -> None:
        self.url = client.url
        self.max_failed = max_failed_attempts
        self.failed = 0
        self.connected = False
        self.problem: str | None = None
        loop = asyncio.get_running_loop()
        self.gave_up: asyncio.Future[None] = loop.create_future()
        # the first attempts' outcome: connected, refused, or given up on
        self.decided: asyncio.Future[None] = loop.create_future()
        client.on(Connected, self._on_connected)
        client.on(Disconnected, self._on_disconnected)

    def _decide(self) -> None:
        if not self.decided.done():
            self.decided.set_result(None)

    def _on_connected(self, event: Connected) -> None:
        self.connected = True
        self._decide()

    def _on_disconnected(self, event: Disconnected) -> None:
        if event.code in AUTH_CLOSE_CODES and not event.will_reconnect:
            self.problem = _refusal(event)
            self._decide()
        elif event.will_reconnect and not self.connected:
            self.failed += 1
            if self.failed >= self.max_failed and not self.gave_up.done():
                self.problem = (f"cannot connect to {self.url}: {_failure(event.reason)} "
                                f"(gave up after {self.failed} attempts)")
                self.gave_up.set_result(None)
                self._decide()


async def _finish(watch: _Watch, closed: asyncio.Future[Any],
                  commands: set[asyncio.Task[None]]) -> None:
    """End of piped input (`echo "join project:1" | roomcast client`): wait for the
    connection's verdict, so that a refused token is still reported, then for the
    commands' replies (each bounded by its request timeout) before closing."""
    await asyncio.wait({watch.decided, closed}, return_when=asyncio.FIRST_COMPLETED)
    if watch.connected:
        await asyncio.wait({asyncio.gather(*commands, return_exceptions=True), closed},
                           return_when=asyncio.FIRST_COMPLETED)


def _refusal(event: Disconnected) -> str:
    if event.code == 4401:
        return (f"the gateway refused the token ({event.code} {event.reason}): get a valid "
                "one, e.g. from roomcast token")
    return f"the gateway refused the connection ({event.code} {event.reason})"


def _failure(reason: str) -> str:
    if reason.startswith("HTTP "):
        # something answered, but not with a WebSocket upgrade
        return f"it answered {reason}, not a WebSocket (a gateway serves {DEFAULT_PATH})"
    return reason.removeprefix("connect failed: ")


def _start_command(client: RoomcastClient, line: str, out: TextIO) -> asyncio.Task[None] | None:
    words = line.split()
    if not words:
        return None
    name, args = words[0].lower(), words[1:]
    request: Awaitable[Any]
    if name == "join" and len(args) in (1, 2):
        request = client.join(args[0], args[1] if len(args) == 2 else None)
    elif name == "leave" and len(args) == 1:
        request = client.leave(args[0])
    elif name == "send" and len(args) >= 2:
        # Keep the text as typed, inner spaces included.
        text = line.strip().split(None, 2)[2]
        request = client.send_message(args[0], text)
    elif name == "presence" and len(args) == 1:
        request = client.presence(args[0])
    elif name == "ping" and not args:
        request = client.ping()
    elif name == "refresh" and len(args) == 1:
        request = client.refresh(args[0])
    else:
        _print(out, {"type": "usage", "error": f"unknown command: {line.strip()}", "usage": USAGE})
        return None
    return asyncio.create_task(_report(name, request, out))


async def _report(name: str, request: Awaitable[Any], out: TextIO) -> None:
    try:
        result = await request
    except RoomcastError as exc:
        _print(
            out,
            {"type": "command_error", "command": name, "code": exc.code, "message": exc.message},
        )
    except TimeoutError:
        _print(
            out,
            {
                "type": "command_error",
                "command": name,
                "code": None,
                "message": "no reply in time (still queued)",
            },
        )
    else:
        _print(out, {"type": "result", "command": name, "result": result})


async def _print_events(stream: EventStream, out: TextIO) -> None:
    async for event in stream:
        _print(out, event_to_dict(event))


def _print(out: TextIO, value: dict[str, Any]) -> None:
    # orjson writes dataclass results (Joined, PresenceUser) as objects.
    out.write(orjson.dumps(value).decode() + "\n")
    out.flush()


def _read_lines(source: TextIO) -> asyncio.Queue[str | None]:
    """Feed lines from a blocking file into a queue; None marks end of input.

    A daemon thread, because a thread blocked in readline() must not keep the
    process alive after `quit` or a refused token.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in source:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass  # stdin closed under us: same as end of input
        finally:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except RuntimeError:
                pass  # the loop is gone: nobody is listening any more

    threading.Thread(target=pump, name="roomcast-stdin", daemon=True).start()
    return queue
