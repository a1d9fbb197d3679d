"""A client that stops reading stalls nobody (SPEC §4): past WS_SEND_QUEUE_MAX
queued events it is closed with 1013 behind the frames already on their way, the
gateway's memory stays bounded, the other members get every event, and the slow
client resumes afterwards without loss."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import psutil
import pytest

from tests.support.delivery import (
    connect,
    eventually,
    id_key,
    message_event,
)
from tests.support.engine_stack import EngineStack, EngineStacks
from tests.support.stack import Gateway
from tests.support.stalled import StalledClient
from tests.support.tokens import make_token

QUEUE_MAX = 200
EVENTS = 5000
EVENT_SIZE = 10_000  # bytes of content: 5,000 events are ~50 MB
HISTORY = 6000  # holds the whole flood: the slow client can resume without loss
# Below the 50 MB of the flood: a gateway buffering the flood for the stalled client
# (no queue bound, or writes not waiting for the socket) would cross it.
RSS_GROWTH_BOUND = 40 * 2**20


@pytest.fixture(scope="module")
def stack(engine_stacks_of_module: EngineStacks) -> EngineStack:
    # A longer heartbeat than the suite's 1 s: the server's keepalive pings sit behind
    # megabytes of unread frames too, and this test is about the queue bound (1013),
    # not about the keepalive timeout that would otherwise close the socket first.
    return engine_stacks_of_module.start(
        gateways=1, worker=False, ACCESS_MODE="open", WS_SEND_QUEUE_MAX=str(QUEUE_MAX),
        ROOM_HISTORY_SIZE=str(HISTORY), WS_HEARTBEAT_INTERVAL="5")


class RssSampler:
    """Peak RSS of a process, sampled every 20 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.peak = self.process.memory_info().rss
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._halt.wait(0.02):  # sampling period
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._halt.set()
        self._thread.join(5)


def _slow_closes(gw: Gateway) -> float:
    return gw.metric("roomcast_slow_consumer_closes_total")


async def test_a_client_that_stops_reading_is_closed_with_1013_and_stalls_nobody(
        stack: EngineStack, unique_id: Callable[[], int]) -> None:
    gw = stack.gateways[0]
    assert gw.process is not None
    room = f"channel:{unique_id()}"
    slow_user = unique_id()
    writer = stack.writer()
    slow = await StalledClient.open(gw.url, make_token(slow_user, "slow"))
    await slow.read_until(lambda f: f["type"] == "connected")
    await slow.send_json({"type": "join_room", "room": room, "ref": 1})
    await slow.read_until(lambda f: f.get("ref") == 1)
    join_point = next(f for f in slow.texts() if f.get("ref") == 1)["data"]["last_id"]
    fast = await connect(gw.url, unique_id())
    fast_point = (await fast.join(room))["data"]["last_id"]
    closes_before = _slow_closes(gw)

    def flood() -> list[str]:
        ids = []
        for n in range(EVENTS):
            ids.append(writer.append_event(room, message_event(room, n, EVENT_SIZE),
                                           uuid.uuid4().hex).id)
        return ids

    started = time.monotonic()
    with RssSampler(gw.process.pid) as rss:
        flooding = asyncio.ensure_future(asyncio.to_thread(flood))
        await eventually(lambda: _slow_closes(gw) > closes_before, timeout=30,
                         what="the slow consumer closed")
        # The slow client reads at last, while the flood goes on: every frame
        # buffered for it, then the close (which the gateway gives up on after
        # ABORT_AFTER_SECONDS: reading only after the whole flood could miss it).
        code = await slow.drain_to_close()
        published = await flooding
        got = await fast.wait_events(room, EVENTS, type_="message", timeout=60)
    took = time.monotonic() - started
    growth = rss.peak - rss.baseline
    # ENGINE=memory keeps the room's history (the whole flood) in the gateway itself
    bound = RSS_GROWTH_BOUND + stack.bytes_held_by_gateway(EVENTS * EVENT_SIZE)
    print(f"\nslow consumer: {EVENTS} x {EVENT_SIZE} B events in {took:.1f} s; gateway RSS "
          f"{rss.baseline / 2**20:.0f} MB -> peak {rss.peak / 2**20:.0f} MB "
          f"(+{growth / 2**20:.1f} MB, bound {bound / 2**20:.0f} MB)")
    assert code == 1013
    assert growth < bound

    # the other member got every event, once, in order
    history = stack.history_ids(room)
    assert [f["id"] for f in fast.events(room)] == [
        i for i in history if id_key(i) > id_key(fast_point)]
    assert [f["id"] for f in got][-1] == published[-1]

    # the slow one got an in-order prefix, was closed long before the end, and resumes
    seen = [f["id"] for f in slow.texts() if "id" in f and f.get("room") == room]
    after_join = [i for i in history if id_key(i) > id_key(join_point)]
    assert seen == after_join[:len(seen)]
    assert len(seen) < EVENTS // 2, f"closed only after {len(seen)} events"
    slow.close()
    print(f"slow consumer read {len(seen)} events before the 1013 close frame")

    with RssSampler(gw.process.pid) as resume_rss:
        again = await connect(gw.url, slow_user)
        reply = await again.join(room, since=seen[-1])
        assert reply["data"]["recovered"] is True, reply
        # the replay ends at the join point; presence events race with the close and
        # the new join, so they are counted up to that point and messages compared
        point = id_key(reply["data"]["last_id"])
        missed = [i for i in stack.history_ids(room) if id_key(seen[-1]) < id_key(i) <= point]
        assert reply["data"]["replayed"] == len(missed)
        replayed = await again.wait_events(room, len(missed), timeout=60)
    assert [f["id"] for f in replayed][:len(missed)] == missed
    messages = set(stack.message_ids(room))
    assert [i for i in seen + missed if i in messages] == [
        i for i in after_join if i in messages]
    print(f"resume replayed {len(missed)} events; gateway RSS peak during the replay "
          f"+{(resume_rss.peak - resume_rss.baseline) / 2**20:.1f} MB")
    await again.close()
    await fast.close()
