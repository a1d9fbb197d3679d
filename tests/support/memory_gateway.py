"""`roomcast gateway` for the memory-engine runs of the contract tests.

    python -m tests.support.memory_gateway gateway --port P --instance-id ID

It runs the real command (`roomcast.cli.main`: the same settings, start checks,
app and uvicorn), and adds two routes under `/_test/` to the app just before
uvicorn serves it. They give the memory engine what the Redis runs get by talking
to Redis next to the gateway, which a memory engine cannot offer from outside
its process:

    GET  /_test/history?room=R   the room's history as stored: [[id, event], ...]
    POST /_test/append           [{"room", "encoded", "key"}, ...] appended as a
                                 worker appends (the engine's writer, no job queue);
                                 answers [[id, appended], ...]

They run on the gateway's event loop, as its own routes do (a probe in a thread
of its own would wait on the interpreter lock behind the busy loop, ms a call).
Everything else is the product's: the tests publish through `POST /api/v1/events`
like any backend. Nothing of the gateway is imported here before the command
runs: it sets what the WebSocket library reads when first imported.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response

from shared.engines.memory.engine import MemoryEngine
from shared.engines.roles import PendingEvent

probe = APIRouter(prefix="/_test")


def _engine(request: Request) -> MemoryEngine:
    engine = request.app.state.node.engine
    assert isinstance(engine, MemoryEngine), "the /_test/ routes are for ENGINE=memory"
    return engine


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


@probe.get("/history")
async def history(request: Request, room: str) -> Response:
    # The store is the engine's own (private) attribute: this route is the test's view
    # of storage, as XRANGE on the room's history stream is for the Redis runs.
    snapshot = _engine(request)._store.room_snapshot(room)
    entries = [] if snapshot is None else snapshot.entries
    return _json([[e.id, orjson.loads(e.encoded)] for e in entries])


@probe.post("/append")
async def append(request: Request) -> Response:
    items = orjson.loads(await request.body())
    events = [PendingEvent(i["key"], i["room"], i["encoded"].encode()) for i in items]
    results = _engine(request).writer.append(events)
    return _json([[r.id, r.appended] for r in results])


def main() -> None:
    from roomcast.cli.main import main as roomcast

    serve = uvicorn.Server.run

    def serve_with_probe(self: uvicorn.Server, *args: Any, **kwargs: Any) -> None:
        app = self.config.app
        assert isinstance(app, FastAPI), app
        app.include_router(probe)
        serve(self, *args, **kwargs)

    uvicorn.Server.run = serve_with_probe  # type: ignore[method-assign]
    roomcast(sys.argv[1:])


if __name__ == "__main__":
    main()
