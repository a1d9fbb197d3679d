"""uvicorn's and websockets' per-connection INFO lines are never made under our
protocol (gateway.logs would drop them anyway), while their other records still
reach uvicorn's logger unchanged. Served by a real uvicorn, over a real socket."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.server import ServerState

from gateway.logs import REPEATED_CONNECTION_LINES
from gateway.ws_protocol import RoomcastWebSocketProtocol

Made = list[logging.LogRecord]


async def _accept_then_close(scope: dict[str, Any], receive: Callable[[], Any],
                             send: Callable[[dict[str, Any]], Any]) -> None:
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def made() -> Iterator[Made]:
    """Every log record made while the test runs (logging's own record factory hook)."""
    records: Made = []
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        records.append(record)
        return record

    logging.setLogRecordFactory(factory)
    yield records
    logging.setLogRecordFactory(previous)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    # listening before uvicorn starts: a client's connect waits in the backlog, no poll
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(_accept_then_close, ws=RoomcastWebSocketProtocol, log_config=None,
                            lifespan="off")
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}/ws?token=abc"
    server.should_exit = True
    await task


async def _one_connection(url: str) -> None:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()


async def test_the_repeated_connection_lines_are_not_made(url: str, made: Made) -> None:
    await _one_connection(url)
    assert not [r for r in made if r.msg in REPEATED_CONNECTION_LINES]


async def test_the_protocols_other_records_still_reach_uvicorns_logger(made: Made) -> None:
    protocol = RoomcastWebSocketProtocol(
        uvicorn.Config(_accept_then_close), ServerState(), {},
        _loop=asyncio.get_running_loop())
    protocol.logger.error("a record the protocol keeps: %s", "kept")
    protocol.conn.logger.info("connection rejected (%d %s)", 400, "Bad Request")
    kept = [r for r in made if r.name == "uvicorn.error"]
    assert [r.getMessage() for r in kept] == ["a record the protocol keeps: kept",
                                             "connection rejected (400 Bad Request)"]
    assert protocol.logger.level == logging.getLogger("uvicorn.error").level
    # each record names its caller, as it did before the wrapper: here, this test
    this_test = "test_the_protocols_other_records_still_reach_uvicorns_logger"
    assert {(r.filename, r.funcName) for r in kept} == {("test_connection_log_lines.py",
                                                          this_test)}
