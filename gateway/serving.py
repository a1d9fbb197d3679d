"""How the app is being served, and what that means for its guarantees.

`roomcast gateway` serves the app with everything a public gateway needs: our
WebSocket protocol (direct frame writes, a close that never waits for a client
that does not read), permessage-deflate off, the frame limit from
WS_MESSAGE_MAX_SIZE, and JSON logs with tokens redacted.

Started by uvicorn's own command line as the factory
(`uvicorn --factory gateway.app:create_app`), the app checks uvicorn's options
(protocol, deflate, frame size, keepalive pings) and refuses to start, with one
line saying what to change, unless they give the same; its instance id then
derives from `--port` as under `roomcast gateway`. Served any other way (mounted
in a backend's app, another ASGI server), it keeps every limit it can enforce
itself (send bounds, frame size, redaction) and logs once, at the first
connection, what is off.
"""

from __future__ import annotations

import logging
import sys

from shared.settings import Settings

log = logging.getLogger("roomcast.serving")

FACTORY = "gateway.app:create_app"
PROTOCOL = "gateway.ws_protocol:RoomcastWebSocketProtocol"
# A ping unanswered for this many heartbeat intervals closes the connection with
# 1011 (docs/protocol.md). More than one: a client that is only behind on reading
# has our ping queued behind its backlog; that is the slow-consumer rule's job (1013).
PING_TIMEOUT_INTERVALS = 2
_reported = False


def _uvicorn_cli_options() -> dict[str, object] | None:
    """uvicorn's command-line options when this process is uvicorn's CLI loading us."""
    try:
        import click
    except ImportError:  # pragma: no cover - uvicorn depends on click
        return None
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.params.get("app") != FACTORY:
        return None
    return dict(ctx.params)


def problems_with(options: dict[str, object], settings: Settings) -> list[str]:
    found = []
    if options.get("ws") != PROTOCOL:
        found.append(f"--ws {PROTOCOL}")
    if options.get("ws_per_message_deflate") is not False:
        found.append("--ws-per-message-deflate false")
    if options.get("ws_max_size") != settings.WS_MESSAGE_MAX_SIZE:
        found.append(f"--ws-max-size {settings.WS_MESSAGE_MAX_SIZE}")
    interval = settings.WS_HEARTBEAT_INTERVAL
    if options.get("ws_ping_interval") != interval:
        found.append(f"--ws-ping-interval {interval:g}")
    if options.get("ws_ping_timeout") != interval * PING_TIMEOUT_INTERVALS:
        found.append(f"--ws-ping-timeout {interval * PING_TIMEOUT_INTERVALS:g}")
    return found


def factory_port() -> int | None:
    """The port given to uvicorn's command line, when it is loading us as the factory."""
    options = _uvicorn_cli_options()
    port = options.get("port") if options else None
    return port if isinstance(port, int) else None


def check_served_by(settings: Settings) -> None:
    options = _uvicorn_cli_options()
    if options is None:
        return
    missing = problems_with(options, settings)
    if missing:
        print(f"roomcast: {FACTORY} under uvicorn's command line needs {' '.join(missing)} "
              "(or start it with `roomcast gateway`, which sets them)", file=sys.stderr)
        raise SystemExit(2)


def report_plain_asgi_once() -> None:
    """Called when a connection is not served by our protocol."""
    global _reported
    if _reported:
        return
    _reported = True
    log.warning("served without roomcast's WebSocket protocol: frames go through ASGI "
                "sends (no direct writes), and a slow consumer's close waits for the "
                "server's own timeouts; send bounds, frame size and redaction stay in "
                "force. `roomcast gateway` serves with all of it")
