"""RoomcastClient against a tiny real WebSocket server scripted per test.

The server side is driven step by step from each test (send `connected`,
answer joins, push events, drop the socket), so every wait is on a frame or
an event with a deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from roomcast.client import (
    ClientClosedError,
    ClientEvent,
    Connected,
    ConnectionState,
    Disconnected,
    EventStream,
    NotRecovered,
    Recovered,
    ResyncRequired,
    RoomcastClient,
    RoomcastError,
    RoomEvent,
    RoomLeft,
    TokenProvider,
)
from roomcast.client.terminal import run_terminal

DEADLINE = 5.0
E = TypeVar("E", bound=ClientEvent)
Frame = dict[str, Any]


# -- the scripted server -------------------------------------------------------


class Peer:
    """The server's end of one client connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        self.path = parts.path
        self.token = parse_qs(parts.query).get("token", [""])[0]

    async def recv(self) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), DEADLINE)
        assert isinstance(raw, str), "the client must send text frames"
        frame = orjson.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def expect(self, kind: str) -> Frame:
        frame = await self.recv()
        assert frame["type"] == kind, frame
        return frame

    async def send(self, frame: Frame) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def hello(self, rooms: tuple[str, ...] = ("user:1",), heartbeat: float = 30) -> None:
        await self.send(
            {
                "type": "connected",
                "data": {
                    "message": "Connected successfully",
                    "user_id": 1,
                    "username": "alice",
                    "connection_id": "c-1",
                    "heartbeat_interval": heartbeat,
                    "rooms": list(rooms),
                },
                "timestamp": "2025-11-13T12:00:00.000000Z",
            }
        )

    async def reply(self, request: Frame, kind: str, data: Frame | None = None) -> None:
        frame: Frame = {"type": kind, "ref": request["ref"], "data": data or {}}
        if "room" in request:
            frame["room"] = request["room"]
        await self.send(frame)

    async def answer_join(
        self, request: Frame, last_id: str = "0-0", recovered: bool | None = None
    ) -> None:
        data: Frame = {"last_id": last_id}
        if recovered is not None:
            data["recovered"] = recovered
        await self.reply(request, "room_joined", data)

    async def rejoins(
        self, count: int, last_ids: dict[str, str] | None = None, recovered: bool | None = None
    ) -> dict[str, Frame]:
        """Read `count` join_room frames, answer each, return them by room."""
        joins = {}
        for _ in range(count):
            frame = await self.expect("join_room")
            joins[frame["room"]] = frame
        for room, frame in joins.items():
            await self.answer_join(frame, (last_ids or {}).get(room, "0-0"), recovered)
        return joins

    async def event(self, room: str, event_id: str, content: str = "hi") -> None:
        await self.send(
            {
                "type": "message",
                "room": room,
                "data": {"message_id": f"m-{event_id}", "content": content, "user_id": 2},
                "sender": "bob",
                "timestamp": "2025-11-13T12:00:01.000000Z",
                "id": event_id,
            }
        )

    async def drop(self, code: int = 1011, reason: str = "") -> None:
        await self.ws.close(code, reason)


