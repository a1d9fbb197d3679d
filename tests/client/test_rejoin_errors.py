"""A rejoin answered with an error: a refusal drops the room for good, a server
failure (4500) keeps it and retries on a new connection from the same point."""

from __future__ import annotations

import asyncio

from roomcast.client import Disconnected, Recovered, RoomLeft, ServerError
from tests.client.test_client_local import (
    DEADLINE,
    Frame,
    Peer,
    connect_and_join,
    make_client,
    next_event,
    scripted_server,
)


async def _error(peer: Peer, request: Frame, code: int, message: str) -> None:
    await peer.send({"type": "error", "ref": request["ref"], "room": request["room"],
                     "data": {"error": message, "code": code}})


async def _rejoin_requests(peer: Peer, count: int) -> dict[str, Frame]:
    joins = {}
    for _ in range(count):
        frame = await peer.expect("join_room")
        joins[frame["room"]] = frame
    return joins


async def test_internal_error_on_rejoin_keeps_the_room_and_retries() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "project:1")
            await peer.event("project:1", "7-0")
            await peer.drop(1011)
            await next_event(stream, Disconnected)

            peer = await server.accept()
            await peer.hello()
            joins = await _rejoin_requests(peer, 2)
            await peer.answer_join(joins["user:1"], recovered=True)
            await _error(peer, joins["project:1"], 4500, "Internal error")
            error = await next_event(stream, ServerError)
            assert (error.code, error.room) == (4500, "project:1")
            dropped = await next_event(stream, Disconnected)
            assert (dropped.reason, dropped.will_reconnect) == ("rejoin failed", True)
            assert "project:1" in client.rooms

            peer = await server.accept()  # a new connection asks again, same point
            await peer.hello()
            joins = await _rejoin_requests(peer, 2)
            assert joins["project:1"]["data"] == {"since": "7-0"}
            for frame in joins.values():
                await peer.answer_join(frame, recovered=True)
            recovered = {(await next_event(stream, Recovered)).room for _ in range(2)}
            assert "project:1" in recovered
            await asyncio.wait_for(client.wait_connected(), DEADLINE)


async def test_forbidden_on_rejoin_drops_the_room() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "project:1", "project:2")
            await peer.drop(1011)
            await next_event(stream, Disconnected)

            peer = await server.accept()
            await peer.hello()
            joins = await _rejoin_requests(peer, 3)
            await _error(peer, joins["project:2"], 4403, "Forbidden")
            for room in ("user:1", "project:1"):
                await peer.answer_join(joins[room], recovered=True)
            left = await next_event(stream, RoomLeft)
            assert (left.room, left.reason) == ("project:2", "rejoin_failed")
            await asyncio.wait_for(client.wait_connected(), DEADLINE)
            assert set(client.rooms) == {"user:1", "project:1"}
