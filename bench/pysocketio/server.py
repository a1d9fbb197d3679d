"""python-socketio gateway for the peer comparison: an ASGI app under uvicorn whose
rooms span instances through AsyncRedisManager (Redis pub/sub). A client joins the
room named in its handshake query (`?room=`).

    python pysocketio/server.py --port 4001 --redis-port 6390
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import parse_qs

import socketio
import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    args = parser.parse_args()
    manager = socketio.AsyncRedisManager(f"redis://127.0.0.1:{args.redis_port}/0")
    server = socketio.AsyncServer(async_mode="asgi", client_manager=manager,
                                  transports=["websocket"], cors_allowed_origins="*")

    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [None])[0]
        if room:
            await server.enter_room(sid, room)

    server.on("connect", connect)

    print(json.dumps({"event": "listening", "port": args.port, "pid": os.getpid()}), flush=True)
    uvicorn.run(socketio.ASGIApp(server), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
