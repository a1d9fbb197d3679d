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

from .client import RoomcastClient
from .dispatch import EventStream
from .errors import RoomcastError
from .events import event_to_dict

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
    **client_options: Any,
) -> None:
    """Run until `quit`, end of input, or the client stops for good (e.g. bad token)."""
    out = stdout if stdout is not None else sys.stdout
    lines = _read_lines(stdin if stdin is not None else sys.stdin)
    client = RoomcastClient(url, token, **client_options)
    stream = client.events()  # before connecting, so the first events are printed too
    printer = asyncio.create_task(_print_events(stream, out))
    commands: set[asyncio.Task[None]] = set()
    async with client:
        closed = asyncio.ensure_future(client.wait_closed())
        try:
            while True:
                next_line = asyncio.ensure_future(lines.get())
                await asyncio.wait({next_line, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not next_line.done():
                    next_line.cancel()
                    break
                line = next_line.result()
                if line is None or line.strip() in ("quit", "exit"):
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
