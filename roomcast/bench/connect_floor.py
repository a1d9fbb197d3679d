"""The connect floor: what a connect costs the server stack alone, with no roomcast
work in it.

A gateway's connect is uvicorn's accept and HTTP parse, the WebSocket upgrade
(websockets' handshake), and then roomcast's own work: the token check, the
connection's slot and presence in Redis, the welcome, the join. With
`roomcast bench --connect-floor`, each run also serves a bare app under the
gateway's own uvicorn options (`gateway_config`: our protocol, the same limits)
that answers the same handshake and join with frames of the same shape and does
nothing else, and opens the same clients against it in the same way. Its CPU
per connect is what no change on roomcast's side of the stack can go below.

  python -m roomcast.bench.connect_floor   # serve; prints the port, then serves
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import psutil
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.fast_path import WS_PATH
from gateway.gc_threshold import raise_gc_threshold
from roomcast.bench.clients import ClientState, Fleet
from roomcast.bench.publisher import room_name
from roomcast.bench.scenario import ScenarioConfig
from roomcast.bench.stack import STOP_WAIT_S, http_status
from roomcast.cli.children import die_with_parent
from roomcast.cli.preflight import bind_port
from roomcast.cli.serve import gateway_config
from shared.codec import direct_frame
from shared.settings import Settings

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def _welcome() -> str:
    """The gateway's welcome, with placeholder values of the same length."""
    return direct_frame("connected", {
        "message": "Connected successfully", "user_id": 100000000, "username": "user-100000000",
        "connection_id": "0" * 32, "heartbeat_interval": 30, "rooms": ["user:100000000"]})


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The handshake and the join, answered with the gateway's frames; nothing else."""
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":  # the readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _welcome()})
        while (message := await receive())["type"] == "websocket.receive":
            request = orjson.loads(message.get("text") or "{}")
            reply = direct_frame("room_joined", {"last_id": "0-0"}, room=request.get("room"),
                                 ref=request.get("ref"))
            await send({"type": "websocket.send", "text": reply})


def serve() -> None:
    """Serve bare_app on a free port, as a gateway is served; the port goes to stdout."""
    raise_gc_threshold()  # as create_app does: the floor must not pay collections it avoids
    sock = bind_port(HOST, 0)  # bound here: no other process can take it in between
    port = sock.getsockname()[1]
    print(port, flush=True)
    # nobody reads the pipe from here on: anything written to it later would fill it
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    uvicorn.Server(gateway_config(bare_app, Settings(), HOST, port)).run(sockets=[sock])


async def start_server() -> tuple[asyncio.subprocess.Process, int]:
    """A bare server in a process of its own (its CPU is then its own); and its port,
    once it answers."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomcast.bench.connect_floor", stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        port = await _read_port(server)
        await _wait_ready(port, server)
    except BaseException:
        await stop_server(server)
        raise
    return server, port


async def stop_server(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        with contextlib.suppress(ProcessLookupError):  # it may end on its own meanwhile
            server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), STOP_WAIT_S)
        except TimeoutError:
            server.kill()
            await server.wait()


async def measure_floor(cfg: ScenarioConfig) -> dict[str, Any]:
    """Connect cfg's clients to a bare server as the scenario connects them to a
    gateway; the server's CPU and memory per connect."""
    server, port = await start_server()
    base = random.randint(10**6, 9 * 10**8)
    url = f"ws://{HOST}:{port}{WS_PATH}?token=none"
    fleet = Fleet([ClientState(idx=i, user_id=base + i, url=url, gateway=0,
                               room=room_name(base + cfg.room_index(i)))
                   for i in range(cfg.clients)], resume=False)
    try:
        process = psutil.Process(server.pid)
        cpu0, rss0 = _cpu_s(process), process.memory_info().rss
        connect_s = await fleet.connect_all(cfg.connect_batch, cfg.connect_timeout,
                                           steady=cfg.connect_steady)
        cpu_s, rss1 = _cpu_s(process) - cpu0, process.memory_info().rss
    finally:
        await fleet.close_all()
        await stop_server(server)
    connected = len(fleet.connected)
    return {
        "connected": connected,
        "connect_s": round(connect_s, 2),
        "connects_per_s": round(connected / connect_s) if connect_s > 0 else None,
        "cpu_pct": round(100.0 * cpu_s / connect_s, 1) if connect_s > 0 else None,
        "cpu_ms_per_connect": round(1000.0 * cpu_s / connected, 3) if connected else None,
        "mem_per_conn_kb": round((rss1 - rss0) / 1024 / connected, 1) if connected else None,
        "n_errors": fleet.n_errors,
        "errors": fleet.errors[:5],
    }


async def _read_port(server: asyncio.subprocess.Process) -> int:
    assert server.stdout is not None
    line = await asyncio.wait_for(server.stdout.readline(), START_TIMEOUT_S)
    if not line.strip().isdigit():
        raise RuntimeError(f"the connect-floor server did not start (exit {server.returncode})")
    return int(line)


async def _wait_ready(port: int, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while await asyncio.to_thread(http_status, f"http://{HOST}:{port}/readyz") != 200:
        if server.returncode is not None:
            raise RuntimeError(f"the connect-floor server exited ({server.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the connect-floor server did not answer in {START_TIMEOUT_S} s")
        await asyncio.sleep(0.05)  # poll with a deadline


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        serve()
