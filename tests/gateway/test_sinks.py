"""Both frame sinks' `offer`, served by a real uvicorn over real sockets: it writes
at once while the socket keeps up, refuses (and writes nothing) past the caller's
byte limit, and refuses while earlier frames wait for the socket or after a close,
so the connection queues instead of growing the buffer."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
import websockets
from starlette.websockets import WebSocket

from gateway.sink import AsgiSink, FrameSink, Offer
from gateway.ws_protocol import FRAME_SINK_EXTENSION, RoomcastWebSocketProtocol
from shared.codec import ws_text_frame

Scenario = Callable[[dict[str, Any], FrameSink], Awaitable[None]]
BIG_FRAME = ws_text_frame(b"x" * 262_144)
RECEIVE_TIMEOUT_S = 10
MAX_BIG_FRAMES = 1_000  # 256 MB: far past any socket buffer, so the bound never decides


async def _received(ws: websockets.ClientConnection, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S) for _ in range(count)]


@asynccontextmanager
async def serving(scenario: Scenario, *, asgi_sink: bool = False) -> AsyncIterator[str]:
    """A uvicorn with our protocol whose one WebSocket route runs `scenario` on the
    connection's sink (ours, or the plain ASGI one), then waits to be stopped."""
    stop = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Callable[[], Any],
                  send: Callable[[dict[str, Any]], Any]) -> None:
        assert scope["type"] == "websocket"
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        sink = AsgiSink(websocket) if asgi_sink else scope["extensions"][FRAME_SINK_EXTENSION]
        await scenario(scope, sink)
        await stop.wait()

    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, ws=RoomcastWebSocketProtocol, log_config=None,
                            lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        server.should_exit = True
        await task


async def _silent_client(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that completes the upgrade, then never reads: its socket fills up."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status
    return reader, writer


async def test_offer_writes_within_the_limit_and_refuses_past_it() -> None:
    first, second, third = (ws_text_frame(t) for t in (b'"one"', b'"two"', b'"three"'))
    offered: list[Offer] = []

    async def scenario(scope: dict[str, Any], sink: FrameSink) -> None:
        offered.append(sink.offer([first], len(first), 1 << 20))
        offered.append(sink.offer([second], len(second), len(second) - 1))  # one byte short
        offered.append(sink.offer([third], len(third), len(third)))  # exactly at the limit

    async with serving(scenario) as address, websockets.connect(f"ws://{address}/ws") as ws:
        assert await _received(ws, 2) == ['"one"', '"three"']
    assert offered == [Offer.WRITTEN, Offer.OVER_LIMIT, Offer.WRITTEN]


async def test_offer_refuses_while_the_socket_lags_and_writes_nothing() -> None:
    outcome: asyncio.Future[tuple[int, Offer, int, int]] = asyncio.Future()

    async def scenario(scope: dict[str, Any], sink: FrameSink) -> None:
        for written in range(MAX_BIG_FRAMES):
            offered = sink.offer([BIG_FRAME], len(BIG_FRAME), 1 << 40)
            if offered is not Offer.WRITTEN:
                before = sink.buffered
                # refused: nothing was added to the buffer
                outcome.set_result((written, offered, before, sink.buffered))
                return
        outcome.set_result((MAX_BIG_FRAMES, Offer.WRITTEN, 0, 0))

    async with serving(scenario) as address:
        _, writer = await _silent_client(address)
        try:
            written, offered, before, after = await asyncio.wait_for(outcome, 30)
        finally:
            writer.close()
    assert offered is Offer.NOT_WRITABLE and 0 < written < MAX_BIG_FRAMES
    assert before == after > 0  # the unsent bytes stay counted, none were added


async def test_offer_after_a_close_writes_nothing() -> None:
    offered: list[Offer] = []
    frame = ws_text_frame(b'"late"')

    async def scenario(scope: dict[str, Any], sink: FrameSink) -> None:
        sink.close(1000, "bye")
        offered.append(sink.offer([frame], len(frame), 1 << 20))

    async with serving(scenario) as address, websockets.connect(f"ws://{address}/ws") as ws:
        await asyncio.wait_for(ws.wait_closed(), RECEIVE_TIMEOUT_S)
        assert ws.close_code == 1000
    assert offered == [Offer.NOT_WRITABLE]


async def test_the_asgi_sink_offers_one_send_at_a_time_within_the_limit() -> None:
    first, second = ws_text_frame(b'"one"'), ws_text_frame(b'"two"')
    offered: list[Offer] = []

    async def scenario(scope: dict[str, Any], sink: FrameSink) -> None:
        offered.append(sink.offer([first], len(first), len(first) - 1))  # over the limit
        offered.append(sink.offer([first], len(first), 1 << 20))
        offered.append(sink.offer([second], len(second), 1 << 20))  # the first is in flight
        await sink.wait_writable()
        offered.append(sink.offer([second], len(second), 1 << 20))

    async with (serving(scenario, asgi_sink=True) as address,
                websockets.connect(f"ws://{address}/ws") as ws):
        assert await _received(ws, 2) == ['"one"', '"two"']
    assert offered == [Offer.OVER_LIMIT, Offer.WRITTEN, Offer.NOT_WRITABLE, Offer.WRITTEN]
