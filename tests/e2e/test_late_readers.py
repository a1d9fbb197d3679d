"""Members that read late, with large events, get every event once and in order.

The reproduction of the loss found under pressure, on both engines: gateways
(two on Redis, one on memory), members of one room, 48 KB events published in
bursts. Two members read at once; three do not read until the bursts are over (a
phone on a slow network, a busy tab), and one reads in short bursts with pauses.
Everything stays under the send bounds, so nobody may be closed, and every member
must end with exactly the room's events, in stream order. Before the fix, a live
frame could overtake frames the connection's writer held while the socket was
full, and a late reader lost an event in every run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.delivery import (
    connect,
    message_event,
)
from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.stalled import StalledClient
from tests.support.tokens import make_token

EVENTS = 400
EVENT_SIZE = 48_000
BURST = 20
PAUSE = 0.05  # publisher's pace between bursts
# 400 x 48 KB = 19 MB may wait for one late reader: under both bounds, so no 1013.
SEND_BUFFER = 64 * 2**20


@pytest.fixture(scope="module")
def stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    return engine_stacks_of_module.start(
        gateways=2, worker=False, ACCESS_MODE="open", ROOM_HISTORY_SIZE=str(EVENTS * 2),
        WS_SEND_BUFFER_MAX_BYTES=str(SEND_BUFFER), WS_HEARTBEAT_INTERVAL="10")


async def _join(client: StalledClient, room: str) -> None:
    await client.read_until(lambda f: f["type"] == "connected")
    await client.send_json({"type": "join_room", "room": room, "ref": "j"})
    await client.read_until(lambda f: f.get("ref") == "j")


def _room_ids(frames: list[dict[str, Any]], room: str) -> list[str]:
    return [f["id"] for f in frames if f.get("room") == room and f.get("type") == "message"]


async def _read_in_bursts(client: StalledClient, stop: asyncio.Event) -> None:
    """Reads for a moment, then leaves the socket alone for longer, until `stop`."""
    while not stop.is_set():
        await client.read_for(0.1)
        try:
            await asyncio.wait_for(stop.wait(), 0.7)
        except TimeoutError:
            pass


async def test_late_and_bursty_readers_get_every_large_event_once_in_order(
        stack: EngineStack, unique_id: Callable[[], int]) -> None:
    room = f"channel:{unique_id()}"
    writer = stack.writer()
    readers = [await connect(stack.gateway(i).url, unique_id()) for i in range(2)]
    for reader in readers:
        await reader.join(room)
    late = [await StalledClient.open(stack.gateway(i).url, make_token(unique_id(), "late"))
            for i in range(3)]
    bursty = await StalledClient.open(stack.gateway(1).url, make_token(unique_id(), "bursty"))
    for client in (*late, bursty):
        await _join(client, room)

    def publish() -> None:
        for n in range(EVENTS):
            writer.append_event(room, message_event(room, n, EVENT_SIZE), uuid.uuid4().hex)
            if n % BURST == BURST - 1:
                time.sleep(PAUSE)  # the publisher's pace, not a synchronisation

    stop = asyncio.Event()
    bursts = asyncio.create_task(_read_in_bursts(bursty, stop))
    await asyncio.to_thread(publish)
    stop.set()
    await bursts
    expected = stack.message_ids(room)
    assert len(expected) == EVENTS

    for reader in readers:
        got = await reader.wait_events(room, EVENTS, type_="message", timeout=60)
        assert [f["id"] for f in got] == expected
    for client in (*late, bursty):  # now they read everything they were sent
        await client.read_until(lambda f: f.get("id") == expected[-1], timeout=60)
        frames = client.texts()
        assert not any(f["type"] == "error" for f in frames)
        assert _room_ids(frames, room) == expected, "lost, duplicated or reordered"
        assert client.protocol.close_rcvd is None  # under the bounds: never closed
        client.close()
    for reader in readers:
        await reader.close()
