"""The fan-out core with real objects and a scripted socket: FanOut hands one entry
to the Hub, the Hub gives every member of the room the very same frame bytes and
nobody else anything, and each member gets one write per read."""

from __future__ import annotations

import time

import orjson

from gateway.auth import Principal
from gateway.connection import Connection, SendLimits
from gateway.fanout import FanOut
from gateway.hub import Hub
from gateway.metrics import Metrics
from shared.codec import encode_event, ws_frame_payload
from shared.engines.roles import LogEntry
from tests.gateway.test_connection import ScriptedSink

ROOM = "project:5"


def member(hub: Hub, user_id: int, *rooms: str) -> tuple[Connection, ScriptedSink]:
    sink = ScriptedSink()
    conn = Connection(sink, Principal(user_id, f"u{user_id}", time.time() + 3600),
                      f"gw:{user_id}", SendLimits(100, 1_000_000))
    conn.open()
    hub.add_connection(conn)
    for room in rooms:
        hub.add(conn, room)
    return conn, sink


def entry(n: int, room: str = ROOM) -> LogEntry:
    return LogEntry(f"{1_700_000_000_000 + n}-0", room, n,
                    encode_event("task.deleted", room, {"task_id": n, "project_id": 5}, "t"),
                    (1_700_000_000_000 + n, 0))


def test_one_frame_for_every_member_and_one_write_per_read() -> None:
    hub, revoked = Hub(), []
    fanout = FanOut(hub, Metrics(), "gw", 4, revoked.append)
    (_, a), (_, b) = member(hub, 1, ROOM), member(hub, 2, ROOM)
    _, outsider = member(hub, 3, "project:6")
    for n in (1, 2, 3):
        fanout.on_entry(0, entry(n))
    fanout.on_flush()
    assert len(a.written) == 3 and outsider.written == []
    assert (a.writes, b.writes) == (1, 1)  # the read's three frames in one socket write
    assert all(x is y for x, y in zip(a.written, b.written, strict=True))  # encoded once
    frames = [orjson.loads(ws_frame_payload(f)) for f in a.written]
    assert [f["id"] for f in frames] == [entry(n).id for n in (1, 2, 3)]
    assert [f["data"]["task_id"] for f in frames] == [1, 2, 3]


def test_a_control_entry_reaches_no_client_and_steers_the_gateway() -> None:
    hub, revoked = Hub(), []
    fanout = FanOut(hub, Metrics(), "gw-self", 4, revoked.append)
    _, sink = member(hub, 1, ROOM)
    fanout.on_entry(2, LogEntry("1-0", "_heartbeat", 1, b'{"type":"_heartbeat","gw":"gw-self"}',
                                (1, 0)))
    fanout.on_entry(2, LogEntry("2-0", "_revoke", 2,
                                b'{"type":"_revoke","user_id":1,"room":"project:5"}', (2, 0)))
    fanout.on_flush()
    assert sink.written == []
    assert 2 in fanout.heartbeat_seen and revoked == [1]


def test_leaving_removes_a_member_everywhere() -> None:
    hub = Hub()
    conn, _ = member(hub, 1, ROOM, "channel:9")
    other, _ = member(hub, 1, ROOM)
    assert hub.room_count == 2
    hub.remove_connection(conn)
    assert set(hub.members(ROOM)) == {other} and list(hub.members("channel:9")) == []
    assert hub.user_connections(1) == [other]