class ScriptedServer:
    def __init__(self, server: Server) -> None:
        self._server = server
        self._peers: asyncio.Queue[Peer] = asyncio.Queue()
        port = next(iter(server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def handle(self, ws: ServerConnection) -> None:
        await self._peers.put(Peer(ws))
        await ws.wait_closed()  # the test drives the connection from here

    async def accept(self) -> Peer:
        return await asyncio.wait_for(self._peers.get(), DEADLINE)


@asynccontextmanager
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    holder: list[ScriptedServer] = []

    async def handler(ws: ServerConnection) -> None:
        await holder[0].handle(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        holder.append(ScriptedServer(server))
        yield holder[0]


def make_client(url: str, token: TokenProvider = "tok-1", **options: Any) -> RoomcastClient:
    settings: dict[str, Any] = {
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "restart_jitter": 0.01,
        "rng": random.Random(0),
        "request_timeout": DEADLINE,
        "send_rate": None,
        "connect_kwargs": {"proxy": None},
    }
    settings.update(options)
    return RoomcastClient(url, token, **settings)


async def next_event(stream: EventStream, kind: type[E]) -> E:
    """The next event of class `kind`, skipping others."""

    async def find() -> E:
        async for event in stream:
            if isinstance(event, kind):
                return event
        raise AssertionError(f"stream ended before a {kind.__name__}")

    return await asyncio.wait_for(find(), DEADLINE)


async def room_events_until(stream: EventStream, last_id: str) -> list[str]:
    """Ids of room events received up to and including `last_id`."""
    ids: list[str] = []
    while not ids or ids[-1] != last_id:
        ids.append((await next_event(stream, RoomEvent)).id)
    return ids


async def connect_and_join(
    server: ScriptedServer, client: RoomcastClient, *rooms: str, last_id: str = "0-0"
) -> Peer:
    """First connection: answer the user-room join, then join `rooms`."""
    requests = [client.join(room) for room in rooms]
    peer = await server.accept()
    await peer.hello()
    await peer.rejoins(1)  # user:1, joined once to learn its last_id
    for _ in rooms:
        await peer.answer_join(await peer.expect("join_room"), last_id)
    for request in requests:
        await request
    return peer


# -- tests -----------------------------------------------------------------------


async def test_first_frame_and_url() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await server.accept()
            assert peer.path == "/api/v1/ws/connect"
            assert peer.token == "tok-1"
            await peer.hello()
            connected = await next_event(stream, Connected)
            assert (connected.user_id, connected.username, connected.rooms) == (
                1,
                "alice",
                ("user:1",),
            )
            assert connected.reconnect is False
            join = await peer.expect("join_room")
            assert join["room"] == "user:1" and "data" not in join
            await peer.answer_join(join, "3-0")
            await asyncio.wait_for(client.wait_connected(), DEADLINE)
            assert client.state is ConnectionState.OPEN


async def test_reconnect_rejoins_from_last_seen_id_and_drops_duplicates() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "project:1")
            # "9-5" sorts after "10-0" as a string; numerically it is a duplicate.
            for event_id in ["9-0", "10-0", "10-0", "9-5", "9-0", "10-1"]:
                await peer.event("project:1", event_id)
            assert await room_events_until(stream, "10-1") == ["9-0", "10-0", "10-1"]

            await peer.drop(1011)
            disconnected = await next_event(stream, Disconnected)
            assert (disconnected.code, disconnected.will_reconnect) == (1011, True)

            peer = await server.accept()
            await peer.hello()
            assert (await next_event(stream, Connected)).reconnect is True
            joins = await peer.rejoins(2, recovered=True)
            assert joins["project:1"]["data"] == {"since": "10-1"}
            assert joins["user:1"]["data"] == {"since": "0-0"}
            recovered = {(await next_event(stream, Recovered)).room for _ in range(2)}
            assert recovered == {"project:1", "user:1"}

            # The server replays from `since`; anything at or before it is a duplicate.
            for event_id in ["10-1", "10-2", "10-2", "11-0"]:
                await peer.event("project:1", event_id)
            assert await room_events_until(stream, "11-0") == ["10-2", "11-0"]


async def test_idle_room_resumes_from_room_joined_last_id() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "task:7", last_id="1700000000000-4")
            await peer.drop(1001)
            peer = await server.accept()
            await peer.hello()
            joins = await peer.rejoins(2, recovered=True)
            assert joins["task:7"]["data"] == {"since": "1700000000000-4"}
            assert (await next_event(stream, Recovered)).room in {"task:7", "user:1"}


async def test_not_recovered_and_resync_required_reach_the_app() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "channel:3")
            await peer.event("channel:3", "5-0")
            assert await room_events_until(stream, "5-0") == ["5-0"]
            await peer.drop(1011)

            peer = await server.accept()
            await peer.hello()
            joins = await peer.rejoins(2, last_ids={"channel:3": "90-0"}, recovered=False)
            assert joins["channel:3"]["data"] == {"since": "5-0"}
            not_recovered = [await next_event(stream, NotRecovered) for _ in range(2)]
            assert {e.room for e in not_recovered} == {"channel:3", "user:1"}
            assert {e.room: e.last_id for e in not_recovered}["channel:3"] == "90-0"

            await peer.send({"type": "resync_required", "room": "channel:3", "data": {}})
            assert (await next_event(stream, ResyncRequired)).room == "channel:3"

            # After a failed resume the room's head is the new baseline.
            await peer.event("channel:3", "90-0")
            await peer.event("channel:3", "91-0")
            assert await room_events_until(stream, "91-0") == ["91-0"]


async def test_requests_made_offline_are_flushed_in_order_after_rejoin() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "project:1")
            in_flight = client.send_message("project:1", "sent, never answered")
            first_try = await peer.expect("send_message")
            await peer.drop(1011)
            await next_event(stream, Disconnected)

            offline = client.send_message("project:1", "typed while offline")
            ping = client.ping()

            peer = await server.accept()
            await peer.hello()
            joins = [await peer.expect("join_room") for _ in range(2)]
            # Rejoins unanswered: the client must still hold its outbox.
            assert client.state is ConnectionState.RESUMING
            for join in joins:
                await peer.answer_join(join, recovered=True)

            resent = await peer.expect("send_message")
            assert resent["ref"] == first_try["ref"]
            # the resend keeps its idempotency key: the server publishes it once
            assert resent["data"] == first_try["data"]
            assert resent["data"]["content"] == "sent, never answered"
            queued = await peer.expect("send_message")
            assert queued["data"]["content"] == "typed while offline"
            assert queued["data"]["key"] != resent["data"]["key"]
            ping_frame = await peer.expect("ping")

            await peer.reply(resent, "ack", {"key": "k-1"})
            await peer.reply(queued, "ack", {"key": "k-2"})
            await peer.reply(ping_frame, "pong")
            assert await in_flight == "k-1"
            assert await offline == "k-2"
            await ping


