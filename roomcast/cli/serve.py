"""Run one gateway under uvicorn with the settings a public gateway needs:
our WebSocket protocol (force-close for slow consumers), permessage-deflate
off, the frame limit from WS_MESSAGE_MAX_SIZE, JSON logs with tokens redacted,
and a bounded graceful shutdown (SIGTERM: 1012 to every client, exit < 10 s).

Everything the node would refuse at startup is checked first (see
gateway_preflight), so a mistake is one line before uvicorn serves anything."""

from __future__ import annotations

import sys

import uvicorn
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.logs import log_config
from gateway.node import Node
from gateway.serving import PING_TIMEOUT_INTERVALS
from gateway.ws_protocol import RoomcastWebSocketProtocol, UnsupportedUvicorn, check_compatible
from roomcast.cli.gateway_preflight import check_node_can_start
from roomcast.cli.preflight import bind_port, reachable
from shared.settings import Engine, Settings

GRACEFUL_SHUTDOWN_SECONDS = 5


def gateway_config(app: ASGIApp, settings: Settings, host: str,
                   port: int) -> uvicorn.Config:
    """uvicorn's options for a gateway (also the bench's connect floor, which must be
    served exactly as a gateway is)."""
    return uvicorn.Config(
        app, host=host, port=port, ws=RoomcastWebSocketProtocol,
        ws_max_size=settings.WS_MESSAGE_MAX_SIZE, ws_per_message_deflate=False,
        ws_ping_interval=settings.WS_HEARTBEAT_INTERVAL,
        ws_ping_timeout=settings.WS_HEARTBEAT_INTERVAL * PING_TIMEOUT_INTERVALS,
        log_config=log_config(), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=False, server_header=False, h11_max_incomplete_event_size=16 * 1024,
    )


def run_gateway(settings: Settings, host: str, port: int, instance_id: str | None,
                origins: dict[str, str]) -> None:
    settings.require_jwt_key()
    app = create_app(settings, instance_id=instance_id, port=port)
    # Bound before uvicorn runs the app's startup: uvicorn binds after it, and a
    # failed bind then left the process hanging in shutdown, deaf to SIGTERM.
    sock = bind_port(host, port)
    try:
        if settings.ENGINE is Engine.REDIS:  # the memory engine has no Redis to reach
            reachable(settings, origins).close()
        node: Node = app.state.node
        check_node_can_start(settings, node.instance_id, origins)
    except BaseException:
        sock.close()
        raise
    config = gateway_config(app, settings, host, port)
    try:
        check_compatible(config)
    except UnsupportedUvicorn as exc:
        print(f"roomcast: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    uvicorn.Server(config).run(sockets=[sock])
