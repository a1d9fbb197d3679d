"""The connect floor: a bare app served exactly as a gateway is, which the bench's
clients connect to and join as they do a gateway. Real server process, real sockets."""

from __future__ import annotations

import asyncio

import pytest
from picows import WSMsgType

from roomcast.bench.connect_floor import HOST, measure_floor, start_server, stop_server
from roomcast.bench.scenario import ScenarioConfig
from roomcast.bench.wsclient import WSClient, connect
from shared.settings import Settings


def _config(clients: int, *, steady: bool = False) -> ScenarioConfig:
    return ScenarioConfig(clients=clients, layout="small-rooms", room_size=5, rate=10,
                          duration=1, connect_batch=8, connect_steady=steady,
                          connect_timeout=60)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("steady", [False, True], ids=["waves", "steady"])
async def test_every_client_joins_and_the_server_cost_is_counted(steady: bool) -> None:
    # enough connects for some clock ticks of server CPU (/proc counts in 10 ms)
    floor = await measure_floor(_config(300, steady=steady))
    assert floor["n_errors"] == 0, floor["errors"]
    assert floor["connected"] == 300  # each one got `connected`, then its own room_joined
    assert floor["connects_per_s"] > 0
    assert floor["cpu_ms_per_connect"] > 0  # the server's CPU, measured from /proc
    assert floor["mem_per_conn_kb"] is not None


class _Probe(WSClient):
    def __init__(self) -> None:
        super().__init__()
        self.closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def on_close(self, code: int | None) -> None:
        if not self.closed.done():
            self.closed.set_result(code)


@pytest.mark.timeout(60)
async def test_the_floor_is_served_with_the_gateways_limits() -> None:
    """Served through gateway_config, as a gateway is: a message over the gateway's
    frame limit (WS_MESSAGE_MAX_SIZE) is refused with 1009."""
    server, port = await start_server()
    try:
        probe = await connect(_Probe, f"ws://{HOST}:{port}/api/v1/ws/connect", timeout=10)
        assert probe.transport is not None
        probe.transport.send(WSMsgType.TEXT, b"x" * (Settings().WS_MESSAGE_MAX_SIZE + 1))
        assert await asyncio.wait_for(probe.closed, 10) == 1009
    finally:
        await stop_server(server)