async def test_access_revoked_room_is_not_rejoined() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await connect_and_join(server, client, "project:1", "project:2")
            await peer.send(
                {"type": "room_left", "room": "project:2", "data": {"reason": "access_revoked"}}
            )
            left = await next_event(stream, RoomLeft)
            assert (left.room, left.reason) == ("project:2", "access_revoked")
            assert set(client.rooms) == {"user:1", "project:1"}
            await peer.drop(1011)
            await next_event(stream, Disconnected)

            ping = client.ping()
            peer = await server.accept()
            await peer.hello()
            # Everything before the ping is the rejoin phase: project:2 must not be in it.
            rejoined = set()
            while (frame := await peer.recv())["type"] == "join_room":
                rejoined.add(frame["room"])
                await peer.answer_join(frame, recovered=True)
            assert rejoined == {"user:1", "project:1"}
            assert frame["type"] == "ping"
            await peer.reply(frame, "pong")
            await ping


async def test_error_reply_raises_a_typed_error_and_forgets_the_room() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        async with client:
            join = client.join("project:9")
            peer = await server.accept()
            await peer.hello()
            await peer.rejoins(1)
            request = await peer.expect("join_room")
            await peer.send(
                {
                    "type": "error",
                    "ref": request["ref"],
                    "room": "project:9",
                    "data": {"error": "Forbidden", "code": 4403},
                    "timestamp": "2025-11-13T12:00:00.000000Z",
                }
            )
            with pytest.raises(RoomcastError) as info:
                await join
            assert (info.value.code, info.value.message) == (4403, "Forbidden")
            assert "project:9" not in client.rooms


async def test_missing_pong_is_a_dead_connection() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            peer = await server.accept()
            await peer.hello(rooms=(), heartbeat=0.05)
            for _ in range(2):  # answered pings keep the connection
                await peer.reply(await peer.expect("ping"), "pong")
            await peer.expect("ping")  # this one goes unanswered
            disconnected = await next_event(stream, Disconnected)
            assert (disconnected.reason, disconnected.will_reconnect) == ("heartbeat timeout", True)
            await server.accept()


async def test_refused_static_token_stops_the_client() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            pending = client.send_message("project:1", "never sent")
            peer = await server.accept()
            await peer.drop(4401, "Authentication failed")
            disconnected = await next_event(stream, Disconnected)
            assert (disconnected.code, disconnected.will_reconnect) == (4401, False)
            await asyncio.wait_for(client.wait_closed(), DEADLINE)
            assert client.state is ConnectionState.CLOSED
            with pytest.raises(ClientClosedError) as info:
                await pending
            assert info.value.code == 4401
            with pytest.raises(ClientClosedError):
                client.ping()
            assert [e async for e in stream] == []  # the stream has ended


async def test_refused_token_is_replaced_by_the_provider() -> None:
    tokens: Iterator[str] = iter(["tok-old", "tok-new"])

    async def provider() -> str:
        return next(tokens)

    async with scripted_server() as server:
        client = make_client(server.url, provider)
        stream = client.events()
        async with client:
            peer = await server.accept()
            assert peer.token == "tok-old"
            await peer.drop(4401, "Token expired")
            disconnected = await next_event(stream, Disconnected)
            assert (disconnected.code, disconnected.will_reconnect) == (4401, True)
            peer = await server.accept()
            assert peer.token == "tok-new"


async def test_server_restart_close_reconnects_without_backoff() -> None:
    async with scripted_server() as server:
        # A normal backoff would wait up to a minute; 1012 must not.
        client = make_client(server.url, backoff_base=60.0, backoff_cap=60.0, restart_jitter=0.01)
        stream = client.events()
        async with client:
            peer = await server.accept()
            await peer.hello(rooms=())
            await next_event(stream, Connected)
            await peer.drop(1012, "server restart")
            await server.accept()


async def test_callbacks_by_class_and_by_type_string() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        by_class: list[RoomEvent] = []
        by_type = asyncio.Event()

        async def on_message(event: ClientEvent) -> None:
            assert isinstance(event, RoomEvent)
            by_type.set()

        client.on(RoomEvent, by_class.append)
        client.on("message", on_message)
        async with client:
            peer = await connect_and_join(server, client, "project:1")
            await peer.event("project:1", "1-0", content="hello")
            await asyncio.wait_for(by_type.wait(), DEADLINE)
            assert [(e.room, e.id, e.data["content"], e.sender) for e in by_class] == [
                ("project:1", "1-0", "hello", "bob")
            ]


async def test_refresh_sends_the_new_token_and_uses_it_to_reconnect() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        async with client:
            peer = await connect_and_join(server, client)
            refresh = client.refresh("tok-2")
            frame = await peer.expect("refresh")
            assert frame["data"] == {"token": "tok-2"}
            await peer.reply(frame, "refreshed")
            await refresh
            await peer.drop(1011)
            assert (await server.accept()).token == "tok-2"


async def test_close_is_clean_and_final() -> None:
    async with scripted_server() as server:
        client = make_client(server.url)
        stream = client.events()
        async with client:
            await connect_and_join(server, client)
        assert client.state is ConnectionState.CLOSED
        events = [e async for e in stream]
        assert isinstance(events[-1], Disconnected)
        assert (events[-1].code, events[-1].will_reconnect) == (1000, False)


class _Lines(io.StringIO):
    """Terminal output: each written JSON line goes to a queue the test reads."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: asyncio.Queue[Frame] = asyncio.Queue()

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.lines.put_nowait(orjson.loads(line))
        return len(text)

    async def next(self, kind: str) -> Frame:
        async def find() -> Frame:
            while (line := await self.lines.get())["type"] != kind:
                pass
            return line

        return await asyncio.wait_for(find(), DEADLINE)


async def test_terminal_client_runs_commands_and_prints_events() -> None:
    read_fd, write_fd = os.pipe()
    out = _Lines()
    async with scripted_server() as server:
        with os.fdopen(read_fd) as stdin, os.fdopen(write_fd, "w") as typing:

            def type_line(line: str) -> None:
                typing.write(line + "\n")
                typing.flush()

            terminal = asyncio.create_task(
                run_terminal(
                    server.url, "tok-1", stdin=stdin, stdout=out, connect_kwargs={"proxy": None}
                )
            )
            peer = await server.accept()
            await peer.hello()
            assert (await out.next("connected"))["username"] == "alice"
            await peer.rejoins(1)

            type_line("send project:1 hello   there")
            sent = await peer.expect("send_message")
            assert sent["data"]["content"] == "hello   there"
            assert sent["data"]["key"]  # every send carries an idempotency key
            await peer.reply(sent, "ack", {"key": "k-9"})
            assert (await out.next("result"))["result"] == "k-9"

            await peer.event("user:1", "4-0", content="ding")
            printed = await out.next("message")
            assert (printed["room"], printed["id"], printed["data"]["content"]) == (
                "user:1",
                "4-0",
                "ding",
            )

            type_line("bogus")
            assert (await out.next("usage"))["error"] == "unknown command: bogus"
            type_line("quit")
            await asyncio.wait_for(terminal, DEADLINE)


async def test_piped_commands_are_answered_before_the_terminal_exits() -> None:
    """`echo "join project:1" | roomcast client`: input ends at once, yet the join is
    sent and its reply printed before the client closes (it used to close first)."""
    out = _Lines()
    async with scripted_server() as server:
        terminal = asyncio.create_task(run_terminal(
            server.url, "tok-1", stdin=io.StringIO("join project:1\n"), stdout=out,
            connect_kwargs={"proxy": None}))
        peer = await server.accept()
        await peer.hello()
        while (join := await peer.expect("join_room"))["room"] != "project:1":
            await peer.answer_join(join)
        await peer.answer_join(join, "7-0")
        assert (await out.next("result"))["result"]["last_id"] == "7-0"
        assert await asyncio.wait_for(terminal, DEADLINE) == 0


async def test_a_refused_token_is_reported_when_input_ends_at_once() -> None:
    """`roomcast client < /dev/null` with a bad token: the 4401 still reaches the user
    (it used to exit 0 before the gateway's answer arrived)."""
    err = io.StringIO()
    async with scripted_server() as server:
        terminal = asyncio.create_task(run_terminal(
            server.url, "bad", stdin=io.StringIO(""), stdout=_Lines(), stderr=err,
            connect_kwargs={"proxy": None}))
        peer = await server.accept()
        await peer.drop(4401, "Authentication failed")
        assert await asyncio.wait_for(terminal, DEADLINE) == 1
    assert "4401" in err.getvalue() and "roomcast token" in err.getvalue()


def test_an_empty_token_is_refused_at_once() -> None:
    # An unset $TOKEN passed along: no connection could ever succeed with it, and
    # redacting "" from error messages would mangle them
    with pytest.raises(ValueError, match="empty token"):
        RoomcastClient("ws://127.0.0.1:1/api/v1/ws/connect", "")
